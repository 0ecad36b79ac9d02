//! Running a compiled program over a stream of inputs as `jq` does: outputs printed as they
//! come, a runtime error reported (naming the input's line) before going on with the next
//! input, `input`/`inputs` sharing the stream, `-n`, `-s`, `-R`, `-e` and `halt`.

use std::cell::{Cell, RefCell};
use std::io::{BufReader, BufWriter, Read, Write};

use jaq_core::{Ctx, ValT as _, Vars};
use jaq_json::Val;
use jaq_std::input::RcIter;

use crate::compile::{Data, Kind};
use crate::read::{self, RawLines, ReadError, Values};
use crate::value::V;
use crate::write::{self, Style};
use crate::{Error, Filter, fast};

/// The names of the input files and where each starts in the concatenated input, for jq's
/// `input_filename`: the reader of the files records each as it opens it. Without any, the
/// input is `<stdin>`.
#[derive(Debug, Clone, Default)]
pub struct InputNames(std::sync::Arc<std::sync::Mutex<Vec<(u64, u64, String)>>>);

impl InputNames {
    /// Records that the file `name` starts at byte `offset` of the input, after `lines`
    /// newlines (those of the files before it; jq counts `input_line_number` per file).
    pub fn starts(&self, offset: u64, lines: u64, name: &str) {
        if let Ok(mut names) = self.0.lock() {
            names.push((offset, lines, name.to_string()));
        }
    }

    /// The name of the file holding byte `offset`, and the newlines before that file.
    fn at(&self, offset: u64) -> Option<(String, u64)> {
        let names = self.0.lock().ok()?;
        names
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= offset)
            .map(|(_, lines, name)| (name.clone(), *lines))
    }
}

thread_local! {
    /// `input_filename`: the name of the file the last input came from (`null` before any).
    pub(crate) static INPUT_NAME: std::cell::RefCell<Val> = const { std::cell::RefCell::new(Val::Null) };
    /// `input_line_number`: newlines read from the current file so far.
    pub(crate) static INPUT_LINE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How to read the input and print the output; the flags of `jq` with the same names.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-n`: run the program once with `null` as input (`input`/`inputs` still read).
    pub null_input: bool,
    /// `-s`: read all inputs into one array (with `-R`: the whole input as one string).
    pub slurp: bool,
    /// `-R`: each input line is a string, not JSON.
    pub raw_input: bool,
    /// `-e`: exit 1 if the last output was `false` or `null`, 4 if there was none.
    pub exit_status: bool,
    /// `--stream`: each input value arrives as jq's stream events (`[[path], leaf]`, and
    /// `[[path]]` closing each array and object), as `tostream` makes them.
    pub stream: bool,
    /// `--stream-errors`: `--stream`, and invalid input becomes one more event,
    /// `["message", [path]]`, instead of ending the run.
    pub stream_errors: bool,
    /// `--seq`: the input is a JSON text sequence (RFC 7464): record separators (0x1E) separate
    /// values; and outputs get one (see [`Style::seq`]).
    pub seq: bool,
    /// `--unbuffered`: flush the output after each value.
    pub unbuffered: bool,
    /// Where each input file starts (`input_filename`); `None`: the input is stdin.
    pub names: Option<InputNames>,
    /// How outputs are printed.
    pub style: Style,
}

/// How a run ended, when it ran to the end (or to `halt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// jq's exit code: 0; 5 after runtime errors; 1 or 4 with `-e`; `halt`'s code.
    pub exit_code: u8,
    /// Runtime errors reported (each ended the evaluation of one input).
    pub errors: usize,
    /// Values printed.
    pub outputs: u64,
}

/// jq's text for a runtime error value: strings as they are, other values as JSON with
/// jq's `(not a string)` marker.
pub(crate) fn error_message(e: jaq_core::Error<V>) -> (String, bool) {
    match e.into_val().0 {
        Val::TStr(s) | Val::BStr(s) => (String::from_utf8_lossy(&s).into_owned(), true),
        other => (
            String::from_utf8_lossy(&write::to_json(&other)).into_owned(),
            false,
        ),
    }
}

