//! The save→load pump: stream an image archive from a source (an engine's `save` child writing a
//! tar to its stdout, or any reader) into one or more sinks (an engine's `load` child reading its
//! stdin, a file written to a unique temporary beside it and renamed when complete, or any
//! writer).
//!
//! The pump copies through one fixed buffer and counts bytes, reports progress through a
//! [`Reporter`], drains every child's stderr on its own thread (keeping the tail for errors), and
//! stops the other side when one side fails. A target never sees the end of its input before the
//! source has exited successfully, so a load never commits a stream the source did not finish.
//! Nothing here spawns a shell: the caller hands over `std::process::Command`s built from argv.
//!
//! ```no_run
//! use std::process::Command;
//! use imgkit_transfer::{Pump, Sink, Source, NoProgress};
//!
//! let mut save = Command::new("docker");
//! save.args(["save", "--", "alpine:3.20"]);
//! let mut load = Command::new("podman");
//! load.arg("load");
//! let done = Pump::new(Source::command("docker", save))
//!     .sink(Sink::command("podman", load))
//!     .run(&mut NoProgress)?;
//! println!("{} bytes", done.bytes);
//! # Ok::<(), imgkit_transfer::Error>(())
//! ```

mod cancel;
mod error;
mod names;
mod output;
mod progress;
mod pump;
mod tail;

pub use cancel::Cancel;
pub use error::{Error, Side, StderrTail, Step};
pub use names::{MAX_META, QualifyNames};
pub use output::{OutputProblem, TEMP_SUFFIX, check_output};
pub use progress::{NoProgress, Progress, Reporter};
pub use pump::{DEFAULT_BUFFER_SIZE, Finish, Pump, Sink, Source, Transferred};
