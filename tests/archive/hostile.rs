//! Hostile archives: each is refused with a clear error, and nothing is written anywhere
//! (imgkit never extracts; these tests hold it to that).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use imgkit_archive::{Archive, Compression, ExpansionLimit, Limits, SubsetWriter};

use super::sample_bytes;
use crate::util::Test;

/// A ustar header with whatever name, size, type and link target — no checks, on purpose.
pub(crate) fn raw_header(name: &[u8], size: u64, typeflag: u8, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub(crate) fn raw_file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(&raw_header(name.as_bytes(), data.len() as u64, b'0', b""));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

pub(crate) fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// The sample archive's members (name, content), in order.
fn sample_members() -> Vec<(String, Vec<u8>)> {
    let bytes = sample_bytes();
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, d) in members {
        raw_file(&mut out, n, d);
    }
    end(&mut out);
    out
}

/// A work dir holding `bytes` as `hostile.tar`; returns (dir, file).
fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let f = dir.path().join("work/hostile.tar");
    std::fs::write(&f, bytes).unwrap();
    (dir, f)
}

/// Runs `verify` and `inspect` on the file (and `verify -` on it as a stream) from inside the
/// work dir: each must exit 2 with `needle` on stderr, and the dir must hold nothing new.
#[track_caller]
fn refused(bytes: &[u8], needle: &str) {
    refused_by(bytes, needle, &["verify", "inspect"]);
}

#[track_caller]
fn refused_by(bytes: &[u8], needle: &str, cmds: &[&str]) {
    assert!(
        !needle.is_empty(),
        "say which message the refusal must show: an exit code alone passes for any error"
    );
    let (dir, f) = setup(bytes);
    let work = dir.path().join("work");
    for cmd in cmds {
        Test::new()
            .current_dir(&work)
            .args([Path::new(cmd), &f])
            .run()
            .code(2)
            .stderr_has(needle);
    }
    Test::new()
        .current_dir(&work)
        .args(["verify", "-"])
        .stdin(bytes.to_vec())
        .run()
        .code(2)
        .stderr_has(needle);
    assert_eq!(
        entries(dir.path()),
        ["work", "work/hostile.tar"],
        "something was written"
    );
}

fn entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn with_extra(header: &[u8; 512], data: &[u8]) -> Vec<u8> {
    let members = sample_members();
    let mut out = Vec::new();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    let rest = tar_of(&members);
    out.extend_from_slice(&rest);
    out
}

#[test]
fn dot_dot_paths_are_refused() {
    refused(
        &with_extra(&raw_header(b"../escaped.txt", 3, b'0', b""), b"pwn"),
        "`..` component",
    );
    refused(
        &with_extra(
            &raw_header(b"blobs/../../escaped.txt", 3, b'0', b""),
            b"pwn",
        ),
        "`..` component",
    );
}

#[test]
fn absolute_paths_are_refused() {
    let target = std::env::temp_dir().join(format!("imgkit-hostile-abs-{}", std::process::id()));
    let name = target.to_string_lossy().into_owned();
    refused(
        &with_extra(&raw_header(name.as_bytes(), 3, b'0', b""), b"pwn"),
        "absolute path",
    );
    assert!(!target.exists());
}

#[test]
fn escaping_symlinks_are_refused() {
    refused(
        &with_extra(
            &raw_header(b"evil", 0, b'2', b"../../../../etc/passwd"),
            b"",
        ),
        "link points outside",
    );
    refused(
        &with_extra(&raw_header(b"evil", 0, b'2', b"/etc/passwd"), b""),
        "link points outside",
    );
}

#[test]
fn escaping_hardlinks_are_refused() {
    refused(
        &with_extra(&raw_header(b"evil", 0, b'1', b"../outside"), b""),
        "hard link points outside",
    );
}

#[test]
fn symlink_loops_are_refused() {
    let mut out = Vec::new();
    out.extend_from_slice(&raw_header(b"manifest.json", 0, b'2', b"a"));
    out.extend_from_slice(&raw_header(b"a", 0, b'2', b"b"));
    out.extend_from_slice(&raw_header(b"b", 0, b'2', b"a"));
    end(&mut out);
    refused(&out, "too long or loops");
}

#[test]
fn duplicate_entries_are_refused() {
    let mut members = sample_members();
    let manifest = members
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .unwrap()
        .clone();
    members.insert(0, (manifest.0, b"[]".to_vec()));
    refused(&tar_of(&members), "\"manifest.json\" appears twice");
}

