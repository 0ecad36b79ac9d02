//! containerd as a destination: under a lease, blobs it lacks written through the content
//! service (`Write`, requests pipelined, each with the expected digest and size so containerd
//! checks them at commit), gc labels on manifests, the images unpacked, and the image records
//! created or updated last.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, CreateImageRequest, CreateRequest, DeleteImageRequest,
    DeleteRequest, GetImageRequest, Image, Resource, UpdateImageRequest, WriteAction,
    WriteContentRequest,
};
use containerd_client::tonic::Code as T;
use containerd_client::types::Descriptor;
use imgkit_store::{BlobInfo, StoredImage};
use imgkit_types::{Digest, ImageRef};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Ctx;
use crate::error::{Error, Result};

/// Bytes per write request (containerd accepts up to 16 MiB per message).
const CHUNK: usize = 1 << 20;
/// Write requests in flight on one stream.
const IN_FLIGHT: usize = 8;
/// How long an import's lease lives if imgkit dies holding it (then containerd collects what
/// only it held).
const LEASE_TTL: Duration = Duration::from_hours(1);

/// Creates a lease that expires on its own after [`LEASE_TTL`].
pub(crate) async fn create_lease(ctx: &Ctx) -> Result<String> {
    let id = format!(
        "imgkit-import-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let expire = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + LEASE_TTL.as_secs();
    let labels = HashMap::from([(
        "containerd.io/gc.expire".to_owned(),
        rfc3339(i64::try_from(expire).unwrap_or(i64::MAX)),
    )]);
    LeasesClient::new(ctx.channel.clone())
        .create(ctx.req(CreateRequest {
            id: id.clone(),
            labels,
        }))
        .await
        .map_err(|s| ctx.status("creating a lease", &s))?;
    Ok(id)
}

pub(crate) async fn delete_lease(ctx: &Ctx, id: &str) -> Result<()> {
    match LeasesClient::new(ctx.channel.clone())
        .delete(ctx.req(DeleteRequest {
            id: id.to_owned(),
            sync: false,
        }))
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == T::NotFound => Ok(()),
        Err(s) => Err(ctx.status("releasing the lease", &s)),
    }
}

/// Holds `digest` (already in the store) under the lease, so it cannot be collected before
/// the image naming it is committed.
pub(crate) async fn hold(ctx: &Ctx, lease: &str, digest: &Digest) -> Result<()> {
    LeasesClient::new(ctx.channel.clone())
        .add_resource(ctx.req(AddResourceRequest {
            id: lease.to_owned(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".to_owned(),
            }),
        }))
        .await
        .map_err(|s| ctx.status(&format!("holding {digest} under the lease"), &s))?;
    Ok(())
}

fn rfc3339(unix: i64) -> String {
    // created_at prints `2026-11-28 08:21:51 +0000 UTC`; containerd wants RFC 3339.
    let s = imgkit_types::humanize::created_at(unix);
    format!("{}T{}Z", &s[..10], &s[11..19])
}

static HASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A blob written (or found already there: `new` false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) new: bool,
}

