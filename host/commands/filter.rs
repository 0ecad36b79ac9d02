//! `imgkit filter`: a drop-in for the `jq` step of the guide, with jq's flags, output and exit
//! codes, running the program in-process.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use imgkit_select::{Arg, Error, Filter, Indent, RunOptions, Style};

use crate::cli::GlobalArgs;
use crate::diagnostics::with_hint;
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
    /// Plain output (imgkit never colours output; accepted for jq compatibility).
    #[arg(short = 'M', long)]
    monochrome_output: bool,
    /// Bind $NAME to the string VALUE.
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    arg: Vec<String>,
    /// Bind $NAME to the JSON value TEXT.
    #[arg(long, num_args = 2, value_names = ["NAME", "TEXT"], action = clap::ArgAction::Append)]
    argjson: Vec<String>,
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
            style: Style {
                indent,
                raw: self.raw_output,
                join: self.join_output,
                ascii: self.ascii_output,
                sort_keys: self.sort_keys,
            },
        }
    }

    fn named_args(&self) -> Vec<(String, Arg)> {
        let strings = self
            .arg
            .chunks(2)
            .map(|p| (p[0].clone(), Arg::String(p[1].clone())));
        let json = self
            .argjson
            .chunks(2)
            .map(|p| (p[0].clone(), Arg::Json(p[1].clone())));
        strings.chain(json).collect()
    }
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if let Some(plugin) = &args.plugin {
        return run_with_plugin(plugin, args, global);
    }
    let (source, origin, files) = if let Some(spec) = &args.from_file {
        let (source, origin) = imgkit_select::load_filter(spec).map_err(|e| {
            if matches!(e, Error::FilterNotFound { .. }) {
                with_hint(
                    e,
                    "give the path of a .jq file, or a preset name such as default.jq",
                )
            } else {
                e.into()
            }
        })?;
        (source, origin, args.args.clone())
    } else {
        let Some((program, files)) = args.args.split_first() else {
            return Err(with_hint(
                anyhow::anyhow!("no jq program given"),
                "imgkit filter -r -f default.jq < listing.jsonl, or imgkit filter '.Repository'",
            ));
        };
        let program = program
            .to_str()
            .context("the jq program is not valid UTF-8")?
            .to_string();
        (program, "<program>".to_string(), files.to_vec())
    };

    let filter = match Filter::compile_with_args(&source, &origin, &args.named_args()) {
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

    let input: Box<dyn Read + Send> = if files.is_empty() {
        Box::new(io::stdin())
    } else {
        Box::new(Files::open(&files)?)
    };
    let mut stderr = io::stderr();
    let outcome = filter
        .run(input, io::stdout(), &args.run_options(), &mut stderr)
        .map_err(|e| match e {
            Error::InvalidInput { .. } => with_hint(
                e,
                "the input must be JSON values, e.g. docker image ls --format '{{json .}}'",
            ),
            other => other.into(),
        })?;
    let _ = stderr.flush();
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
        })
    }
}

impl Read for Files {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = &mut self.current {
                let n = f.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.current = None;
            }
            match self.rest.next() {
                Some(path) => {
                    let file = File::open(&path).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                    })?;
                    self.current = Some(file);
                }
                None => return Ok(0),
            }
        }
    }
}
