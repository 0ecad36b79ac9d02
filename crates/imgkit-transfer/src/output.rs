//! Output files: where a file sink's bytes go, and how they get there without ever leaving a mix.
//!
//! - A regular file (or an absent one) is written to a unique temporary file beside it, created
//!   exclusively (`O_EXCL`: never through a symlink, never shared with another run), locked while
//!   it is written, flushed to disk and renamed over the target only when the whole transfer
//!   succeeded. Two runs writing the same file at once each write their own temporary; the later
//!   rename wins and the file is always one complete archive.
//! - A character device, FIFO, socket or block device (`/dev/null`, a named pipe a reader waits
//!   on) is written in place: no temporary, no rename, nothing removed afterwards.
//! - A symlink is followed to what it names, which is then treated as above.
//! - A directory, a missing parent directory or one that is not writable is refused before any
//!   byte is produced ([`check_output`]).
//!
//! Temporaries are named `.FILE.XXXXXX.imgkit-partial` (`XXXXXX` random). One left by a killed
//! run is recognised by its name and by holding no lock, and is removed by the next run that
//! writes `FILE`.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The end of every temporary output file's name.
pub const TEMP_SUFFIX: &str = ".imgkit-partial";

/// Why an output path cannot be written.
#[derive(Debug)]
pub enum OutputProblem {
    /// The path is a directory.
    IsDirectory,
    /// The path is a symlink to nothing.
    DanglingSymlink(PathBuf),
    /// The directory that would hold the file does not exist.
    ParentMissing(PathBuf),
    /// What would hold the file is not a directory.
    ParentNotDirectory(PathBuf),
    /// No file can be created in the directory (permissions, read-only filesystem, full disk).
    ParentNotWritable(PathBuf, io::Error),
    /// The path could not be examined.
    Stat(io::Error),
}

impl fmt::Display for OutputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputProblem::IsDirectory => f.write_str("it is a directory"),
            OutputProblem::DanglingSymlink(to) => {
                write!(
                    f,
                    "it is a symlink to {}, which does not exist",
                    to.display()
                )
            }
            OutputProblem::ParentMissing(d) => {
                write!(f, "the directory {} does not exist", d.display())
            }
            OutputProblem::ParentNotDirectory(d) => {
                write!(f, "{} is not a directory", d.display())
            }
            OutputProblem::ParentNotWritable(d, e) => {
                write!(f, "no file can be created in {}: {e}", d.display())
            }
            OutputProblem::Stat(e) => write!(f, "{e}"),
        }
    }
}

impl OutputProblem {
    /// The underlying I/O error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            OutputProblem::ParentNotWritable(_, e) | OutputProblem::Stat(e) => Some(e),
            _ => None,
        }
    }
}

/// How an output path will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Through a temporary in `dir`, renamed to `target` (the path with symlinks resolved).
    Replace { dir: PathBuf, target: PathBuf },
    /// In place: a device, FIFO or other file that is not a regular one.
    InPlace(PathBuf),
}

/// Checks that `path` can take an archive: not a directory, in an existing writable directory
/// (a test file is created there and removed), or a device/FIFO written in place. Call it before
/// any engine runs; the pump checks again when it opens the file.
pub fn check_output(path: &Path) -> Result<(), OutputProblem> {
    match plan(path)? {
        Plan::Replace { dir, .. } => tempfile::Builder::new()
            .prefix(".imgkit-check.")
            .tempfile_in(&dir)
            .map(drop)
            .map_err(|e| OutputProblem::ParentNotWritable(dir, e)),
        Plan::InPlace(_) => Ok(()),
    }
}

/// Decides how `path` is written, without creating anything.
pub(crate) fn plan(path: &Path) -> Result<Plan, OutputProblem> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(stat_error(path, e)),
    };
    let (target, meta) = match meta {
        Some(m) if m.file_type().is_symlink() => match fs::metadata(path) {
            Ok(real) => {
                let resolved = fs::canonicalize(path).map_err(OutputProblem::Stat)?;
                (resolved, Some(real))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let to = fs::read_link(path).unwrap_or_default();
                return Err(OutputProblem::DanglingSymlink(to));
            }
            Err(e) => return Err(OutputProblem::Stat(e)),
        },
        other => (path.to_path_buf(), other),
    };
    match meta {
        Some(m) if m.is_dir() => Err(OutputProblem::IsDirectory),
        Some(m) if !m.is_file() => Ok(Plan::InPlace(target)),
        _ => {
            let dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            match fs::metadata(&dir) {
                Ok(m) if m.is_dir() => Ok(Plan::Replace { dir, target }),
                Ok(_) => Err(OutputProblem::ParentNotDirectory(dir)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(OutputProblem::ParentMissing(dir))
                }
                Err(e) => Err(OutputProblem::Stat(e)),
            }
        }
    }
}

fn stat_error(path: &Path, e: io::Error) -> OutputProblem {
    // `a/b.tar` where `a` is a file.
    if e.raw_os_error() == Some(20)
        && let Some(parent) = path.parent()
    {
        return OutputProblem::ParentNotDirectory(parent.to_path_buf());
    }
    OutputProblem::Stat(e)
}

/// An output being written.
pub(crate) enum OutputFile {
    Temp {
        file: NamedTempFile,
        target: PathBuf,
    },
    InPlace(File),
}

