//! What `save`, `load` and `run` share: Ctrl-C handling, running the pump with progress, turning
//! its errors into advice, and the summary line (or JSON object) at the end.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use imgkit_transfer::{Cancel, Error as PumpError, OutputProblem, Pump, Side, Step, Transferred};
use serde_json::json;

use crate::diagnostics::with_hint;
use crate::global::GlobalArgs;
use crate::progress::Printer;

/// The process-wide cancellation flag, set by Ctrl-C, SIGTERM and SIGHUP on Unix (ctrlc's
/// "termination" feature), and by console Ctrl-C, Ctrl-Break and close on Windows. The first
/// signal asks the pump to stop both sides and clean up; a second one exits at once with 130.
pub(crate) fn interrupt_flag() -> Cancel {
    static FLAG: OnceLock<Cancel> = OnceLock::new();
    FLAG.get_or_init(|| {
        let cancel = Cancel::new();
        let handler = cancel.clone();
        // If a handler can't be installed (already set by an embedding), Ctrl-C kills us the
        // default way; the pump's children still die of EOF/EPIPE.
        let _ = ctrlc::set_handler(move || {
            if handler.is_cancelled() {
                std::process::exit(130);
            }
            handler.cancel();
        });
        cancel
    })
    .clone()
}

/// Runs `pump`, drawing progress on `printer`, and explains a failure with a hint.
/// `what` names the images for the error ("3 images from docker").
pub(crate) fn run_pump(
    pump: Pump,
    printer: &mut Printer,
    what: &str,
) -> anyhow::Result<Transferred> {
    let pump = pump.cancel(interrupt_flag());
    pump.run(printer).map_err(|e| explain(e, what))
}

fn explain(err: PumpError, what: &str) -> anyhow::Error {
    let hint = match &err {
        PumpError::Spawn { source, label, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Some(format!(
                "install the engine's CLI, or point imgkit at it (--engine-bin or IMGKIT_<ENGINE>_BIN); tried `{label}`"
            ))
        }
        PumpError::Spawn { .. } => {
            Some("check that the engine's CLI is executable by you".to_owned())
        }
        PumpError::ChildFailed {
            side: Side::Source,
            step: Step::Save,
            ..
        } => Some(format!(
            "nothing was loaded or written; check that the images still exist (`imgkit ls`) and retry ({what})"
        )),
        PumpError::ChildFailed {
            side: Side::Target, ..
        } => Some(
            "the target stopped the stream; its own message is above. \
             To look closer, save to a file first (imgkit save -o images.tar …) and load that"
                .to_owned(),
        ),
        PumpError::ChildFailed { .. } | PumpError::Cancelled { .. } => None,
        PumpError::Output { path, problem } => Some(output_hint(path, problem)),
        PumpError::Create { source, .. }
        | PumpError::Write { source, .. }
        | PumpError::Finish { source, .. } => Some(match source.raw_os_error() {
            Some(28) => "the disk is full: free space there or write elsewhere (-o / --to / --via)"
                .to_owned(),
            _ if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "that directory is not writable by you: choose another output path".to_owned()
            }
            _ if source.kind() == std::io::ErrorKind::NotFound => {
                "the output directory does not exist: create it or choose another path".to_owned()
            }
            _ => "check the output path and the space left on its filesystem".to_owned(),
        }),
        PumpError::Read { .. } => {
            Some("check that the input is a complete image archive".to_owned())
        }
    };
    let err = anyhow::Error::new(err).context(format!("could not move {what}"));
    match hint {
        Some(h) => with_hint(err, h),
        None => err,
    }
}

/// What to do about an output path that cannot take an archive.
fn output_hint(path: &Path, problem: &OutputProblem) -> String {
    match problem {
        OutputProblem::IsDirectory => {
            format!("name a file, e.g. {}", path.join("images.tar").display())
        }
        OutputProblem::DanglingSymlink(_) => {
            "create the file the symlink names, remove the symlink, or choose another path"
                .to_owned()
        }
        OutputProblem::ParentMissing(d) => format!(
            "create the directory first (mkdir -p {}) or choose another path",
            d.display()
        ),
        OutputProblem::ParentNotDirectory(_) => "choose a path inside a directory".to_owned(),
        OutputProblem::ParentNotWritable(_, e) if e.raw_os_error() == Some(28) => {
            "the disk is full: free space there or write elsewhere".to_owned()
        }
        OutputProblem::ParentNotWritable(..) => {
            "that directory is not writable by you: choose another output path".to_owned()
        }
        OutputProblem::Stat(_) => "check the output path".to_owned(),
    }
}

/// Checks an output path before anything runs: a directory, a missing or read-only directory
/// fail here, with the hint the pump's error would get, instead of after the whole stream.
pub(crate) fn check_output(path: &Path) -> anyhow::Result<()> {
    imgkit_transfer::check_output(path).map_err(|problem| {
        let hint = output_hint(path, &problem);
        with_hint(
            PumpError::Output {
                path: path.to_path_buf(),
                problem,
            },
            hint,
        )
    })
}

/// Whether an output path is a device, FIFO or other file that is written in place (and cannot
/// be read back to verify it).
pub(crate) fn written_in_place(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The end-of-run report.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) images: usize,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) verified: Option<usize>,
    /// `run` only: the references moved, and those skipped because the target had them.
    pub(crate) sync: Option<SyncReport>,
}