#[test]
fn a_blob_with_the_wrong_sha256_is_named() {
    let mut bytes = sample_bytes();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    let blob = "blobs/sha256/b8078aee6bbf024a4014a96e755f1420fff1ede6295d7786428b925a7c3a8cba";
    // `inspect` reads metadata only; `verify` hashes everything.
    refused_by(&bytes, &format!("blob \"{blob}\" has sha256"), &["verify"]);

    // Writing a subset that needs the blob fails too, and leaves only the output behind.
    let (dir, f) = setup(&bytes);
    let archive = Archive::open(&f).unwrap();
    let out = dir.path().join("work/subset.tar.partial");
    let mut w = SubsetWriter::new(&archive);
    w.select(&"imgkit.example/hello:1.0".parse().unwrap())
        .unwrap();
    let err = w.write(std::fs::File::create(&out).unwrap()).unwrap_err();
    assert!(err.to_string().contains("has sha256"), "{err}");
    assert_eq!(
        entries(dir.path()),
        ["work", "work/hostile.tar", "work/subset.tar.partial"]
    );
    // An image that doesn't need it is still written.
    let mut w = SubsetWriter::new(&archive);
    w.select(&"localhost:5000/team/app:1.0".parse().unwrap())
        .unwrap();
    w.write(std::io::sink()).unwrap();
}

#[test]
fn a_manifest_naming_a_missing_blob_is_refused() {
    let mut members = sample_members();
    let layer = "blobs/sha256/8196cd24ec7275367558c54d9da932e394dccc618175a8b401413bb87d13318c";
    members.retain(|(n, _)| n != layer);
    refused(&tar_of(&members), "which the archive does not hold");
}

#[test]
fn a_truncated_archive_is_refused() {
    let bytes = sample_bytes();
    refused(&bytes[..bytes.len() / 2], "the archive ends early");
    refused(&bytes[..bytes.len() / 2 + 100], "the archive ends early");
}

#[test]
fn a_truncated_gzip_archive_is_refused() {
    let mut gz = Vec::new();
    imgkit_archive::write_images(
        &imgkit_archive::sample::images(),
        &mut gz,
        Compression::Gzip,
    )
    .unwrap();
    refused(&gz[..gz.len() / 2], "the archive ends early");
}

/// A tar whose first member is `size` zero bytes, compressed; built without holding it.
fn bomb(c: Compression, size: u64) -> Vec<u8> {
    let mut enc = imgkit_archive::Encoder::new(Vec::new(), c).unwrap();
    enc.write_all(&raw_header(b"layer.tar", size, b'0', b""))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        enc.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_zstd_bomb_stops_at_the_expansion_bound() {
    let packed = bomb(Compression::Zstd, 1 << 30);
    assert!(packed.len() < 1 << 20, "{}", packed.len());
    refused(&packed, "decompression bomb");
}

#[test]
fn a_gzip_bomb_stops_at_the_expansion_bound() {
    let packed = bomb(Compression::Gzip, 64 << 20);
    let (_dir, f) = setup(&packed);
    let limits = Limits {
        expansion: ExpansionLimit {
            floor: 1 << 20,
            ratio: 50,
        },
        ..Limits::default()
    };
    let err = Archive::open_with(&f, limits).unwrap_err();
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    let err = imgkit_archive::verify_with(&f, limits).unwrap_err();
    assert!(err.to_string().contains("decompression bomb"), "{err}");
}

#[test]
fn a_1gb_manifest_json_is_refused_by_the_size_cap() {
    let mut out = raw_header(b"manifest.json", 1 << 30, b'0', b"").to_vec();
    out.extend_from_slice(b"[{\"Config\":\"x.json\"");
    out.resize(out.len() + 4096, b' ');
    refused(&out, "over the 33554432-byte limit for metadata");
}

#[test]
fn a_huge_config_is_refused_by_the_size_cap() {
    let mut members = sample_members();
    let limits = Limits {
        max_json: 300,
        ..Limits::default()
    };
    members.retain(|(n, _)| n != "index.json");
    let (_dir, f) = setup(&tar_of(&members));
    let err = Archive::open_with(&f, limits).unwrap_err();
    assert!(err.to_string().contains("limit for metadata"), "{err}");
}
