//! `imgkit filter`: a drop-in for the `jq` step of the guide, with jq's flags, output and exit
//! codes, running the program in-process.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use imgkit_select::{Arg, Error, Filter, Indent, InputNames, Palette, RunOptions, Style};

use crate::diagnostics::with_hint;
use crate::global::GlobalArgs;
use crate::plugin_args::{PluginArgs, run_plugin_owned};

/// jq's exit code for a program that does not compile.
const EXIT_COMPILE: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  docker image ls --format '{{json .}}' | imgkit filter -r -f default.jq
  docker image ls --format '{{json .}}' | imgkit filter -r 'select(.Repository!=\"<none>\") | .Repository'
  imgkit filter -c --arg repo alpine 'select(.Repository == $repo)' listing.jsonl

Built-in presets (usable with -f even where no such file exists): default (the guide's
program), all (every image, untagged ones by ID), dangling (untagged images), exclude-k8s-system
(all but what Kubernetes/k3s runs itself). Exit codes as jq: 0 ok, 1/4 with -e, 2 usage or input error, 3 compile error,
5 runtime error.")]
pub(crate) struct Args {
    /// The jq program, then input files (stdin when none). With -f, all are input files.
    #[arg(value_name = "PROGRAM | FILE", allow_hyphen_values = false)]
    #[allow(clippy::struct_field_names, reason = "jq's positional arguments")]
    args: Vec<OsString>,
    /// Read the program from FILE; a built-in preset name (`default.jq`) works where no such
    /// file exists.
    #[arg(
        short = 'f',
        long = "from-file",
        visible_alias = "filter",
        value_name = "FILE"
    )]
    from_file: Option<PathBuf>,
    /// Print strings without quotes.
    #[arg(short = 'r', long)]
    raw_output: bool,
    /// Like -r, without a newline after each output.
    #[arg(short = 'j', long)]
    join_output: bool,
    /// One line per output value.
    #[arg(short = 'c', long)]
    compact_output: bool,
    /// Run the program once with `null` as input.
    #[arg(short = 'n', long)]
    null_input: bool,
    /// Read all inputs into one array.
    #[arg(short = 's', long)]
    slurp: bool,
    /// Each input line is a string, not JSON.
    #[arg(short = 'R', long)]
    raw_input: bool,
    /// Exit 1 if the last output was false or null, 4 if there was none.
    #[arg(short = 'e', long)]
    exit_status: bool,
    /// Escape non-ASCII characters as \uXXXX.
    #[arg(short = 'a', long)]
    ascii_output: bool,
    /// Print object keys sorted.
    #[arg(short = 'S', long)]
    sort_keys: bool,
    /// Indent with tabs.
    #[arg(long, conflicts_with = "indent")]
    tab: bool,
    /// Indent with N spaces (0 to 7; 0 prints one line per value).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=7))]
    indent: Option<u8>,
    /// Like -j, with a NUL byte after each output (a string holding NUL is an error).
    #[arg(long = "raw-output0")]
    raw_output0: bool,
    /// Colour the output with jq's colours (or those of JQ_COLORS); the default when the output
    /// is a terminal and NO_COLOR is unset or empty.
    #[arg(short = 'C', long)]
    color_output: bool,
    /// No colours (wins over -C).
    #[arg(short = 'M', long)]
    monochrome_output: bool,
    /// Flush the output after each value.
    #[arg(long)]
    unbuffered: bool,
    /// Read each input as jq's stream events: [[path], leaf] and [[path]] closing each array
    /// and object.
    #[arg(long)]
    stream: bool,
    /// Like --stream, and invalid input becomes a last event ["message", [path]] instead of an
    /// error.
    #[arg(long = "stream-errors")]
    stream_errors: bool,
    /// Read and write JSON text sequences (RFC 7464): a record separator (0x1E) before each
    /// output value.
    #[arg(long)]
    seq: bool,
    /// Look for modules (import, include) in DIR; may be repeated. Default: ~/.jq,
    /// $ORIGIN/../lib/jq, $ORIGIN/../lib, as jq.
    #[arg(short = 'L', long = "library-path", value_name = "DIR", action = clap::ArgAction::Append)]
    library_path: Vec<PathBuf>,
    /// Bind $NAME to the string VALUE.
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    arg: Vec<String>,
    /// Bind $NAME to the JSON value TEXT.
    #[arg(long, num_args = 2, value_names = ["NAME", "TEXT"], action = clap::ArgAction::Append)]
    argjson: Vec<String>,
    /// Bind $NAME to an array of the JSON values in FILE.
    #[arg(long, num_args = 2, value_names = ["NAME", "FILE"], action = clap::ArgAction::Append)]
    slurpfile: Vec<OsString>,
    /// Bind $NAME to the contents of FILE as a string.
    #[arg(long, num_args = 2, value_names = ["NAME", "FILE"], action = clap::ArgAction::Append)]
    rawfile: Vec<OsString>,
    /// The positional arguments after the program are strings, not files: $ARGS.positional.
    #[arg(long = "args", action = clap::ArgAction::Append, num_args = 0, default_missing_value = "on")]
    positional_strings: Vec<String>,
    /// The positional arguments after the program are JSON texts: $ARGS.positional.
    #[arg(long = "jsonargs", action = clap::ArgAction::Append, num_args = 0, default_missing_value = "on")]
    positional_json: Vec<String>,
    /// Select with a WASM filter plugin (a WASI preview1 command) instead of a jq program: it
    /// reads the records as JSON lines and prints one image reference per line. All positional
    /// arguments are then input files. See docs/plugins.md.
    #[arg(
        long,
        value_name = "FILE.wasm",
        conflicts_with_all = ["from_file", "null_input", "slurp", "raw_input", "arg", "argjson"]
    )]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    plugin_flags: PluginArgs,
}

