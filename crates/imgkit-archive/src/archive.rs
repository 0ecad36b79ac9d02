//! An opened archive: its member table and the images it holds, and their docker-shaped
//! listing records.

use std::io::Read;
use std::path::Path;

use imgkit_types::{ImageRecord, ImageRef, NONE};

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::model::{self, Image};
use crate::scan::{self, Limits, Source, Table};
use imgkit_types::humanize;

/// An image archive, scanned: a tar file (plain, gzip or zstd), an OCI layout directory, or
/// a stream read once.
#[derive(Debug, Clone)]
pub struct Archive {
    pub(crate) table: Table,
    images: Vec<Image>,
    pub(crate) limits: Limits,
}

impl Archive {
    /// Opens a tar file or an OCI layout directory with the default [`Limits`]. Layers are
    /// skipped, not read: on an uncompressed file this reads little more than the metadata.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Limits::default())
    }

    /// [`Archive::open`] with explicit limits.
    pub fn open_with(path: &Path, limits: Limits) -> Result<Self> {
        let table = scan::scan_path(path, false, &limits)?;
        let images = model::build(&table, &path.display().to_string())?;
        Ok(Self {
            table,
            images,
            limits,
        })
    }

    /// Reads an archive from a stream in one pass (plain, gzip or zstd). Such an archive can
    /// be listed and inspected, not subset (its layers are gone once read).
    pub fn from_reader(r: impl Read + 'static, limits: Limits) -> Result<Self> {
        let table = scan::scan_reader(Box::new(r), false, &limits)?;
        let images = model::build(&table, "the input stream")?;
        Ok(Self {
            table,
            images,
            limits,
        })
    }

    /// Reads an archive from a stream in one pass, like [`Archive::from_reader`], handing each
    /// regular member to `visit` as it passes: its name (checked, normalized), its size, and
    /// a reader of its content (what `visit` leaves unread is skipped). An error from `visit`
    /// stops the read. This is how a stream's blobs go somewhere as they pass (an engine's
    /// save into an image store) while the images are still described at the end.
    pub fn from_reader_visiting(
        r: impl Read + 'static,
        limits: Limits,
        visit: &mut scan::Visitor<'_>,
    ) -> Result<Self> {
        let table = scan::scan_reader_visiting(Box::new(r), false, &limits, Some(visit))?;
        let images = model::build(&table, "the input stream")?;
        Ok(Self {
            table,
            images,
            limits,
        })
    }

    /// The content of a small JSON blob (`blobs/<alg>/<hex>`: a manifest, an index, a config)
    /// as the scan kept it.
    pub fn json_blob(&self, digest: &imgkit_types::Digest) -> Option<&[u8]> {
        self.table
            .json(&crate::path::blob_path(digest))
            .ok()
            .flatten()
    }

    /// The kept content of a small JSON member by name (`manifest.json`, `<hex>.json`).
    pub fn json_member(&self, name: &str) -> Option<&[u8]> {
        self.table.json(name).ok().flatten()
    }

    /// Whether the archive holds the blob `blobs/<alg>/<hex>` of `digest`.
    pub fn has_blob(&self, digest: &imgkit_types::Digest) -> bool {
        self.table.contains(&crate::path::blob_path(digest))
    }

    /// The member name of a blob in an OCI layout (`blobs/<alg>/<hex>`).
    pub fn blob_path(digest: &imgkit_types::Digest) -> String {
        crate::path::blob_path(digest)
    }

    /// The digest a member name carries (`blobs/<alg>/<hex>`), if it is one.
    pub fn blob_digest(member: &str) -> Option<imgkit_types::Digest> {
        crate::path::blob_digest(member)
    }

    /// The images, in the archive's order (index.json first, then manifest.json).
    pub fn images(&self) -> &[Image] {
        &self.images
    }

    /// Names that are not image references (left out of every listing) and names given to
    /// more than one image, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        model::name_warnings(&self.images)
    }

    /// How the archive file is compressed (`None` for directories and streams).
    pub fn compression(&self) -> Compression {
        match &self.table.source {
            Source::File { compression, .. } => *compression,
            _ => Compression::None,
        }
    }

    /// The image a reference names: `repo:tag` (`:latest` when bare) or `…@digest`.
    pub fn find(&self, r: &ImageRef) -> Option<&Image> {
        self.images.iter().find(|im| im.matches(r))
    }

    /// Like [`Archive::find`], as an error when nothing matches.
    pub fn get(&self, r: &ImageRef) -> Result<&Image> {
        self.find(r)
            .ok_or_else(|| Error::NoSuchImage(r.to_string()))
    }

    /// Reads members again by name (as [`crate::Blob::path`] gives them), calling `f` with a
    /// reader of exactly each one's content, in the archive's order. Not for streams.
    pub fn read_members(
        &self,
        paths: &std::collections::HashSet<String>,
        f: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        self.table
            .read_members(paths, &self.limits, &mut |m, r| f(&m.path, r))
    }

    /// Docker-shaped records, one per name (one `<none>` row for an image without names),
    /// `CreatedSince` relative to now.
    pub fn records(&self) -> Vec<ImageRecord> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.records_at(now)
    }

    /// [`Archive::records`] with `CreatedSince` relative to `now` (unix seconds).
    pub fn records_at(&self, now: i64) -> Vec<ImageRecord> {
        let mut out = Vec::new();
        for image in &self.images {
            let p = image.primary();
            let created = p.created.as_deref().and_then(humanize::parse_rfc3339);
            let size = humanize::size(image.size());
            let base = ImageRecord {
                containers: "N/A".into(),
                created_at: created.map_or_else(|| NONE.to_owned(), humanize::created_at),
                created_since: created.map_or_else(
                    || "N/A".to_owned(),
                    |c| humanize::since(u64::try_from(now - c).unwrap_or(0)),
                ),
                digest: NONE.into(),
                id: image.id().short_id().to_owned(),
                repository: NONE.into(),
                shared_size: "N/A".into(),
                size: size.clone(),
                tag: NONE.into(),
                unique_size: "N/A".into(),
                extra: [("VirtualSize".to_owned(), serde_json::Value::String(size))].into(),
            };
            if image.names.is_empty() {
                out.push(base);
                continue;
            }
            for name in &image.names {
                let mut rec = base.clone();
                rec.repository = name.familiar_name();
                name.tag().unwrap_or(NONE).clone_into(&mut rec.tag);
                if let Some(d) = name.digest() {
                    rec.digest = d.to_string();
                }
                out.push(rec);
            }
        }
        out
    }
}

/// The docker-shaped records of the archive at `path` (a file or an OCI layout directory).
pub fn list(path: &Path) -> Result<Vec<ImageRecord>> {
    Ok(Archive::open(path)?.records())
}