/// Writes one blob: a STAT (naming the expected digest and size when known), the data in
/// pipelined WRITE requests, a COMMIT with the digest and size that containerd checks. A blob
/// whose digest is not known before it is read (`expect` `None`) is hashed as it streams and
/// committed under what it hashes to. On any failure the ingest is aborted.
pub(crate) fn write_blob(
    client: &crate::Client,
    lease: &str,
    expect: Option<&BlobInfo>,
    content: &mut dyn Read,
) -> Result<Written> {
    use sha2::Digest as _;
    let ctx = client.ctx.clone();
    let what = match expect {
        Some(b) => format!("writing {}", b.digest),
        None => "writing a layer".to_owned(),
    };
    let reference = match expect {
        Some(b) => format!("imgkit-{}", b.digest.hex()),
        None => format!(
            "imgkit-hashed-{}-{}",
            std::process::id(),
            HASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    let (tx, rx) = mpsc::channel::<WriteContentRequest>(IN_FLIGHT);
    let call = {
        let (ctx, lease, what) = (ctx.clone(), lease.to_owned(), what.clone());
        client.spawn(async move {
            let mut c = ctx.content();
            let mut s = c
                .write(ctx.leased(ReceiverStream::new(rx), &lease))
                .await
                .map_err(|s| (s.code(), ctx.status(&what, &s)))?
                .into_inner();
            let mut committed = None;
            while let Some(m) = s
                .message()
                .await
                .map_err(|s| (s.code(), ctx.status(&what, &s)))?
            {
                if m.action == WriteAction::Commit as i32 {
                    committed = Some(m.digest);
                }
            }
            Ok::<_, (T, Error)>(committed)
        })
    };
    let request =
        |action: WriteAction, offset: u64, total: u64, expected: String, data: Vec<u8>| {
            WriteContentRequest {
                action: action as i32,
                r#ref: reference.clone(),
                total: i64::try_from(total).unwrap_or(i64::MAX),
                expected,
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                data,
                labels: HashMap::new(),
            }
        };
    let (total, expected) = expect.map_or((0, String::new()), |b| (b.size, b.digest.to_string()));
    let mut sent_all = tx
        .blocking_send(request(
            WriteAction::Stat,
            0,
            total,
            expected.clone(),
            Vec::new(),
        ))
        .is_ok();
    let mut hasher = expect.is_none().then(sha2::Sha256::new);
    let mut offset: u64 = 0;
    let mut read_error = None;
    while sent_all {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match content.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        if read_error.is_some() || n == 0 {
            break;
        }
        buf.truncate(n);
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        let at = offset;
        offset += n as u64;
        sent_all = tx
            .blocking_send(request(
                WriteAction::Write,
                at,
                total,
                expected.clone(),
                buf,
            ))
            .is_ok();
    }
    let digest: Digest = match (expect, hasher) {
        (Some(b), _) => b.digest.clone(),
        (None, Some(h)) => format!("sha256:{}", crate::hex(&h.finalize()))
            .parse()
            .expect("a sha256 digest"),
        (None, None) => unreachable!("a hasher when no digest is expected"),
    };
    let size_ok = expect.is_none_or(|b| offset == b.size);
    if expect.is_none() && sent_all && read_error.is_none() {
        // Held before the commit: one that finds it already there keeps it from the collector.
        let (c, d, l) = (ctx.clone(), digest.clone(), lease.to_owned());
        client.block_on(async move { hold(&c, &l, &d).await })?;
    }
    if sent_all && read_error.is_none() && size_ok {
        sent_all = tx
            .blocking_send(request(
                WriteAction::Commit,
                offset,
                offset,
                digest.to_string(),
                Vec::new(),
            ))
            .is_ok();
    }
    drop(tx);
    let outcome = client
        .block_on(call)
        .map_err(|e| ctx.content_error(what.clone(), e.to_string()))?;
    let done = |new| {
        Ok(Written {
            digest: digest.clone(),
            size: expect.map_or(offset, |b| b.size),
            new,
        })
    };
    let failed = match (outcome, read_error, size_ok) {
        // Already there (a STAT naming it, or a COMMIT of a hashed blob): nothing to write.
        (Err((T::AlreadyExists, _)), None, _) => return done(false),
        (_, Some(e), _) => Err(ctx.content_error(what.clone(), format!("reading the source: {e}"))),
        (Err((_, e)), None, _) => Err(e),
        (Ok(_), None, false) => Err(ctx.content_error(
            what.clone(),
            format!(
                "the source gave {offset} bytes, and its descriptor says {total}; nothing of it was kept"
            ),
        )),
        (Ok(Some(_)), None, true) if sent_all => return done(true),
        (Ok(_), None, true) => Err(ctx.content_error(
            what.clone(),
            "containerd closed the write without committing it",
        )),
    };
    let _ = client.block_on(async {
        ctx.content()
            .abort(ctx.req(AbortRequest {
                r#ref: reference.clone(),
            }))
            .await
    });
    failed
}

/// The gc labels that keep what a manifest names alive as long as it is: for an image
/// manifest its config and layers, for an index its manifests (`ctr images import` sets the
/// same). Each manifest with its labels.
pub(crate) fn gc_labels(image: &StoredImage) -> Vec<(&Digest, HashMap<String, String>)> {
    let manifest = |config: &BlobInfo, layers: &[BlobInfo]| {
        let mut labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            config.digest.to_string(),
        )]);
        for (i, l) in layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.to_string(),
            );
        }
        labels
    };
    if !image.is_index() {
        return vec![(
            &image.manifest.digest,
            manifest(&image.config, &image.layers),
        )];
    }
    let mut out: Vec<(&Digest, HashMap<String, String>)> = image
        .platforms
        .iter()
        .map(|p| (&p.manifest.digest, manifest(&p.config, &p.layers)))
        .collect();
    out.push((
        &image.manifest.digest,
        image
            .platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("containerd.io/gc.ref.content.m.{i}"),
                    p.manifest.digest.to_string(),
                )
            })
            .collect(),
    ));
    out
}