impl Args {
    fn run_options(&self) -> RunOptions {
        let indent = if self.compact_output || self.indent == Some(0) {
            Indent::Compact
        } else if self.tab {
            Indent::Tab
        } else {
            Indent::Spaces(self.indent.unwrap_or(2))
        };
        RunOptions {
            null_input: self.null_input,
            slurp: self.slurp,
            raw_input: self.raw_input,
            exit_status: self.exit_status,
            stream: self.stream,
            stream_errors: self.stream_errors,
            seq: self.seq,
            unbuffered: self.unbuffered,
            names: None,
            style: Style {
                indent,
                raw: self.raw_output || self.raw_output0,
                join: self.join_output || self.raw_output0,
                ascii: self.ascii_output,
                sort_keys: self.sort_keys,
                nul: self.raw_output0,
                seq: self.seq,
                color: self.palette(),
            },
        }
    }

    /// jq's colour rule: -M wins, then -C, then colour on a terminal unless NO_COLOR is set
    /// (non-empty); JQ_COLORS replaces the default colours.
    fn palette(&self) -> Option<&'static Palette> {
        let jq_colors = std::env::var("JQ_COLORS").ok();
        let palette = match jq_colors.as_deref().map(Palette::from_jq_colors) {
            Some(Some(p)) => p,
            Some(None) => {
                eprintln!("Failed to set $JQ_COLORS");
                Palette::default()
            }
            None => Palette::default(),
        };
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let on = !self.monochrome_output
            && (self.color_output || (io::stdout().is_terminal() && !no_color));
        // One palette per process, printed from the run's thread.
        on.then(|| &*Box::leak(Box::new(palette)))
    }

    /// The program, the input files, `$ARGS.positional` and the named arguments, in jq's
    /// order: the first positional argument is the program (unless -f), the ones after
    /// `--args`/`--jsonargs` are positional values, the others input files; a name bound twice
    /// keeps its first value.
    fn layout(&self, positions: Positions) -> anyhow::Result<Layout> {
        let kinds = [
            !self.arg.is_empty(),
            !self.argjson.is_empty(),
            !self.slurpfile.is_empty(),
            !self.rawfile.is_empty(),
        ];
        let needs_order = !self.positional_strings.is_empty()
            || !self.positional_json.is_empty()
            || kinds.iter().filter(|k| **k).count() > 1;
        let matches = if needs_order { positions() } else { None };
        let mut named: Vec<(usize, String, Named)> = Vec::new();
        let positional_args: Vec<(usize, OsString)>;
        let mut switches: Vec<(usize, Mode)> = Vec::new();
        if let Some(m) = &matches {
            let pairs = |id: &str| -> Vec<(usize, OsString, OsString)> {
                let idx: Vec<usize> = m.indices_of(id).map(Iterator::collect).unwrap_or_default();
                let raw: Vec<OsString> = m
                    .get_raw(id)
                    .map(|v| v.map(ToOwned::to_owned).collect())
                    .unwrap_or_default();
                idx.chunks(2)
                    .zip(raw.chunks(2))
                    .map(|(i, v)| (i[0], v[0].clone(), v[1].clone()))
                    .collect()
            };
            for (id, kind) in [
                ("arg", Named::String as fn(OsString) -> Named),
                ("argjson", Named::Json),
                ("slurpfile", Named::SlurpFile),
                ("rawfile", Named::RawFile),
            ] {
                for (i, name, value) in pairs(id) {
                    named.push((i, name.to_string_lossy().into_owned(), kind(value)));
                }
            }
            named.sort_by_key(|(i, _, _)| *i);
            let idx: Vec<usize> = m
                .indices_of("args")
                .map(Iterator::collect)
                .unwrap_or_default();
            positional_args = idx.into_iter().zip(self.args.iter().cloned()).collect();
            for (id, mode) in [
                ("positional_strings", Mode::Strings),
                ("positional_json", Mode::Json),
            ] {
                if let Some(i) = m.indices_of(id) {
                    switches.extend(i.map(|i| (i, mode)));
                }
            }
            switches.sort_by_key(|(i, _)| *i);
        } else {
            let os = |s: &String| OsString::from(s);
            named.extend(
                self.arg
                    .chunks(2)
                    .map(|p| (0, p[0].clone(), Named::String(os(&p[1])))),
            );
            named.extend(
                self.argjson
                    .chunks(2)
                    .map(|p| (0, p[0].clone(), Named::Json(os(&p[1])))),
            );
            named.extend(self.slurpfile.chunks(2).map(|p| {
                (
                    0,
                    p[0].to_string_lossy().into_owned(),
                    Named::SlurpFile(p[1].clone()),
                )
            }));
            named.extend(self.rawfile.chunks(2).map(|p| {
                (
                    0,
                    p[0].to_string_lossy().into_owned(),
                    Named::RawFile(p[1].clone()),
                )
            }));
            positional_args = self.args.iter().cloned().map(|a| (0, a)).collect();
        }

        let mut layout = Layout::default();
        for (_, name, value) in named {
            if layout.named.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let arg = value.load(&name)?;
            layout.named.push((name, arg));
        }
        let mut need_program = self.from_file.is_none();
        for (i, a) in positional_args {
            if need_program {
                need_program = false;
                let program = a
                    .to_str()
                    .context("the jq program is not valid UTF-8")?
                    .to_string();
                layout.program = Some(program);
                continue;
            }
            let mode = switches
                .iter()
                .take_while(|(at, _)| *at < i)
                .last()
                .map_or(Mode::Files, |(_, m)| *m);
            match mode {
                Mode::Files => layout.files.push(a),
                Mode::Strings => layout
                    .positional
                    .push(Arg::String(a.to_string_lossy().into_owned())),
                Mode::Json => layout
                    .positional
                    .push(Arg::Json(a.to_string_lossy().into_owned())),
            }
        }
        Ok(layout)
    }
}

