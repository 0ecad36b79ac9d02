//! Native filters where jq behaves differently from jaq: `tojson` with jq's number format,
//! `stderr`/`debug`/`halt_error` printing as jq prints, `input_filename`, and the JSON natives
//! (`length`, `has`, `contains`, …) over our value type with jq's semantics and messages.

use std::io::Write;

use jaq_core::native::{bome, v};
use jaq_json::Val;

use crate::compile::NativeRun;
use crate::value::{self, V};
use crate::{read, write};

fn empty<'a>() -> jaq_core::ValXs<'a, V> {
    Box::new(core::iter::empty())
}

fn eprint_raw(v: &Val) {
    let mut err = std::io::stderr().lock();
    let _ = match v {
        Val::TStr(s) | Val::BStr(s) => err.write_all(s),
        other => err.write_all(&write::to_json(other)),
    };
}

/// A native of one argument: `f(input, argument)`.
fn binary(
    mut cv: jaq_core::Cv<'_, crate::compile::Kind>,
    f: fn(&Val, &Val) -> jaq_core::ValR<V>,
) -> jaq_core::ValXs<'_, V> {
    let x = cv.0.pop_var();
    bome(f(&cv.1.0, &x.0))
}

/// jq's `fromjson`: one JSON text (jq also reads `nan`), errors naming the text.
fn fromjson(v: &Val) -> jaq_core::ValR<V> {
    let (Val::TStr(s) | Val::BStr(s)) = v else {
        return Err(value::fail(format!(
            "{} cannot be parsed as JSON, as it is not a string",
            value::described(v)
        )));
    };
    let text = String::from_utf8_lossy(s);
    match text.trim() {
        "nan" | "NaN" | "-nan" | "-NaN" => return Ok(V(Val::from(f64::NAN))),
        _ => {}
    }
    read::parse_one(&text)
        .map(V)
        .map_err(|e| value::fail(format!("{e} (while parsing '{text}')")))
}

/// Our natives; each replaces jaq's filter of the same name and arity.
pub(crate) fn funs() -> Box<[NativeRun]> {
    Box::new([
        ("tojson", v(0), |cv| {
            bome(Ok(V(Val::utf8_str(write::to_json(&cv.1.0)))))
        }),
        ("fromjson", v(0), |cv| bome(fromjson(&cv.1.0))),
        ("length", v(0), |cv| bome(value::length(&cv.1.0))),
        ("_jq_comparable", v(0), |cv| {
            bome(value::check_comparable(cv.1.0))
        }),
        ("has", v(1), |cv| binary(cv, value::has)),
        ("contains", v(1), |cv| binary(cv, value::contains)),
        ("bsearch", v(1), |cv| binary(cv, value::bsearch)),
        ("indices", v(1), |cv| binary(cv, value::indices)),
        ("_jaq_indices", v(1), |cv| binary(cv, value::indices)),
        ("jq_nan", v(0), |_| bome(Ok(V(Val::from(f64::NAN))))),
        ("jq_infinite", v(0), |_| {
            bome(Ok(V(Val::from(f64::INFINITY))))
        }),
        ("jq_tm", v(1), |mut cv| {
            let name = cv.0.pop_var();
            bome(broken_down_time(&cv.1.0, &name.0).map(V))
        }),
        ("modulemeta", v(0), |cv| {
            bome(
                crate::modmeta::modulemeta(&cv.1.0)
                    .map(V)
                    .map_err(value::fail),
            )
        }),
        ("input_filename", v(0), |_| {
            bome(Ok(V(crate::run::INPUT_NAME.with_borrow(Clone::clone))))
        }),
        ("input_line_number", v(0), |_| {
            let n = crate::run::INPUT_LINE.get();
            bome(Ok(V(Val::from(usize::try_from(n).unwrap_or(usize::MAX)))))
        }),
        ("stderr_empty", v(0), |cv| {
            eprint_raw(&cv.1.0);
            empty()
        }),
        ("debug_empty", v(0), |cv| {
            let mut line = b"[\"DEBUG:\",".to_vec();
            line.extend(write::to_json(&cv.1.0));
            line.extend(b"]\n");
            let _ = std::io::stderr().lock().write_all(&line);
            empty()
        }),
        ("halt_error_empty", v(0), |cv| {
            // jq 1.7: a string is printed as is, anything else as JSON and a newline.
            match &cv.1.0 {
                Val::TStr(_) | Val::BStr(_) => eprint_raw(&cv.1.0),
                other => {
                    let mut line = write::to_json(other);
                    line.push(b'\n');
                    let _ = std::io::stderr().lock().write_all(&line);
                }
            }
            empty()
        }),
        ("ltrimstr", v(1), |mut cv| {
            let x = cv.0.pop_var();
            bome(Ok(V(trim(&cv.1.0, &x.0, true))))
        }),
        ("rtrimstr", v(1), |mut cv| {
            let x = cv.0.pop_var();
            bome(Ok(V(trim(&cv.1.0, &x.0, false))))
        }),
        ("jq_tostring", v(0), |cv| {
            bome(Ok(V(match cv.1.0 {
                s @ Val::TStr(_) => s,
                Val::BStr(b) => Val::TStr(b),
                other => Val::utf8_str(write::to_json(&other)),
            })))
        }),
        ("jq_delpaths", v(1), |mut cv| {
            let paths = cv.0.pop_var();
            bome(value::delpaths(cv.1.0, &paths.0).map(V))
        }),
        ("jq_tonumber", v(0), |cv| {
            bome(match cv.1.0 {
                n @ Val::Num(_) => Ok(V(n)),
                Val::TStr(s) => parse_number(&s).map(V).ok_or_else(|| {
                    value::fail(format!(
                        "{} cannot be parsed as a number",
                        value::described(&Val::TStr(s))
                    ))
                }),
                other => Err(value::fail(format!(
                    "{} cannot be parsed as a number",
                    value::described(&other)
                ))),
            })
        }),
    ])
}