/// The name as containerd keeps it: fully qualified (`docker.io/library/alpine:3`,
/// `docker.io/seed/app@sha256:…`).
pub fn native_name(r: &ImageRef) -> String {
    if r.tag().is_none()
        && let Some(d) = r.digest()
    {
        return format!("{}@{d}", r.normalized_name());
    }
    r.normalized().to_string()
}

/// Creates the image record `name` → `target`, or points an existing one at it.
pub(crate) async fn put_image(ctx: &Ctx, name: &str, target: &BlobInfo) -> Result<()> {
    let image = Image {
        name: name.to_owned(),
        target: Some(Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.to_string(),
            size: i64::try_from(target.size).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        }),
        ..Default::default()
    };
    let mut c = ImagesClient::new(ctx.channel.clone());
    match c
        .create(ctx.req(CreateImageRequest {
            image: Some(image.clone()),
            ..Default::default()
        }))
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == T::AlreadyExists => c
            .update(ctx.req(UpdateImageRequest {
                image: Some(image),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["target".to_owned()],
                }),
                ..Default::default()
            }))
            .await
            .map(drop)
            .map_err(|s| ctx.status(&format!("updating image {name}"), &s)),
        Err(s) => Err(ctx.status(&format!("creating image {name}"), &s)),
    }
}

/// The target of the image record `name`, `None` when there is none.
pub(crate) async fn get_image(ctx: &Ctx, name: &str) -> Result<Option<BlobInfo>> {
    match ImagesClient::new(ctx.channel.clone())
        .get(ctx.req(GetImageRequest {
            name: name.to_owned(),
        }))
        .await
    {
        Ok(r) => Ok(r.into_inner().image.and_then(|i| i.target).and_then(|t| {
            Some(BlobInfo {
                digest: t.digest.parse().ok()?,
                size: u64::try_from(t.size).ok()?,
                media_type: t.media_type,
            })
        })),
        Err(s) if s.code() == T::NotFound => Ok(None),
        Err(s) => Err(ctx.status(&format!("looking up image {name}"), &s)),
    }
}

/// Deletes the image record `name` (none is fine).
pub(crate) async fn delete_image(ctx: &Ctx, name: &str) -> Result<()> {
    match ImagesClient::new(ctx.channel.clone())
        .delete(ctx.req(DeleteImageRequest {
            name: name.to_owned(),
            sync: false,
            ..Default::default()
        }))
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == T::NotFound => Ok(()),
        Err(s) => Err(ctx.status(&format!("removing image {name}"), &s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_fully_qualified() {
        let n = |s: &str| native_name(&s.parse().unwrap());
        assert_eq!(n("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(n("seed/app:1.0"), "docker.io/seed/app:1.0");
        assert_eq!(
            n("localhost:5000/team/app:1.0"),
            "localhost:5000/team/app:1.0"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("seed/app@{d}")),
            format!("docker.io/seed/app@{d}")
        );
    }

    #[test]
    fn lease_expiry_is_rfc3339() {
        assert_eq!(rfc3339(1_795_854_111), "2026-11-28T08:21:51Z");
    }
}