/// What `layout` makes of the command line.
#[derive(Default)]
struct Layout {
    program: Option<String>,
    files: Vec<OsString>,
    positional: Vec<Arg>,
    named: Vec<(String, Arg)>,
}

#[derive(Clone, Copy)]
enum Mode {
    Files,
    Strings,
    Json,
}

/// A named argument as given: its value, or the file to read it from.
enum Named {
    String(OsString),
    Json(OsString),
    SlurpFile(OsString),
    RawFile(OsString),
}

impl Named {
    fn load(self, name: &str) -> anyhow::Result<Arg> {
        let read = |flag: &str, path: &OsString| {
            std::fs::read(path).with_context(|| {
                format!("--{flag} {name}: cannot read {}", Path::new(path).display())
            })
        };
        Ok(match self {
            Named::String(v) => Arg::String(v.to_string_lossy().into_owned()),
            Named::Json(v) => Arg::Json(v.to_string_lossy().into_owned()),
            Named::SlurpFile(path) => {
                Arg::Texts(String::from_utf8_lossy(&read("slurpfile", &path)?).into_owned())
            }
            Named::RawFile(path) => {
                Arg::String(String::from_utf8_lossy(&read("rawfile", &path)?).into_owned())
            }
        })
    }
}

/// The `filter` subcommand's matches, parsed again from the process's arguments for the
/// positions clap's derive API does not keep (asked for only when the order matters; `cli.rs`
/// supplies it, so this module needs nothing of the command-line definition).
pub(crate) type Positions = fn() -> Option<clap::ArgMatches>;

