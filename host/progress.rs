//! Drawing a transfer's progress: an indicatif bar on a terminal, one line per step otherwise,
//! JSON event lines with `--json`, nothing with `--quiet`. Everything goes to stderr (stdout may
//! carry the archive itself, `imgkit save -o -`). `NO_COLOR` turns colour off.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use imgkit_transfer::{Progress, Reporter};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::global::GlobalArgs;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A live bar (stderr is a terminal).
    Bar,
    /// A line when a step starts and ends (stderr is a file or pipe).
    Lines,
    /// One JSON object per event on stderr.
    Json,
    /// Nothing.
    Quiet,
}

impl Mode {
    pub(crate) fn from_global(global: &GlobalArgs) -> Self {
        if global.quiet {
            Mode::Quiet
        } else if global.json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Prints steps and drives a bar for the byte stream; implements the pump's [`Reporter`].
pub(crate) struct Printer {
    mode: Mode,
    color: bool,
    bar: Option<ProgressBar>,
    /// What the stream is, e.g. "docker → podman".
    label: String,
    last_json: Option<Instant>,
}

impl Printer {
    pub(crate) fn new(global: &GlobalArgs) -> Self {
        Self::with_mode(Mode::from_global(global))
    }

    pub(crate) fn with_mode(mode: Mode) -> Self {
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Self {
            mode,
            color,
            bar: None,
            label: String::new(),
            last_json: None,
        }
    }

    /// Announces a step ("list", "select", "verify", …) with a human sentence.
    pub(crate) fn step(&mut self, step: &str, message: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => event(&json!({"event": "step", "step": step, "message": message})),
            Mode::Bar | Mode::Lines => {
                let _ = writeln!(std::io::stderr(), "{} {message}", self.paint("imgkit:"));
            }
        }
    }

    /// Names the stream the next [`Reporter`] calls are about.
    pub(crate) fn stream(&mut self, label: impl Into<String>) -> &mut Self {
        self.label = label.into();
        self
    }

    fn paint(&self, s: &str) -> String {
        if self.color && self.mode == Mode::Bar {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn bar_style(&self, known_total: bool) -> ProgressStyle {
        let bar = if self.color {
            "{bar:30.cyan/blue}"
        } else {
            "{bar:30}"
        };
        let template = if known_total {
            format!(
                "{{spinner}} {{msg}} {bar} {{bytes}}/~{{total_bytes}} {{binary_bytes_per_sec}} {{elapsed}} ETA {{eta}}"
            )
        } else {
            "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}".to_owned()
        };
        ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("=> ")
    }
}

/// Writes one JSON event line on stderr.
fn event(value: &serde_json::Value) {
    let _ = writeln!(std::io::stderr().lock(), "{value}");
}

fn rate(p: &Progress) -> String {
    format!("{}/s", HumanBytes(p.rate() as u64))
}

fn progress_json(kind: &str, label: &str, p: &Progress) -> serde_json::Value {
    json!({
        "event": kind,
        "stream": label,
        "bytes": p.bytes,
        "expected_bytes": p.expected,
        "elapsed_seconds": p.elapsed.as_secs_f64(),
        "bytes_per_second": p.rate().round(),
        "eta_seconds": p.eta().map(|d| d.as_secs_f64().round()),
    })
}

impl Reporter for Printer {
    fn started(&mut self, expected: Option<u64>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                event(
                    &json!({"event": "stream", "stream": self.label, "expected_bytes": expected}),
                );
                self.last_json = Some(Instant::now());
            }
            Mode::Lines => {
                let size = expected
                    .map(|b| format!(" (~{})", HumanBytes(b)))
                    .unwrap_or_default();
                let _ = writeln!(std::io::stderr(), "imgkit: streaming {}{size}", self.label);
            }
            Mode::Bar => {
                let bar = expected.map_or_else(ProgressBar::no_length, ProgressBar::new);
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.set_style(self.bar_style(expected.is_some()));
                bar.set_message(self.label.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bar = Some(bar);
            }
        }
    }

    fn progress(&mut self, p: &Progress) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    // The listed sizes are an estimate: grow the total rather than overflow it.
                    if let Some(len) = bar.length()
                        && p.bytes > len
                    {
                        bar.set_length(p.bytes);
                    }
                    bar.set_position(p.bytes);
                }
            }
            Mode::Json => {
                if self
                    .last_json
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    self.last_json = Some(Instant::now());
                    event(&progress_json("progress", &self.label, p));
                }
            }
            Mode::Lines | Mode::Quiet => {}
        }
    }

    fn finished(&mut self, p: &Progress) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match self.mode {
            Mode::Json => event(&progress_json("streamed", &self.label, p)),
            Mode::Lines | Mode::Bar => {
                let _ = writeln!(
                    std::io::stderr(),
                    "{} streamed {} in {} ({})",
                    self.paint("imgkit:"),
                    HumanBytes(p.bytes),
                    HumanDuration(p.elapsed),
                    rate(p)
                );
            }
            Mode::Quiet => {}
        }
    }

    fn failed(&mut self, p: &Progress) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        if self.mode == Mode::Json {
            event(&progress_json("failed", &self.label, p));
        }
    }
}
