//! Native filters where jq behaves differently from jaq: `tojson` with jq's number format,
//! `stderr`/`debug`/`halt_error` printing as jq prints, `input_filename`.

use std::io::Write;

use jaq_core::native::{bome, v};
use jaq_json::Val;

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
        ("tojson", v(0), |cv| bome(Ok(Val::utf8_str(write::to_json(&cv.1))))),
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
    ])
}

/// jq's `ltrimstr`/`rtrimstr`: the input unchanged unless both are strings and it matches.
fn trim(input: Val, affix: &Val, left: bool) -> Val {
    if let (Val::TStr(s), Val::TStr(a)) = (&input, affix) {
        let rest = if left { s.strip_prefix(&a[..]) } else { s.strip_suffix(&a[..]) };
        if let Some(rest) = rest {
            return Val::utf8_str(rest.to_vec());
        }
    }
    input
}