pub(crate) fn run(
    args: &Args,
    global: &GlobalArgs,
    positions: Positions,
) -> anyhow::Result<ExitCode> {
    if let Some(plugin) = &args.plugin {
        return run_with_plugin(plugin, args, global);
    }
    let layout = args.layout(positions)?;
    let (source, origin) = if let Some(spec) = &args.from_file {
        imgkit_select::load_filter(spec).map_err(|e| {
            if matches!(e, Error::FilterNotFound { .. }) {
                with_hint(
                    e,
                    "give the path of a .jq file, or a preset name such as default.jq",
                )
            } else {
                e.into()
            }
        })?
    } else {
        // As jq: without a program, `.` when the input or the output is not a terminal.
        let program = match layout.program.clone() {
            Some(program) => program,
            None if !io::stdin().is_terminal() || !io::stdout().is_terminal() => ".".to_string(),
            None => {
                return Err(with_hint(
                    anyhow::anyhow!("no jq program given"),
                    "imgkit filter -r -f default.jq < listing.jsonl, or imgkit filter '.Repository'",
                ));
            }
        };
        (program, "<program>".to_string())
    };
    let files = layout.files;

    let mut filter =
        match Filter::compile_with_libraries(&source, &origin, &layout.named, &args.library_path) {
            Ok(filter) => filter,
            Err(Error::Compile(report)) => {
                if global.json {
                    let obj =
                        serde_json::json!({ "error": report.summary(), "causes": [], "hints": [] });
                    eprintln!("{obj}");
                } else {
                    eprintln!("error: {report}");
                }
                return Ok(ExitCode::from(EXIT_COMPILE));
            }
            Err(other) => return Err(other.into()),
        };
    filter.set_positional(layout.positional)?;

    let unreadable = Arc::new(AtomicBool::new(false));
    let mut options = args.run_options();
    let input: Box<dyn Read + Send> = if files.is_empty() {
        Box::new(io::stdin())
    } else {
        let names = InputNames::default();
        options.names = Some(names.clone());
        Box::new(Files::skipping_unreadable(
            &files,
            unreadable.clone(),
            names,
        ))
    };
    let mut stderr = io::stderr();
    let outcome = match filter.run(input, io::stdout(), &options, &mut stderr) {
        Ok(outcome) => outcome,
        // jq 1.7.1 exits 5 after a parse error of its input (jq 1.6 exited 2).
        Err(e @ Error::InvalidInput { .. }) => {
            let e = with_hint(
                e,
                "the input must be JSON values, e.g. docker image ls --format '{{json .}}'",
            );
            crate::diagnostics::report(&e, global);
            return Ok(ExitCode::from(EXIT_RUNTIME));
        }
        Err(other) => return Err(other.into()),
    };
    let _ = stderr.flush();
    // As jq: a file that could not be read was reported and skipped; the run then exits 2.
    if unreadable.load(Ordering::Relaxed) {
        return Ok(ExitCode::from(crate::diagnostics::EXIT_ERROR));
    }
    Ok(ExitCode::from(outcome.exit_code))
}