/// jq 1.7's `tonumber`: the whole string is a decimal number (`+` and a leading `.` allowed,
/// no whitespace, no `nan`); integers stay exact.
fn parse_number(s: &[u8]) -> Option<Val> {
    let text = std::str::from_utf8(s).ok()?;
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let valid = unsigned
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == b'.')
        && unsigned
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !valid {
        return None;
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if unsigned.bytes().all(|c| c.is_ascii_digit()) {
        return jaq_core::ValT::from_num(text).ok();
    }
    text.parse::<f64>()
        .ok()
        .map(|f| Val::Num(jaq_json::Num::Float(f)))
}

/// jq 1.7.1's `ltrimstr`/`rtrimstr`: the input unchanged unless both are strings and it
/// matches (`1 | ltrimstr("a")` and `"a" | ltrimstr(1)` give the input back).
fn trim(input: &Val, affix: &Val, left: bool) -> Val {
    let (Val::TStr(s), Val::TStr(a)) = (input, affix) else {
        return input.clone();
    };
    let rest = if left {
        s.strip_prefix(&a[..])
    } else {
        s.strip_suffix(&a[..])
    };
    rest.map_or(input.clone(), |rest| Val::utf8_str(rest.to_vec()))
}

/// jq's `jv2tm` check: up to 8 numbers (none `nan`), missing fields 0, else
/// `NAME requires parsed datetime inputs`.
fn broken_down_time(v: &Val, name: &Val) -> Result<Val, jaq_core::Error<V>> {
    let fields = match v {
        Val::Arr(a) => a.iter().take(8).cloned().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let numeric =
        |x: &Val| matches!(x, Val::Num(_)) && !jaq_std::ValT::as_f64(x).is_some_and(f64::is_nan);
    if !matches!(v, Val::Arr(_)) || !fields.iter().all(numeric) {
        let name = match name {
            Val::TStr(s) => String::from_utf8_lossy(s).into_owned(),
            _ => String::new(),
        };
        return Err(value::fail(format!(
            "{name} requires parsed datetime inputs"
        )));
    }
    let mut fields = fields;
    fields.resize(8, Val::from(0isize));
    Ok(Val::Arr(jaq_json::Rc::new(fields)))
}
