//! A small driver for experiments and benchmarks (`scripts/bench-archive` uses it):
//!
//!   archive-tool sample OUT                      write the sample archive
//!   archive-tool list SRC                        docker-shaped records, one JSON line each
//!   archive-tool subset SRC OUT [--no-verify] [REF…]   write a sub-archive (`-` = stdout; no REF = all)
//!   archive-tool verify SRC                      verify every blob
//!   archive-tool gen OUT MIB IMAGES              IMAGES images of random layers, MIB in all

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use imgkit_archive::{Archive, Compression, SubsetWriter};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args.first().map(String::as_str) {
        Some("sample") => {
            let out = std::fs::File::create(&args[1])?;
            imgkit_archive::write_images(
                &imgkit_archive::sample::images(),
                out,
                Compression::None,
            )?;
        }
        Some("list") => {
            for r in imgkit_archive::list(Path::new(&args[1]))? {
                println!("{}", r.to_json_line());
            }
        }
        Some("verify") => {
            let report = imgkit_archive::verify(Path::new(&args[1]))?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Some("subset") => {
            let archive = Archive::open(Path::new(&args[1]))?;
            let out_path = &args[2];
            let mut w = SubsetWriter::new(&archive);
            let mut any = false;
            for a in &args[3..] {
                if a == "--no-verify" {
                    w.verify_digests(false);
                } else {
                    w.select(&a.parse()?)?;
                    any = true;
                }
            }
            if !any {
                w.select_all();
            }
            let summary = if out_path == "-" {
                let stdout = std::io::stdout().lock();
                w.write(std::io::BufWriter::with_capacity(1 << 20, stdout))?
            } else {
                w.compression(Compression::from_file_name(Path::new(out_path)));
                let f = std::fs::File::create(out_path)?;
                let s = w.write(&f)?;
                f.sync_all().ok();
                s
            };
            writeln!(std::io::stderr(), "{}", serde_json::to_string(&summary)?)?;
        }
        Some("gen") => {
            let total: usize = args[2].parse()?;
            let count: usize = args[3].parse()?;
            let per = (total << 20) / count;
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
            let images: Vec<imgkit_archive::NewImage> = (0..count)
                .map(|i| imgkit_archive::NewImage {
                    names: vec![
                        format!("bench/image{i}:latest")
                            .parse()
                            .expect("valid name"),
                    ],
                    created: "2026-11-28T00:00:00Z".into(),
                    layers: vec![imgkit_archive::layer_tar(&[(
                        "data",
                        &random(per, &mut seed),
                    )])],
                    run_config: serde_json::json!({}),
                })
                .collect();
            let out = std::io::BufWriter::new(std::fs::File::create(&args[1])?);
            imgkit_archive::write_images(&images, out, Compression::None)?;
        }
        _ => return Err("usage: archive-tool sample|list|verify|subset|gen …".into()),
    }
    Ok(())
}

/// Incompressible bytes from xorshift64 (fast, reproducible).
fn random(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}