type Inputs<'a> = Box<dyn Iterator<Item = Result<Val, ReadError>> + 'a>;

fn inputs<'a, R: Read + 'a>(input: R, opts: &RunOptions, line: &'a Cell<u64>) -> Inputs<'a> {
    INPUT_NAME.set(Val::Null);
    INPUT_LINE.set(0);
    if opts.raw_input && opts.slurp {
        let mut input = input;
        let mut all = Vec::new();
        let all = input
            .read_to_end(&mut all)
            .map(|_| Val::utf8_str(all))
            .map_err(ReadError::Io);
        return Box::new(std::iter::once(all));
    }
    if opts.raw_input {
        let mut lines = RawLines::new(BufReader::with_capacity(1 << 16, input));
        return Box::new(std::iter::from_fn(move || {
            let v = lines.next();
            line.set(lines.line);
            INPUT_LINE.set(lines.newlines);
            v
        }));
    }
    let mut values = Values::new(input);
    values.seq = opts.seq;
    let names = opts.names.clone();
    let names2 = opts.names.clone();
    // Names the file of the last input (`--stream`).
    let set_name = move |offset: u64| {
        let name = match &names {
            Some(names) => names.at(offset).map(|(n, _)| n),
            None => Some("<stdin>".to_string()),
        };
        INPUT_NAME.set(name.map_or(Val::Null, |n| Val::utf8_str(n.into_bytes())));
    };
    let values: Inputs<'a> = if opts.stream || opts.stream_errors {
        // Events as the text arrives, as jq's streaming parser makes them.
        let mut events = crate::stream::Events::new(values, opts.stream_errors);
        Box::new(std::iter::from_fn(move || {
            let v = events.next();
            line.set(events.last_line());
            if v.is_some() {
                set_name(events.last_start());
                INPUT_LINE.set(events.last_line());
            }
            v
        }))
    } else {
        Box::new(std::iter::from_fn(move || {
            loop {
                let v = values.next();
                line.set(values.last_line);
                if let Some(Err(e @ ReadError::Syntax { .. })) = &v
                    && values.resync()
                {
                    // `--seq`: invalid text is skipped up to the next record separator.
                    eprintln!("imgkit: ignoring parse error: {e}");
                    continue;
                }
                if v.is_some() {
                    note_input(&mut values, names2.as_ref());
                }
                return v;
            }
        }))
    };
    if opts.slurp {
        let all: Result<Vec<Val>, ReadError> = values.collect();
        return Box::new(std::iter::once(all.map(|a| a.into_iter().collect())));
    }
    values
}

impl Filter {
    /// The run itself, on the current thread (see [`Filter::run`]).
    pub(crate) fn run_here<R: Read, W: Write>(
        &self,
        input: R,
        output: W,
        opts: &RunOptions,
        diagnostics: &mut dyn Write,
    ) -> Result<Outcome, Error> {
        // `.` gains nothing from the fast path: each record would be parsed twice.
        if let (Some(expr), false, false, false) =
            (&self.fast, opts.null_input, opts.slurp, opts.raw_input)
            && *expr != fast::Expr::Identity
            && !(opts.stream || opts.stream_errors || opts.seq || opts.style.nul)
        {
            return self.run_fast(expr, input, output, opts, diagnostics);
        }
        let line = Cell::new(0);
        let failure: RefCell<Option<ReadError>> = RefCell::new(None);
        let source = inputs(input, opts, &line);
        let source = source.map(|r| {
            r.map(V).map_err(|e| {
                let msg = e.to_string();
                *failure.borrow_mut() = Some(e);
                msg
            })
        });
        let shared = RcIter::new(source);
        // Coerce the boxed iterator to the unsized type jaq's `Inputs` wants.
        let shared: &RcIter<dyn Iterator<Item = Result<V, String>> + '_> = &shared;
        let data = Data {
            lut: &self.inner.lut,
            inputs: shared,
        };
        let ctx: Ctx<'_, Kind> = Ctx::new(&data, Vars::new(self.globals()?));

        let mut out = BufWriter::with_capacity(1 << 16, output);
        let mut outcome = Outcome {
            exit_code: 0,
            errors: 0,
            outputs: 0,
        };
        let mut state = State::default();
        let null = std::iter::once(Ok(V(Val::Null)));
        let mut main: Box<dyn Iterator<Item = Result<V, String>> + '_> = if opts.null_input {
            Box::new(null)
        } else {
            Box::new(shared)
        };