impl OutputFile {
    /// Opens the output for `path` as [`plan`] decides. For a regular target: removes stale
    /// temporaries of earlier runs, then creates and locks a fresh one.
    pub(crate) fn open(path: &Path) -> Result<Self, OpenError> {
        match plan(path).map_err(OpenError::Problem)? {
            Plan::InPlace(p) => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(OpenError::Io)?;
                Ok(OutputFile::InPlace(file))
            }
            Plan::Replace { dir, target } => {
                remove_stale(&dir, &target);
                let mut last = None;
                // A fresh temporary can be taken for stale by a concurrent run's cleanup in the
                // instant between its creation and its lock: then take another.
                for _ in 0..3 {
                    let file = create_temp(&dir, &target).map_err(|e| {
                        OpenError::Problem(OutputProblem::ParentNotWritable(dir.clone(), e))
                    })?;
                    match file.as_file().try_lock() {
                        // Locked, and not removed by that cleanup before the lock was taken
                        // (then the rename at the end would find nothing to rename).
                        Ok(()) if still_linked(&file) => {
                            return Ok(OutputFile::Temp { file, target });
                        }
                        Ok(()) => {
                            last =
                                Some("a concurrent run removed it before it was locked".to_owned());
                        }
                        Err(e) => last = Some(e.to_string()),
                    }
                }
                Err(OpenError::Io(io::Error::other(format!(
                    "could not lock a temporary file in {}: {}",
                    dir.display(),
                    last.unwrap_or_default()
                ))))
            }
        }
    }

    /// The temporary's path (`None` when written in place).
    pub(crate) fn temp_path(&self) -> Option<&Path> {
        match self {
            OutputFile::Temp { file, .. } => Some(file.path()),
            OutputFile::InPlace(_) => None,
        }
    }

    pub(crate) fn file(&mut self) -> &mut File {
        match self {
            OutputFile::Temp { file, .. } => file.as_file_mut(),
            OutputFile::InPlace(f) => f,
        }
    }

    /// Flushes a temporary to disk (a device or FIFO needs nothing).
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        match self {
            OutputFile::Temp { file, .. } => file.as_file().sync_all(),
            OutputFile::InPlace(_) => Ok(()),
        }
    }

    /// Renames a temporary over its target; the target path for messages on failure.
    pub(crate) fn commit(self) -> Result<(), (PathBuf, io::Error)> {
        match self {
            OutputFile::Temp { file, target } => {
                file.persist(&target)
                    .map_err(|e| (target.clone(), e.error))?;
                sync_parent(&target);
                Ok(())
            }
            OutputFile::InPlace(_) => Ok(()),
        }
    }
}

/// Why opening an output failed.
pub(crate) enum OpenError {
    Problem(OutputProblem),
    Io(io::Error),
}

/// Creates `.FILE.` + 8 random characters + [`TEMP_SUFFIX`] in `dir`, exclusively.
fn create_temp(dir: &Path, target: &Path) -> io::Result<NamedTempFile> {
    let prefix = temp_prefix(target);
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(TEMP_SUFFIX).rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As `File::create` would: the umask decides.
        b.permissions(fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

fn temp_prefix(target: &Path) -> OsString {
    let mut p = OsString::from(".");
    p.push(target.file_name().unwrap_or_default());
    p.push(".");
    p
}

/// Whether `name` is a temporary of ours for `target` (`.FILE.` + 8 random characters + suffix).
pub(crate) fn is_temp_of(name: &std::ffi::OsStr, target: &Path) -> bool {
    let (Some(name), Some(prefix)) = (name.to_str(), temp_prefix(target).into_string().ok()) else {
        return false;
    };
    name.strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|r| r.len() == 8 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether the temporary's path still names the file we hold (a concurrent run's
/// [`remove_stale`] can unlink it in the instant between its creation and its lock).
fn still_linked(file: &NamedTempFile) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.as_file().metadata(), fs::symlink_metadata(file.path())) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // Windows removes no file another handle holds open without delete sharing.
        file.path().is_file()
    }
}

/// Removes temporaries of `target` that no live run holds (their lock is free).
fn remove_stale(dir: &Path, target: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_temp_of(&entry.file_name(), target) {
            continue;
        }
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(f) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if f.try_lock().is_ok() {
            // Unix removes a locked file; Windows wants it closed first.
            if fs::remove_file(&path).is_err() {
                drop(f);
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Makes a rename durable: fsync the directory holding `path` (Unix; a no-op elsewhere).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_by_name() {
        let t = Path::new("/x/images.tar");
        assert!(is_temp_of(
            ".images.tar.AbC123xy.imgkit-partial".as_ref(),
            t
        ));
        assert!(!is_temp_of(
            ".images.tar.AbC123xy.imgkit-partial.x".as_ref(),
            t
        ));
        assert!(!is_temp_of(".images.tar.AbC12.imgkit-partial".as_ref(), t));
        assert!(!is_temp_of(
            ".other.tar.AbC123xy.imgkit-partial".as_ref(),
            t
        ));
        assert!(!is_temp_of("images.tar".as_ref(), t));
    }

    #[test]
    fn plans_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.tar");
        assert_eq!(
            plan(&out).unwrap(),
            Plan::Replace {
                dir: dir.path().to_path_buf(),
                target: out.clone()
            }
        );
        assert!(matches!(plan(dir.path()), Err(OutputProblem::IsDirectory)));
        assert!(matches!(
            plan(&dir.path().join("nope/out.tar")),
            Err(OutputProblem::ParentMissing(_))
        ));
        fs::write(&out, b"x").unwrap();
        assert!(matches!(
            plan(&out.join("a.tar")),
            Err(OutputProblem::ParentNotDirectory(_))
        ));
    }
}
