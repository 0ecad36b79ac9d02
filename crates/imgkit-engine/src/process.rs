//! Running an engine command to completion: stdout collected, stderr drained on its own thread
//! (reading one pipe then the other deadlocks once a pipe fills).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

use crate::Error;

/// What a finished command printed.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

/// Runs `cmd` with no stdin and both outputs captured.
pub(crate) fn run(mut cmd: Command) -> Result<Finished, Error> {
    let program = std::path::PathBuf::from(cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut stdout);
    let status = child.wait();
    let stderr = stderr_thread.join().unwrap_or_default();
    read.map_err(|source| Error::Read {
        program: program.clone(),
        source,
    })?;
    let status = status.map_err(|source| Error::Read { program, source })?;
    Ok(Finished {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// `argv` as one line for messages (arguments with spaces or braces quoted).
pub(crate) fn display_argv(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "{}'\"$".contains(c)) {
            parts.push(format!("'{}'", a.replace('\'', "'\\''")));
        } else {
            parts.push(a.into_owned());
        }
    }
    parts.join(" ")
}