/// What `run` moved and what it left alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncReport {
    pub(crate) copied: Vec<String>,
    pub(crate) skipped: Vec<String>,
    /// Copied images given new names in the target: (reference, new names).
    pub(crate) renamed: Vec<(String, Vec<String>)>,
    /// An image store target: the blobs written and those it already held.
    pub(crate) blobs: Option<imgkit_store::CopyReport>,
}

impl Summary {
    pub(crate) fn mib_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 / 1_048_576.0 / secs
        } else {
            0.0
        }
    }

    /// Prints the summary: a JSON object on stdout with `--json` (stderr when stdout carries the
    /// archive), else one line on stderr (none with `--quiet`).
    pub(crate) fn print(&self, global: &GlobalArgs, stdout_is_data: bool) {
        if global.json {
            let obj = self.to_json();
            if stdout_is_data {
                let _ = writeln!(std::io::stderr(), "{obj}");
            } else {
                let _ = writeln!(std::io::stdout(), "{obj}");
            }
            return;
        }
        self.print_human(global);
    }

    /// The summary as `--json` prints it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        {
            let mut obj = json!({
                "from": self.from,
                "to": self.to,
                "images": self.images,
                "bytes": self.bytes,
                "seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "mib_per_second": (self.mib_per_second() * 10.0).round() / 10.0,
                "verified": self.verified,
            });
            if let Some(sync) = &self.sync {
                obj["copied"] = json!(sync.copied);
                obj["skipped"] = json!(sync.skipped);
                obj["renamed"] = sync
                    .renamed
                    .iter()
                    .map(|(r, n)| (r.clone(), json!(n)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                if let Some(b) = &sync.blobs {
                    obj["blobs_written"] = json!(b.blobs_written);
                    obj["bytes_written"] = json!(b.bytes_written);
                    obj["blobs_skipped"] = json!(b.blobs_skipped);
                    obj["bytes_skipped"] = json!(b.bytes_skipped);
                }
            }
            obj
        }
    }

    /// The summary line on stderr (none with `--quiet`).
    pub(crate) fn print_human(&self, global: &GlobalArgs) {
        if global.quiet {
            return;
        }
        let verified = match self.verified {
            Some(n) => format!(", {n} verified by image ID"),
            None => String::new(),
        };
        let skipped = match &self.sync {
            Some(s) if !s.skipped.is_empty() => format!(
                "; skipped {} already there with the same ID: {}",
                s.skipped.len(),
                names(&s.skipped)
            ),
            _ => String::new(),
        };
        let renamed = match &self.sync {
            Some(s) if !s.renamed.is_empty() => {
                let each: Vec<String> = s
                    .renamed
                    .iter()
                    .map(|(r, n)| format!("{r} → {}", n.join(", ")))
                    .collect();
                format!("; renamed {}", names(&each))
            }
            _ => String::new(),
        };
        if let Some(b) = self.sync.as_ref().and_then(|s| s.blobs.as_ref())
            && self.images > 0
        {
            // An image store target: blobs, not a stream.
            let _ = writeln!(
                std::io::stderr(),
                "imgkit: wrote {} image{} from {} to {}: {} blob{} written ({}), {} already there ({}) in {:.1} s{verified}{renamed}{skipped}",
                self.images,
                if self.images == 1 { "" } else { "s" },
                self.from,
                self.to,
                b.blobs_written,
                if b.blobs_written == 1 { "" } else { "s" },
                imgkit_types::humanize::size(b.bytes_written),
                b.blobs_skipped,
                imgkit_types::humanize::size(b.bytes_skipped),
                self.elapsed.as_secs_f64(),
            );
            return;
        }
        if self.images == 0 {
            let _ = writeln!(
                std::io::stderr(),
                "imgkit: nothing to move from {} to {}{skipped}",
                self.from,
                self.to,
            );
            return;
        }
        let _ = writeln!(
            std::io::stderr(),
            "imgkit: moved {} image{} from {} to {}: {} in {:.1} s ({:.1} MiB/s){verified}{renamed}{skipped}",
            self.images,
            if self.images == 1 { "" } else { "s" },
            self.from,
            self.to,
            indicatif::HumanBytes(self.bytes),
            self.elapsed.as_secs_f64(),
            self.mib_per_second(),
        );
    }
}

/// Up to five names, then "and N more".
fn names(all: &[String]) -> String {
    let mut shown: Vec<&str> = all.iter().take(5).map(String::as_str).collect();
    let more = all.len().saturating_sub(5);
    let more = format!("and {more} more");
    if all.len() > 5 {
        shown.push(&more);
    }
    shown.join(", ")
}

/// Parses a size as engines print it ("72.9MB", "1.2GB", "512kB", "721 kB", "261.3 KiB") into
/// bytes; `None` for "N/A" and other text. Only an estimate for progress ETAs.
pub(crate) fn listed_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1_048_576.0,
        "GiB" => 1_073_741_824.0,
        _ => return None,
    };
    Some((value * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::listed_bytes;

    #[test]
    fn parses_engine_sizes() {
        assert_eq!(listed_bytes("72.9MB"), Some(72_900_000));
        assert_eq!(listed_bytes("721kB"), Some(721_000));
        assert_eq!(listed_bytes("261.3 KiB"), Some(267_571));
        assert_eq!(listed_bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(listed_bytes("N/A"), None);
        assert_eq!(listed_bytes(""), None);
    }
}
