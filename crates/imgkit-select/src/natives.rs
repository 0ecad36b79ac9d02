//! Native filters where jq behaves differently from jaq: `tojson` with jq's number format,
//! `stderr`/`debug`/`halt_error` printing as jq prints, `input_filename`.

use std::io::Write;

use jaq_core::native::{bome, v};
use jaq_json::Val;
use jaq_std::ValT as _;

use crate::compile::NativeRun;
use crate::write;

fn empty<'a>() -> jaq_core::ValXs<'a, Val> {
    Box::new(core::iter::empty())
}

fn eprint_raw(v: &Val) {
    let mut err = std::io::stderr().lock();
    let _ = match v {
        Val::TStr(s) | Val::BStr(s) => err.write_all(s),
        other => err.write_all(&write::to_json(other)),
    };
}

/// Our natives; each replaces jaq's filter of the same name and arity.
pub(crate) fn funs() -> Box<[NativeRun]> {
    Box::new([
        ("tojson", v(0), |cv| {
            bome(Ok(Val::utf8_str(write::to_json(&cv.1))))
        }),
        ("input_filename", v(0), |_| bome(Ok(Val::Null))),
        ("stderr_empty", v(0), |cv| {
            eprint_raw(&cv.1);
            empty()
        }),
        ("debug_empty", v(0), |cv| {
            let mut line = b"[\"DEBUG:\",".to_vec();
            line.extend(write::to_json(&cv.1));
            line.extend(b"]\n");
            let _ = std::io::stderr().lock().write_all(&line);
            empty()
        }),
        ("halt_error_empty", v(0), |cv| {
            // jq 1.7: a string is printed as is, anything else as JSON and a newline.
            match &cv.1 {
                Val::TStr(_) | Val::BStr(_) => eprint_raw(&cv.1),
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
            bome(Ok(trim(cv.1, &x, true)))
        }),
        ("rtrimstr", v(1), |mut cv| {
            let x = cv.0.pop_var();
            bome(Ok(trim(cv.1, &x, false)))
        }),
        ("jq_tostring", v(0), |cv| {
            bome(Ok(match cv.1 {
                s @ Val::TStr(_) => s,
                Val::BStr(b) => Val::TStr(b),
                other => Val::utf8_str(write::to_json(&other)),
            }))
        }),
        ("jq_delpaths", v(1), |mut cv| {
            let paths = cv.0.pop_var();
            bome(delpaths(cv.1, paths).map_err(jaq_core::Error::str))
        }),
        ("jq_tonumber", v(0), |cv| {
            bome(match cv.1 {
                n @ Val::Num(_) => Ok(n),
                Val::TStr(s) => parse_number(&s).ok_or_else(|| {
                    let v = Val::TStr(s);
                    jaq_core::Error::str(format_args!(
                        "{} cannot be parsed as a number",
                        described(&v)
                    ))
                }),
                other => Err(jaq_core::Error::str(format_args!(
                    "{} cannot be parsed as a number",
                    described(&other)
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

/// jq's `ltrimstr`/`rtrimstr`: the input unchanged unless both are strings and it matches.
fn trim(input: Val, affix: &Val, left: bool) -> Val {
    if let (Val::TStr(s), Val::TStr(a)) = (&input, affix) {
        let rest = if left {
            s.strip_prefix(&a[..])
        } else {
            s.strip_suffix(&a[..])
        };
        if let Some(rest) = rest {
            return Val::utf8_str(rest.to_vec());
        }
    }
    input
}

/// jq's way of naming a value in errors: `string ("abc")`, with long JSON cut at 11 bytes.
pub(crate) fn described(v: &Val) -> String {
    let kind = match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    };
    let json = write::to_json(v);
    let text = if json.len() > 11 {
        let mut cut = 11;
        while cut > 0 && std::str::from_utf8(&json[..cut]).is_err() {
            cut -= 1;
        }
        format!("{}...", String::from_utf8_lossy(&json[..cut]))
    } else {
        String::from_utf8_lossy(&json).into_owned()
    };
    format!("{kind} ({text})")
}

/// jq's `delpaths`: paths deleted from the longest/last to the first, keeping the order of
/// the remaining object keys (jaq's `del` moves the last key into the hole).
fn delpaths(v: Val, paths: Val) -> Result<Val, String> {
    let Val::Arr(paths) = paths else {
        return Err("Paths must be specified as an array".into());
    };
    let mut paths: Vec<Val> = paths.iter().cloned().collect();
    paths.sort();
    paths.into_iter().rev().try_fold(v, |v, path| match path {
        Val::Arr(p) => delpath(v, &p),
        _ => Err("Path must be specified as an array".into()),
    })
}

fn delpath(v: Val, path: &[Val]) -> Result<Val, String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Val::Null);
    };
    match (v, first) {
        (Val::Null, _) => Ok(Val::Null),
        (Val::Obj(mut o), Val::TStr(_)) => {
            let map = jaq_json::Rc::make_mut(&mut o);
            if rest.is_empty() {
                map.shift_remove(first);
            } else if let Some(child) = map.get_mut(first) {
                *child = delpath(std::mem::take(child), rest)?;
            }
            Ok(Val::Obj(o))
        }
        (Val::Arr(mut a), Val::Num(n)) => {
            let len = isize::try_from(a.len()).unwrap_or(isize::MAX);
            let Some(i) = n
                .as_isize()
                .or_else(|| first.as_f64().map(|f| f.floor() as isize))
            else {
                return Ok(Val::Arr(a));
            };
            let i = if i < 0 { i + len } else { i };
            if i < 0 && rest.is_empty() {
                return Err("Out of bounds negative array index".into());
            }
            if (0..len).contains(&i) {
                let vec = jaq_json::Rc::make_mut(&mut a);
                if rest.is_empty() {
                    vec.remove(i as usize);
                } else {
                    let child = std::mem::take(&mut vec[i as usize]);
                    vec[i as usize] = delpath(child, rest)?;
                }
            }
            Ok(Val::Arr(a))
        }
        (Val::Arr(mut a), Val::Obj(range)) if rest.is_empty() => {
            let len = isize::try_from(a.len()).unwrap_or(isize::MAX);
            let bound = |k: &str, default: isize| -> isize {
                let b = range
                    .get(&Val::utf8_str(k.as_bytes().to_vec()))
                    .and_then(|v| match v {
                        Val::Num(n) => n
                            .as_isize()
                            .or_else(|| v.as_f64().map(|f| f.floor() as isize)),
                        _ => None,
                    });
                let b = b.unwrap_or(default);
                (if b < 0 { b + len } else { b }).clamp(0, len)
            };
            let (start, end) = (bound("start", 0), bound("end", len));
            if start < end {
                jaq_json::Rc::make_mut(&mut a).drain(start as usize..end as usize);
            }
            Ok(Val::Arr(a))
        }
        (v, k) => Err(format!(
            "Cannot delete field at {} index of {}",
            kind(k),
            kind(&v)
        )),
    }
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}