/// `imgkit filter --plugin FILE`: the plugin's references on stdout, one per line, as `jq -r`
/// prints the default program's. Exit codes follow jq's: 3 when the module cannot be loaded
/// (its "compile error"), 5 when a run fails, 2 for input errors.
fn run_with_plugin(plugin: &Path, args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let loaded = match args.plugin_flags.load(plugin) {
        Ok(p) => p,
        Err(e) => return Ok(report_plugin_failure(&e, global, EXIT_COMPILE)),
    };
    let input: Box<dyn Read + Send> = if args.args.is_empty() {
        Box::new(io::stdin())
    } else {
        Box::new(Files::open(&args.args)?)
    };
    let outcome = match run_plugin_owned(&loaded, input, global) {
        Ok(o) => o,
        Err(e) if is_input_error(&e) => return Err(e),
        Err(e) => return Ok(report_plugin_failure(&e, global, EXIT_RUNTIME)),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for r in &outcome.references {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// jq's exit code for a runtime error.
const EXIT_RUNTIME: u8 = 5;

fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<imgkit_plugin::Error>(),
            Some(imgkit_plugin::Error::Input { .. })
        )
    })
}

fn report_plugin_failure(e: &anyhow::Error, global: &GlobalArgs, code: u8) -> ExitCode {
    crate::diagnostics::report(e, global);
    ExitCode::from(code)
}

/// Input files read one after another, as jq concatenates them.
struct Files {
    rest: std::vec::IntoIter<PathBuf>,
    current: Option<File>,
    /// Set when a file could not be opened and was skipped (jq's way); `None`: such a file is
    /// a read error.
    skipped: Option<Arc<AtomicBool>>,
    /// Where each file starts in the bytes read so far (`input_filename`).
    names: Option<InputNames>,
    served: u64,
    /// Newlines in the bytes served so far (`input_line_number` counts per file).
    served_lines: u64,
}

#[allow(
    clippy::naive_bytecount,
    reason = "auto-vectorised; not worth a dependency"
)]
fn bytecount_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&c| c == b'\n').count() as u64
}

impl Files {
    fn open(paths: &[OsString]) -> anyhow::Result<Self> {
        // Fail early on the first file that does not exist, as jq does.
        for p in paths {
            let path = Path::new(p);
            if !path.exists() {
                anyhow::bail!("cannot open input file {}: no such file", path.display());
            }
        }
        let rest: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        Ok(Self {
            rest: rest.into_iter(),
            current: None,
            skipped: None,
            names: None,
            served: 0,
            served_lines: 0,
        })
    }

    /// As jq reads its input files: one that cannot be opened is reported when its turn
    /// comes, skipped, and noted in `skipped` (the run then exits 2); with `-n` and no
    /// `input`, none is opened at all.
    fn skipping_unreadable(
        paths: &[OsString],
        skipped: Arc<AtomicBool>,
        names: InputNames,
    ) -> Self {
        let rest: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        Self {
            rest: rest.into_iter(),
            current: None,
            skipped: Some(skipped),
            names: Some(names),
            served: 0,
            served_lines: 0,
        }
    }
}

impl Read for Files {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = &mut self.current {
                let n = f.read(buf)?;
                if n > 0 {
                    self.served += n as u64;
                    if self.names.is_some() {
                        self.served_lines += bytecount_newlines(&buf[..n]);
                    }
                    return Ok(n);
                }
                self.current = None;
            }
            match self.rest.next() {
                Some(path) => match (File::open(&path), &self.skipped) {
                    (Ok(file), _) => {
                        if let Some(names) = &self.names {
                            names.starts(
                                self.served,
                                self.served_lines,
                                &path.display().to_string(),
                            );
                        }
                        self.current = Some(file);
                    }
                    (Err(e), Some(skipped)) => {
                        eprintln!("imgkit: error: Could not open {}: {e}", path.display());
                        skipped.store(true, Ordering::Relaxed);
                    }
                    (Err(e), None) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot open {}: {e}", path.display()),
                        ));
                    }
                },
                None => return Ok(0),
            }
        }
    }
}