        for x in main.by_ref() {
            let Ok(x) = x else { break };
            if let Some(code) =
                self.eval_one(&ctx, x, &mut out, opts, diagnostics, &mut state, line.get())?
            {
                outcome.exit_code = code;
                outcome.errors = state.errors;
                outcome.outputs = state.outputs;
                return Ok(outcome);
            }
            if failure.borrow().is_some() {
                break;
            }
        }
        drop(main);
        out.flush().map_err(Error::WriteOutput)?;
        if let Some(e) = failure.borrow_mut().take() {
            return Err(input_error(e));
        }
        Ok(state.finish(opts))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the run's state, passed down unchanged"
    )]
    /// Runs the program on one input, printing its outputs and its runtime error (which ends
    /// this input's evaluation). `Some(code)` when the program halted.
    fn eval_one(
        &self,
        ctx: &Ctx<'_, Kind>,
        x: V,
        out: &mut impl Write,
        opts: &RunOptions,
        diagnostics: &mut dyn Write,
        state: &mut State,
        line: u64,
    ) -> Result<Option<u8>, Error> {
        state.last_failed = false;
        for y in self.inner.id.run((ctx.clone(), x)) {
            match y {
                Ok(v) => {
                    if opts.style.nul
                        && let Val::TStr(s) | Val::BStr(s) = &v.0
                        && s.contains(&0)
                    {
                        // jq stops this input's evaluation with a runtime error.
                        state.errors += 1;
                        state.last_failed = true;
                        out.flush().map_err(Error::WriteOutput)?;
                        let _ = writeln!(
                            diagnostics,
                            "imgkit: error (at {}): Cannot dump a string containing NUL with --raw-output0 option",
                            at(line)
                        );
                        return Ok(None);
                    }
                    state.last = Some(v.as_bool());
                    state.outputs += 1;
                    write::output(out, opts.style, &v.0).map_err(Error::WriteOutput)?;
                    if opts.unbuffered {
                        out.flush().map_err(Error::WriteOutput)?;
                    }
                }
                Err(exn) => match exn.get_err() {
                    Ok(e) => {
                        state.errors += 1;
                        state.last_failed = true;
                        out.flush().map_err(Error::WriteOutput)?;
                        let (msg, is_str) = error_message(e);
                        let tag = if is_str { "" } else { " (not a string)" };
                        let at = at(line);
                        let _ = writeln!(diagnostics, "imgkit: error (at {at}){tag}: {msg}");
                        // Stop pulling this input's outputs, go on with the next input.
                        return Ok(None);
                    }
                    Err(exn) => {
                        out.flush().map_err(Error::WriteOutput)?;
                        return Ok(Some(exn.get_halt().unwrap_or(5) as u8));
                    }
                },
            }
        }
        Ok(None)
    }

    /// The run with the fast path: records the fast path can't decide go to jaq.
    pub(crate) fn run_fast<R: Read, W: Write>(
        &self,
        expr: &fast::Expr,
        input: R,
        output: W,
        opts: &RunOptions,
        diagnostics: &mut dyn Write,
    ) -> Result<Outcome, Error> {
        enum Step {
            Nothing,
            Str(String),
            Null,
            Bool(bool),
            Jaq(Val),
        }
        let no_inputs = RcIter::new(std::iter::empty::<Result<V, String>>());
        let data = Data {
            lut: &self.inner.lut,
            inputs: &no_inputs,
        };
        let ctx: Ctx<'_, Kind> = Ctx::new(&data, Vars::new(self.globals()?));
        let mut out = BufWriter::with_capacity(1 << 16, output);
        let mut state = State::default();
        let mut values = Values::new(input);
        loop {
            let step = values.next_with(|slice| {
                let (record, used) = match fast::parse_record(slice)? {
                    Ok(parsed) => parsed,
                    Err(e) if e.is_eof() => return Some(Err(e)),
                    // serde_json's own nesting limit, or invalid input: the full parser
                    // decides (10,000 levels) and words the error.
                    Err(_) => {
                        return read::parse_val(slice)
                            .map(|r| r.map(|(v, used)| (Step::Jaq(v), used)));
                    }
                };
                let step = match record.root().and_then(|root| expr.eval(root)) {
                    Ok(None) => Step::Nothing,
                    Ok(Some(fast::V::Str(s))) => Step::Str(s.into_owned()),
                    Ok(Some(fast::V::Null)) => Step::Null,
                    Ok(Some(fast::V::Bool(b))) => Step::Bool(b),
                    Ok(Some(fast::V::Record(_))) | Err(fast::Fallback) => {
                        match read::parse_val(slice)? {
                            Ok((v, _)) => Step::Jaq(v),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                };
                Some(Ok((step, used)))
            });
            let step = match step {
                None => break,
                Some(Ok(step)) => step,
                Some(Err(e)) => {
                    out.flush().map_err(Error::WriteOutput)?;
                    return Err(input_error(e));
                }
            };
            let printed = match step {
                Step::Nothing => {
                    state.last_failed = false;
                    continue;
                }
                Step::Str(s) => Val::utf8_str(s.into_bytes()),
                Step::Null => Val::Null,
                Step::Bool(b) => Val::Bool(b),
                Step::Jaq(v) => {
                    let line = values.last_line;
                    note_input(&mut values, opts.names.as_ref());
                    if let Some(code) =
                        self.eval_one(&ctx, V(v), &mut out, opts, diagnostics, &mut state, line)?
                    {
                        let mut outcome = state.finish(opts);
                        outcome.exit_code = code;
                        return Ok(outcome);
                    }
                    continue;
                }
            };
            state.last_failed = false;
            state.last = Some(printed.as_bool());
            state.outputs += 1;
            write::output(&mut out, opts.style, &printed).map_err(Error::WriteOutput)?;
            if opts.unbuffered {
                out.flush().map_err(Error::WriteOutput)?;
            }
        }
        out.flush().map_err(Error::WriteOutput)?;
        Ok(state.finish(opts))
    }
}

/// Notes where the value `values` read last came from, for `input_filename`,
/// `input_line_number` and error messages.
fn note_input<R: Read>(values: &mut Values<R>, names: Option<&InputNames>) {
    let (name, before) = match names {
        Some(names) => names
            .at(values.last_start)
            .map_or((None, 0), |(n, l)| (Some(n), l)),
        None => (Some("<stdin>".to_string()), 0),
    };
    INPUT_NAME.set(name.map_or(Val::Null, |n| Val::utf8_str(n.into_bytes())));
    INPUT_LINE.set(values.newlines_read().saturating_sub(before));
}

/// jq names where the last input was read: its file (`<stdin>` for standard input) and the
/// newlines read from it so far (`input_line_number`); `<unknown>` before any input (`-n`).
fn at(line: u64) -> String {
    if line == 0 {
        return "<unknown>".to_string();
    }
    let name = INPUT_NAME.with_borrow(|n| match n {
        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
        _ => "<stdin>".to_string(),
    });
    format!("{name}:{}", INPUT_LINE.get())
}

fn input_error(e: ReadError) -> Error {
    match e {
        ReadError::Syntax {
            line,
            offset,
            reason,
        } => Error::InvalidInput {
            line,
            offset,
            reason,
        },
        ReadError::Io(e) => Error::ReadInput(e),
    }
}

/// Counts kept across inputs.
#[derive(Default)]
pub(crate) struct State {
    errors: usize,
    outputs: u64,
    last: Option<bool>,
    /// jq's exit code follows the last input only: 5 if its evaluation failed.
    last_failed: bool,
}

impl State {
    /// jq's exit code at the end of the input.
    fn finish(&self, opts: &RunOptions) -> Outcome {
        let exit_code = if self.last_failed {
            5
        } else if opts.exit_status {
            match self.last {
                None => 4,
                Some(false) => 1,
                Some(true) => 0,
            }
        } else {
            0
        };
        Outcome {
            exit_code,
            errors: self.errors,
            outputs: self.outputs,
        }
    }
}
