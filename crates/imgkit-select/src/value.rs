#![allow(
    clippy::many_single_char_names,
    reason = "names follow jq's C sources (t, k, v, f) that these functions port"
)]

//! The value our jq programs run on: jaq's JSON value, with jq's semantics where jaq's differ.
//!
//! jaq lets the value type decide what indexing, slicing, path updates and arithmetic mean
//! (`jaq_core::ValT`). `V` wraps `jaq_json::Val` and implements those the way jq 1.7+ does
//! (`src/jv_aux.c`, `src/builtin.c` and `src/execute.c` in jq), without forking jaq:
//!
//! - updating `null` creates the object or array the path needs, and setting an array index past
//!   the end pads with `null` (`.[2][3] = 1`);
//! - array indices and slice bounds may be fractional or `nan`, as in jq;
//! - arithmetic follows jq: numbers are doubles once they leave the exactly representable
//!   integers, `"abc" * 2.5` repeats, division by zero is an error;
//! - errors carry jq's wording (`Cannot index number with string ("a")`), which people match on.

use std::cmp::Ordering;
use std::fmt;

use jaq_core::path::Opt;
use jaq_core::{Exn, ValT as _};
use jaq_json::{Map, Num, Rc, Val as J};
use jaq_std::ValT as _;

use crate::write;

/// jq's value: jaq's JSON value with jq's semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct V(pub(crate) J);

type Error = jaq_core::Error<V>;
type ValR = jaq_core::ValR<V>;
type ValX<'a> = jaq_core::ValX<'a, V>;

/// Integers up to this magnitude are exact as doubles; beyond it jq's arithmetic rounds.
const EXACT: u64 = 1 << 53;
/// jq refuses to grow an array past this index (`(INT_MAX >> 2)`).
const MAX_INDEX: i64 = (i32::MAX >> 2) as i64;
/// jq's limit on path length and nesting in paths.
pub(crate) const MAX_PATH_DEPTH: usize = 10_000;

impl V {
    pub(crate) fn str(s: impl Into<String>) -> Self {
        Self(J::from(s.into()))
    }
}

/// An error with jq's message.
pub(crate) fn fail(msg: impl Into<String>) -> Error {
    Error::new(V::str(msg))
}

/// jq's name of a value's kind, as in its error messages.
pub(crate) fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Num(_) => "number",
        J::TStr(_) | J::BStr(_) => "string",
        J::Arr(_) => "array",
        J::Obj(_) => "object",
    }
}

/// jq's `jv_dump_string_trunc` with its usual 30-byte buffer: the JSON text, cut to 25 or 26
/// bytes at a character boundary with `...` (and the closing delimiter) when longer than 29.
pub(crate) fn trunc(v: &J) -> String {
    const BUF: usize = 30;
    let text = match v {
        // jq first cuts long strings to their first 30 characters.
        J::TStr(s) | J::BStr(s) if s.len() > BUF => {
            let s = String::from_utf8_lossy(s);
            let cut: String = s.chars().take(BUF).collect();
            write::to_json(&J::from(cut))
        }
        _ => write::to_json(v),
    };
    if text.len() < BUF {
        return String::from_utf8_lossy(&text).into_owned();
    }
    let delim = match text.first() {
        Some(b'"') => Some('"'),
        Some(b'[') => Some(']'),
        Some(b'{') => Some('}'),
        _ => None,
    };
    let mut l = BUF - if delim.is_some() { 5 } else { 4 };
    while l > 0 && (text[l] & 0xC0) == 0x80 {
        l -= 1;
    }
    let mut out = String::from_utf8_lossy(&text[..l]).into_owned();
    out.push_str("...");
    out.extend(delim);
    out
}

/// `kind (json…)`, how jq names a value in type errors.
pub(crate) fn described(v: &J) -> String {
    format!("{} ({})", kind(v), trunc(v))
}

/// jq's `type_error2`: `number (1) and string ("a") cannot be added`.
fn type_error2(a: &J, b: &J, what: &str) -> Error {
    fail(format!("{} and {} {what}", described(a), described(b)))
}

fn as_f64(n: &Num) -> f64 {
    J::Num(n.clone()).as_f64().unwrap_or(f64::NAN)
}

/// An array index as jq computes it: `None` for `nan`, else the number clamped to `int` and
/// truncated toward zero.
fn index_of(n: &Num) -> Option<i64> {
    if let Num::Int(i) = n {
        return Some((*i as i64).clamp(i64::from(i32::MIN), i64::from(i32::MAX)));
    }
    let f = as_f64(n);
    (!f.is_nan()).then(|| f.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i64)
}

/// A length as a signed index.
fn ilen(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn num(f: f64) -> J {
    J::Num(Num::Float(f))
}

fn int(i: i64) -> J {
    J::Num(Num::Int(i as isize))
}

/// Integer arithmetic stays exact while jq's doubles would be; beyond that it is jq's double.
fn arith(a: &Num, b: &Num, exact: fn(i64, i64) -> Option<i64>, float: fn(f64, f64) -> f64) -> J {
    if let (Num::Int(x), Num::Int(y)) = (a, b)
        && let Some(r) = exact(*x as i64, *y as i64).filter(|r| r.unsigned_abs() <= EXACT)
    {
        return int(r);
    }
    num(float(as_f64(a), as_f64(b)))
}

/// The number of characters jq counts in a string (code points).
fn char_len(s: &[u8]) -> usize {
    match std::str::from_utf8(s) {
        Ok(s) => s.chars().count(),
        Err(_) => String::from_utf8_lossy(s).chars().count(),
    }
}

/// jq's `parse_slice`: fractional bounds round outward, `nan` means the default, negative
/// bounds count from the end, everything is clamped to `0..=len`.
fn slice_bounds(len: usize, start: Option<&J>, end: Option<&J>) -> Result<(usize, usize), Error> {
    let bound = |b: Option<&J>, default: f64| match b {
        None | Some(J::Null) => Ok(default),
        Some(J::Num(n)) => Ok(as_f64(n)),
        Some(_) => Err(fail(
            "Start and end indices of an array slice must be numbers",
        )),
    };
    let lenf = len as f64;
    let mut dstart = bound(start, 0.0)?;
    let mut dend = bound(end, lenf)?;
    if dstart.is_nan() {
        dstart = 0.0;
    }
    if dstart < 0.0 {
        dstart += lenf;
    }
    dstart = dstart.clamp(0.0, lenf);
    let start = dstart as usize;
    if dend.is_nan() {
        dend = lenf;
    }
    if dend < 0.0 {
        dend += lenf;
    }
    if dend < 0.0 {
        dend = start as f64;
    }
    let mut end = if dend > lenf { len } else { dend as usize };
    if end < len && (end as f64) < dend {
        end += 1;
    }
    Ok((start, end.max(start)))
}

/// `.[start:end]` of an array or string, by jq's rules.
fn slice(t: J, start: Option<&J>, end: Option<&J>) -> ValR {
    match t {
        J::Null => Ok(V(J::Null)),
        J::Arr(a) => {
            let (s, e) = slice_bounds(a.len(), start, end)?;
            Ok(V(J::Arr(Rc::new(a[s..e].to_vec()))))
        }
        J::TStr(ref b) | J::BStr(ref b) => {
            let (s, e) = slice_bounds(char_len(b), start, end)?;
            // jaq slices strings by characters when given integer bounds.
            t.range(Some(&int(ilen(s)))..Some(&int(ilen(e))))
                .map(V)
                .map_err(|_| fail("Cannot slice string"))
        }
        other => {
            let range = J::from(start.cloned()..end.cloned());
            Err(index_error(&other, &range))
        }
    }
}

fn index_error(t: &J, k: &J) -> Error {
    fail(format!(
        "Cannot index {} with {} ({})",
        kind(t),
        kind(k),
        trunc(k)
    ))
}

fn range_of(o: &Map<J, J>) -> (Option<&J>, Option<&J>) {
    (
        o.get(&J::from("start".to_string())),
        o.get(&J::from("end".to_string())),
    )
}

/// jq's `jv_get`: `.[k]`. Takes the value by reference, so asking does not make a later
/// update of the same value copy it.
pub(crate) fn get(t: &J, k: &J) -> ValR {
    match (t, k) {
        (J::Obj(o), J::TStr(_) | J::BStr(_)) => Ok(V(o.get(k).cloned().unwrap_or_default())),
        (J::Arr(a), J::Num(n)) => Ok(V(index_of(n)
            .map(|i| if i < 0 { i + ilen(a.len()) } else { i })
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| a.get(i).cloned())
            .unwrap_or_default())),
        (J::Arr(_) | J::TStr(_) | J::BStr(_) | J::Null, J::Obj(o)) => {
            let (start, end) = range_of(o);
            slice(t.clone(), start, end)
        }
        (J::Arr(_), J::Arr(_)) => t.clone().index(k).map(V).map_err(|_| fail("indices")),
        (J::Null, J::TStr(_) | J::BStr(_) | J::Num(_)) => Ok(V(J::Null)),
        (t, k) => Err(index_error(t, k)),
    }
}

/// jq's `jv_has`.
pub(crate) fn has(t: &J, k: &J) -> ValR {
    match (t, k) {
        (J::Null, _) => Ok(V(J::Bool(false))),
        (J::Obj(o), J::TStr(_) | J::BStr(_)) => Ok(V(J::Bool(o.contains_key(k)))),
        (J::Arr(a), J::Num(n)) => {
            Ok(V(J::Bool(index_of(n).is_some_and(|i| {
                usize::try_from(i).is_ok_and(|i| i < a.len())
            }))))
        }
        _ => Err(fail(format!(
            "Cannot check whether {} has a {} key",
            kind(t),
            kind(k)
        ))),
    }
}

/// The first output of an update function, as jq's `_modify` takes it.
fn first<'a, I: Iterator<Item = ValX<'a>>>(mut it: I) -> Result<Option<J>, Exn<'a, V>> {
    it.next().transpose().map(|o| o.map(|v| v.0))
}

/// `.[k] |= f` by jq's `getpath`/`setpath`: `null` becomes the object or array the key needs,
/// arrays grow with `null`s, an empty update deletes.
fn update_index<'a, I: Iterator<Item = ValX<'a>>>(
    t: J,
    k: &J,
    f: impl Fn(V) -> I,
) -> Result<J, Exn<'a, V>> {
    match (t, k) {
        (t @ (J::Null | J::Obj(_)), J::TStr(_) | J::BStr(_)) => {
            let mut o = match t {
                J::Obj(o) => o,
                _ => Rc::new(Map::default()),
            };
            let map = Rc::make_mut(&mut o);
            if let Some(i) = map.get_index_of(k) {
                let old = std::mem::take(&mut map[i]);
                match first(f(V(old)))? {
                    Some(y) => map[i] = y,
                    None => {
                        map.shift_remove_index(i);
                    }
                }
            } else if let Some(y) = first(f(V(J::Null)))? {
                map.insert(k.clone(), y);
            }
            Ok(J::Obj(o))
        }
        (t @ (J::Null | J::Arr(_)), J::Num(n)) => {
            let mut a = match t {
                J::Arr(a) => a,
                _ => Rc::new(Vec::new()),
            };
            let len = ilen(a.len());
            let i = index_of(n).map(|i| if i < 0 { i + len } else { i });
            let current = i
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| a.get(i).cloned())
                .unwrap_or_default();
            let inside = i.is_some_and(|i| (0..len).contains(&i));
            // Drop our copy so the array is not cloned below.
            let y = if inside {
                let vec = Rc::make_mut(&mut a);
                let i = usize::try_from(i.unwrap_or(0)).unwrap_or(0);
                drop(current);
                let old = std::mem::take(&mut vec[i]);
                first(f(V(old)))?
            } else {
                first(f(V(current)))?
            };
            let Some(i) = i else {
                return match y {
                    Some(_) => Err(fail("Cannot set array element at NaN index").into()),
                    None => Ok(J::Arr(a)),
                };
            };
            let vec = Rc::make_mut(&mut a);
            match y {
                Some(y) if i < 0 => {
                    drop(y);
                    return Err(fail("Out of bounds negative array index").into());
                }
                Some(_) if i > MAX_INDEX => return Err(fail("Array index too large").into()),
                Some(y) => {
                    let i = usize::try_from(i).unwrap_or(0);
                    if i >= vec.len() {
                        vec.resize(i + 1, J::Null);
                    }
                    vec[i] = y;
                }
                None if inside => {
                    vec.remove(usize::try_from(i).unwrap_or(0));
                }
                None => {}
            }
            Ok(J::Arr(a))
        }
        (t @ (J::Null | J::Arr(_)), J::Obj(o)) => {
            let (start, end) = range_of(o);
            update_slice(t, start, end, f)
        }
        (J::TStr(_) | J::BStr(_), J::Obj(_)) => Err(fail("Cannot update string slices").into()),
        (t, k) => {
            // jq reads the old value first: its error wins.
            get(&t, k)?;
            Err(fail(format!(
                "Cannot update field at {} index of {}",
                kind(k),
                kind(&t)
            ))
            .into())
        }
    }
}

/// `.[start:end] |= f` on an array (or `null`, an empty array).
fn update_slice<'a, I: Iterator<Item = ValX<'a>>>(
    t: J,
    start: Option<&J>,
    end: Option<&J>,
    f: impl Fn(V) -> I,
) -> Result<J, Exn<'a, V>> {
    let mut a = match t {
        J::Arr(a) => a,
        J::Null => Rc::new(Vec::new()),
        J::TStr(_) | J::BStr(_) => return Err(fail("Cannot update string slices").into()),
        other => {
            let range = J::from(start.cloned()..end.cloned());
            return Err(index_error(&other, &range).into());
        }
    };
    let (s, e) = slice_bounds(a.len(), start, end)?;
    let part = J::Arr(Rc::new(a[s..e].to_vec()));
    let y = match first(f(V(part)))? {
        Some(J::Arr(y)) => y.to_vec(),
        None => Vec::new(),
        Some(_) => {
            return Err(fail("A slice of an array can only be assigned another array").into());
        }
    };
    Rc::make_mut(&mut a).splice(s..e, y);
    Ok(J::Arr(a))
}

fn iterate_error(v: &J) -> Error {
    fail(format!("Cannot iterate over {}", described(v)))
}

impl fmt::Display for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&write::to_json(&self.0)))
    }
}

impl From<bool> for V {
    fn from(b: bool) -> Self {
        Self(J::Bool(b))
    }
}

impl From<isize> for V {
    fn from(i: isize) -> Self {
        Self(J::from(i))
    }
}

impl From<usize> for V {
    fn from(i: usize) -> Self {
        Self(J::from(i))
    }
}

impl From<f64> for V {
    fn from(f: f64) -> Self {
        Self(J::from(f))
    }
}

impl From<String> for V {
    fn from(s: String) -> Self {
        // jaq's own path-expression error names the input of the failing step; jq says
        // "result". Same value in the common case (`path(.a | map(…))`).
        const JAQ: &str = "invalid path expression with input ";
        match s.strip_prefix(JAQ) {
            Some(rest) => Self(J::from(format!(
                "Invalid path expression with result {}",
                crate::read::parse_one(rest).map_or_else(|_| rest.to_string(), |v| trunc(&v))
            ))),
            None => Self(J::from(s)),
        }
    }
}

impl From<jaq_core::val::Range<V>> for V {
    fn from(r: jaq_core::val::Range<V>) -> Self {
        Self(J::from(r.start.map(|v| v.0)..r.end.map(|v| v.0)))
    }
}

impl FromIterator<V> for V {
    fn from_iter<T: IntoIterator<Item = V>>(iter: T) -> Self {
        Self(J::Arr(Rc::new(iter.into_iter().map(|v| v.0).collect())))
    }
}

impl PartialOrd for V {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for V {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl std::ops::Add for V {
    type Output = ValR;
    fn add(self, rhs: Self) -> ValR {
        match (self.0, rhs.0) {
            (J::Null, x) | (x, J::Null) => Ok(V(x)),
            (J::Num(a), J::Num(b)) => Ok(V(arith(&a, &b, i64::checked_add, |x, y| x + y))),
            (a @ (J::TStr(_) | J::BStr(_)), b @ (J::TStr(_) | J::BStr(_)))
            | (a @ J::Arr(_), b @ J::Arr(_))
            | (a @ J::Obj(_), b @ J::Obj(_)) => (a + b).map(V).map_err(|_| fail("add")),
            (a, b) => Err(type_error2(&a, &b, "cannot be added")),
        }
    }
}

impl std::ops::Sub for V {
    type Output = ValR;
    fn sub(self, rhs: Self) -> ValR {
        match (self.0, rhs.0) {
            (J::Num(a), J::Num(b)) => Ok(V(arith(&a, &b, i64::checked_sub, |x, y| x - y))),
            (a @ J::Arr(_), b @ J::Arr(_)) => (a - b).map(V).map_err(|_| fail("subtract")),
            (a, b) => Err(type_error2(&a, &b, "cannot be subtracted")),
        }
    }
}

/// jq's `jv_string_repeat` with the count rules of `binop_multiply`.
fn repeat(s: &[u8], n: &Num) -> ValR {
    let d = as_f64(n);
    if d < 0.0 || d.is_nan() {
        return Ok(V(J::Null));
    }
    let n = if d > f64::from(i32::MAX) {
        i32::MAX as usize
    } else {
        d as usize
    };
    if (s.len() as u64) * (n as u64) >= (i32::MAX as u64) - 16 {
        return Err(fail("Repeat string result too long"));
    }
    Ok(V(J::utf8_str(s.repeat(n))))
}

impl std::ops::Mul for V {
    type Output = ValR;
    fn mul(self, rhs: Self) -> ValR {
        match (self.0, rhs.0) {
            (J::Num(a), J::Num(b)) => Ok(V(arith(&a, &b, i64::checked_mul, |x, y| x * y))),
            (J::TStr(s) | J::BStr(s), J::Num(n)) | (J::Num(n), J::TStr(s) | J::BStr(s)) => {
                repeat(&s, &n)
            }
            (J::Obj(a), J::Obj(b)) => merge(&a, &b, 0).map(|m| V(J::obj(m))),
            (a, b) => Err(type_error2(&a, &b, "cannot be multiplied")),
        }
    }
}

/// jq's recursive object merge (`a * b`): `b`'s entries win, objects under the same key merge;
/// deeper than 10,000 levels is an error, as in jq (not a stack overflow).
fn merge(a: &jaq_json::Map, b: &jaq_json::Map, depth: usize) -> Result<jaq_json::Map, Error> {
    if depth > 10_000 {
        return Err(fail("Object merge too deep"));
    }
    let mut out = a.clone();
    for (k, bv) in b {
        let merged = match (out.get(k), bv) {
            (Some(J::Obj(ao)), J::Obj(bo)) => J::obj(merge(ao, bo, depth + 1)?),
            _ => bv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(out)
}

impl std::ops::Div for V {
    type Output = ValR;
    fn div(self, rhs: Self) -> ValR {
        match (self.0, rhs.0) {
            (J::Num(a), J::Num(b)) => {
                let (x, y) = (as_f64(&a), as_f64(&b));
                if y == 0.0 {
                    return Err(type_error2(
                        &J::Num(a),
                        &J::Num(b),
                        "cannot be divided because the divisor is zero",
                    ));
                }
                if let (Num::Int(i), Num::Int(j)) = (&a, &b)
                    && i.checked_rem(*j) == Some(0)
                    && i.unsigned_abs() as u64 <= EXACT
                {
                    return Ok(V(int((*i / *j) as i64)));
                }
                Ok(V(num(x / y)))
            }
            (a @ J::TStr(_), b @ J::TStr(_)) | (a @ J::BStr(_), b @ J::BStr(_)) => {
                (a / b).map(V).map_err(|_| fail("split"))
            }
            (a, b) => Err(type_error2(&a, &b, "cannot be divided")),
        }
    }
}

impl std::ops::Rem for V {
    type Output = ValR;
    fn rem(self, rhs: Self) -> ValR {
        match (self.0, rhs.0) {
            (J::Num(a), J::Num(b)) => {
                let (x, y) = (as_f64(&a), as_f64(&b));
                if x.is_nan() || y.is_nan() {
                    return Ok(V(num(f64::NAN)));
                }
                // jq's `dtoi`: saturate to intmax_t, truncate toward zero.
                let dtoi = |f: f64| f as i64;
                let (i, j) = match (&a, &b) {
                    (Num::Int(i), Num::Int(j)) => (*i as i64, *j as i64),
                    _ => (dtoi(x), dtoi(y)),
                };
                if j == 0 {
                    return Err(type_error2(
                        &J::Num(a),
                        &J::Num(b),
                        "cannot be divided (remainder) because the divisor is zero",
                    ));
                }
                Ok(V(int(if j == -1 { 0 } else { i % j })))
            }
            (a, b) => Err(type_error2(&a, &b, "cannot be divided (remainder)")),
        }
    }
}

impl std::ops::Neg for V {
    type Output = ValR;
    fn neg(self) -> ValR {
        match self.0 {
            J::Num(Num::Int(i)) => Ok(V(i
                .checked_neg()
                .map_or_else(|| num(-(i as f64)), |i| J::Num(Num::Int(i))))),
            J::Num(n @ (Num::BigInt(_) | Num::Dec(_))) => {
                (-J::Num(n)).map(V).map_err(|_| fail("negate"))
            }
            J::Num(n) => Ok(V(num(-as_f64(&n)))),
            other => Err(fail(format!("{} cannot be negated", described(&other)))),
        }
    }
}

impl jaq_core::ValT for V {
    fn from_num(n: &str) -> ValR {
        J::from_num(n).map(V).map_err(|_| fail("invalid number"))
    }

    fn from_map<I: IntoIterator<Item = (Self, Self)>>(iter: I) -> ValR {
        let mut map = Map::default();
        for (k, v) in iter {
            match k.0 {
                k @ (J::TStr(_) | J::BStr(_)) => {
                    map.insert(k, v.0);
                }
                k => {
                    return Err(fail(format!("Cannot use {} as object key", described(&k))));
                }
            }
        }
        Ok(V(J::obj(map)))
    }

    fn key_values(self) -> Box<dyn Iterator<Item = Result<(V, V), Error>>> {
        match self.0 {
            J::Arr(a) => Box::new(
                Rc::unwrap_or_clone(a)
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| Ok((V(J::from(i)), V(x)))),
            ),
            J::Obj(o) => Box::new(
                Rc::unwrap_or_clone(o)
                    .into_iter()
                    .map(|(k, x)| Ok((V(k), V(x)))),
            ),
            other => Box::new(std::iter::once(Err(iterate_error(&other)))),
        }
    }

    fn values(self) -> Box<dyn Iterator<Item = ValR>> {
        match self.0 {
            J::Arr(a) => Box::new(Rc::unwrap_or_clone(a).into_iter().map(|x| Ok(V(x)))),
            J::Obj(o) => Box::new(Rc::unwrap_or_clone(o).into_values().map(|x| Ok(V(x)))),
            other => Box::new(std::iter::once(Err(iterate_error(&other)))),
        }
    }

    fn index(self, index: &Self) -> ValR {
        get(&self.0, &index.0)
    }

    fn range(self, range: jaq_core::val::Range<&Self>) -> ValR {
        slice(self.0, range.start.map(|v| &v.0), range.end.map(|v| &v.0))
    }

    fn map_values<'a, I: Iterator<Item = ValX<'a>>>(
        self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a> {
        match self.0 {
            J::Arr(a) => {
                let mut out = Vec::with_capacity(a.len());
                for x in Rc::unwrap_or_clone(a) {
                    out.extend(first(f(V(x)))?);
                }
                Ok(V(J::Arr(Rc::new(out))))
            }
            J::Obj(o) => {
                let mut out = Map::default();
                for (k, x) in Rc::unwrap_or_clone(o) {
                    if let Some(y) = first(f(V(x)))? {
                        out.insert(k, y);
                    }
                }
                Ok(V(J::obj(out)))
            }
            other => opt.fail(V(other), |v| Exn::from(iterate_error(&v.0))),
        }
    }

    fn map_index<'a, I: Iterator<Item = ValX<'a>>>(
        self,
        index: &Self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a> {
        match opt {
            Opt::Essential => update_index(self.0, &index.0, f).map(V),
            // `.[k]? |= f` leaves values it cannot index unchanged.
            Opt::Optional => {
                if get(&self.0, &index.0).is_err() {
                    return Ok(self);
                }
                update_index(self.0, &index.0, f).map(V)
            }
        }
    }

    fn map_range<'a, I: Iterator<Item = ValX<'a>>>(
        self,
        range: jaq_core::val::Range<&Self>,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a> {
        let (start, end) = (range.start.map(|v| &v.0), range.end.map(|v| &v.0));
        match (opt, &self.0) {
            (Opt::Optional, J::Bool(_) | J::Num(_) | J::Obj(_)) => Ok(self),
            _ => update_slice(self.0, start, end, f).map(V),
        }
    }

    fn as_bool(&self) -> bool {
        !matches!(self.0, J::Null | J::Bool(false))
    }

    fn into_string(self) -> Self {
        match self.0 {
            s @ J::TStr(_) => V(s),
            J::BStr(b) => V(J::TStr(b)),
            other => V(J::utf8_str(write::to_json(&other))),
        }
    }
}

impl jaq_std::ValT for V {
    fn into_seq<S: FromIterator<Self>>(self) -> Result<S, Self> {
        match self.0 {
            J::Arr(a) => Ok(Rc::unwrap_or_clone(a).into_iter().map(V).collect()),
            other => Err(V(other)),
        }
    }

    fn is_int(&self) -> bool {
        self.0.is_int()
    }

    fn as_isize(&self) -> Option<isize> {
        self.0.as_isize()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn is_utf8_str(&self) -> bool {
        self.0.is_utf8_str()
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_bytes()
    }

    fn as_sub_str(&self, sub: &[u8]) -> Self {
        V(self.0.as_sub_str(sub))
    }

    fn from_utf8_bytes(b: impl AsRef<[u8]> + Send + 'static) -> Self {
        V(J::from_utf8_bytes(b))
    }
}

/// jq's `delpaths`: paths sorted, then deleted level by level so indices refer to the value
/// before any deletion (`del(.[1], .[2])` deletes both).
pub(crate) fn delpaths(v: J, paths: &J) -> Result<J, Error> {
    let J::Arr(paths) = paths else {
        return Err(fail("Paths must be specified as an array"));
    };
    let mut paths: Vec<&J> = paths.iter().collect();
    paths.sort();
    let mut list = Vec::with_capacity(paths.len());
    for p in paths {
        let J::Arr(p) = p else {
            return Err(fail(format!(
                "Path must be specified as array, not {}",
                kind(p)
            )));
        };
        if p.len() > MAX_PATH_DEPTH {
            return Err(fail("Path too deep"));
        }
        list.push(&p[..]);
    }
    match list.first() {
        None => Ok(v),
        Some([]) => Ok(J::Null),
        Some(_) => delpaths_sorted(v, &list, 0),
    }
}

fn delpaths_sorted(mut object: J, paths: &[&[J]], start: usize) -> Result<J, Error> {
    let mut delkeys = Vec::new();
    let mut i = 0;
    while i < paths.len() {
        let key = &paths[i][start];
        let delkey = paths[i].len() == start + 1;
        let mut j = i + 1;
        while j < paths.len() && paths[j].get(start) == Some(key) {
            j += 1;
        }
        if delkey {
            delkeys.push(key.clone());
        } else {
            let sub = get(&object, key)?.0;
            if !matches!(sub, J::Null) {
                let new = delpaths_sorted(sub, &paths[i..j], start + 1)?;
                object = update_index(object, key, |_| std::iter::once(Ok(V(new.clone()))))
                    .map_err(|e| match e.get_err() {
                        Ok(e) => e,
                        Err(_) => fail("delpaths"),
                    })?;
            }
        }
        i = j;
    }
    dels(object, &delkeys)
}

/// jq's `jv_dels`: deletes `keys` (sorted) of one value at once.
fn dels(t: J, keys: &[J]) -> Result<J, Error> {
    if keys.is_empty() {
        return Ok(t);
    }
    match t {
        J::Null => Ok(J::Null),
        J::Arr(a) => {
            let len = a.len();
            let mut del = vec![false; len];
            for key in keys {
                match key {
                    J::Num(n) => {
                        if let Some(i) = index_of(n) {
                            let i = if i < 0 { i + ilen(len) } else { i };
                            if let Ok(i) = usize::try_from(i)
                                && i < len
                            {
                                del[i] = true;
                            }
                        }
                    }
                    J::Obj(o) => {
                        let (s, e) = range_of(o);
                        let (s, e) = slice_bounds(len, s, e)?;
                        del[s..e].iter_mut().for_each(|d| *d = true);
                    }
                    other => {
                        return Err(fail(format!(
                            "Cannot delete {} element of array",
                            kind(other)
                        )));
                    }
                }
            }
            let kept = Rc::unwrap_or_clone(a)
                .into_iter()
                .zip(del)
                .filter_map(|(x, d)| (!d).then_some(x))
                .collect();
            Ok(J::Arr(Rc::new(kept)))
        }
        J::Obj(mut o) => {
            let map = Rc::make_mut(&mut o);
            for k in keys {
                if !matches!(k, J::TStr(_) | J::BStr(_)) {
                    return Err(fail(format!("Cannot delete {} field of object", kind(k))));
                }
                map.shift_remove(k);
            }
            Ok(J::Obj(o))
        }
        other => Err(fail(format!("Cannot delete fields from {}", kind(&other)))),
    }
}

/// jq's `length`.
pub(crate) fn length(v: &J) -> ValR {
    Ok(V(match v {
        J::Null => int(0),
        J::Bool(_) => return Err(fail(format!("{} has no length", described(v)))),
        J::Num(Num::Int(i)) => int((*i as i64).abs()),
        // A literal keeps its digits, as jq's `abs`.
        J::Num(Num::Dec(d)) if !d.parse::<f64>().is_ok_and(f64::is_nan) => J::Num(Num::Dec(
            d.strip_prefix('-').unwrap_or(d).to_string().into(),
        )),
        J::Num(n) => num(as_f64(n).abs()),
        J::TStr(s) => J::from(char_len(s)),
        J::BStr(b) => J::from(b.len()),
        J::Arr(a) => J::from(a.len()),
        J::Obj(o) => J::from(o.len()),
    }))
}

/// jq's `contains`: substrings, recursive containment of arrays and objects, equality else;
/// values of different kinds are an error.
pub(crate) fn contains(a: &J, b: &J) -> ValR {
    fn go(a: &J, b: &J, depth: usize) -> Result<bool, Error> {
        if depth > MAX_PATH_DEPTH {
            return Err(fail("Containment check too deep"));
        }
        if kind(a) != kind(b) {
            return Err(type_error2(a, b, "cannot have their containment checked"));
        }
        Ok(match (a, b) {
            (J::TStr(x) | J::BStr(x), J::TStr(y) | J::BStr(y)) => {
                y.is_empty() || x.windows(y.len()).any(|w| w == &y[..])
            }
            (J::Arr(x), J::Arr(y)) => {
                for y in y.iter() {
                    let mut found = false;
                    for x in x.iter() {
                        if kind(x) == kind(y) && go(x, y, depth + 1)? {
                            found = true;
                            break;
                        }
                    }
                    if !found {
                        return Ok(false);
                    }
                }
                true
            }
            (J::Obj(x), J::Obj(y)) => {
                for (k, y) in y.iter() {
                    match x.get(k) {
                        Some(x) if go(x, y, depth + 1)? => {}
                        _ => return Ok(false),
                    }
                }
                true
            }
            _ => a == b,
        })
    }
    go(a, b, 0).map(|b| V(J::Bool(b)))
}

/// jq's `bsearch`: the index of `x` in the sorted array, or `-1 - insertion point`.
pub(crate) fn bsearch(a: &J, x: &J) -> ValR {
    match a {
        J::Arr(a) => Ok(V(int(match a.binary_search(x) {
            Ok(i) => ilen(i),
            Err(i) => -1 - ilen(i),
        }))),
        other => Err(fail(format!(
            "{} cannot be searched from",
            described(other)
        ))),
    }
}

/// Positions of `y` in `x` (characters for strings, elements for arrays).
pub(crate) fn indices(x: &J, y: &J) -> ValR {
    let positions: Vec<usize> = match (x, y) {
        (J::Null, _) | (_, J::Null) => return Ok(V(J::Null)),
        (J::TStr(x) | J::BStr(x), J::TStr(y) | J::BStr(y)) => {
            if y.is_empty() {
                Vec::new()
            } else {
                let s = String::from_utf8_lossy(x);
                let n = String::from_utf8_lossy(y);
                s.char_indices()
                    .enumerate()
                    .filter(|(_, (b, _))| s[*b..].starts_with(&*n))
                    .map(|(i, _)| i)
                    .collect()
            }
        }
        (J::Arr(x), J::Arr(y)) if y.is_empty() => Vec::new(),
        (J::Arr(x), J::Arr(y)) => x
            .windows(y.len())
            .enumerate()
            .filter(|(_, w)| *w == &y[..])
            .map(|(i, _)| i)
            .collect(),
        (J::Arr(x), y) => x
            .iter()
            .enumerate()
            .filter(|(_, x)| *x == y)
            .map(|(i, _)| i)
            .collect(),
        (x, y) => return Err(index_error(x, y)),
    };
    Ok(V(J::Arr(Rc::new(
        positions.into_iter().map(J::from).collect(),
    ))))
}

/// Nesting depth of a value (a scalar is 0).
fn nesting(v: &J) -> usize {
    match v {
        J::Arr(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        J::Obj(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether ordering `a` and `b` goes deeper than jq's limit (jq 1.8: "Comparison too deep").
fn too_deep_to_compare(a: &J, b: &J, depth: usize) -> bool {
    if depth > MAX_PATH_DEPTH {
        return true;
    }
    match (a, b) {
        (J::Arr(x), J::Arr(y)) => {
            for (x, y) in x.iter().zip(y.iter()) {
                if too_deep_to_compare(x, y, depth + 1) {
                    return true;
                }
                if x != y {
                    return false;
                }
            }
            false
        }
        (J::Obj(x), J::Obj(y)) => {
            let mut keys: Vec<&J> = x.keys().collect();
            keys.sort();
            let mut other: Vec<&J> = y.keys().collect();
            other.sort();
            if keys != other {
                return false;
            }
            for k in keys {
                let (x, y) = (&x[k], &y[k]);
                if too_deep_to_compare(x, y, depth + 1) {
                    return true;
                }
                if x != y {
                    return false;
                }
            }
            false
        }
        _ => false,
    }
}

/// The elements of an array to be sorted, unchanged; an error when ordering two of them would
/// recurse past jq's limit, where jq 1.8 says "Comparison too deep" (and jq 1.7 crashes).
pub(crate) fn check_comparable(v: J) -> ValR {
    if let J::Arr(items) = &v
        && items.len() > 1
    {
        for (i, x) in items.iter().enumerate() {
            if nesting(x) > MAX_PATH_DEPTH
                && items
                    .iter()
                    .enumerate()
                    .any(|(j, y)| i != j && too_deep_to_compare(x, y, 0))
            {
                return Err(fail("Comparison too deep"));
            }
        }
    }
    Ok(V(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> J {
        J::from(text.to_string())
    }

    #[test]
    fn trunc_cuts_as_jq_does() {
        assert_eq!(trunc(&s("abc")), r#""abc""#);
        assert_eq!(
            trunc(&s("very-long-long-long-long-string")),
            r#""very-long-long-long-long...""#
        );
        // Never inside a character: "xxxx☆☆☆☆☆☆..." (25 bytes would split a star).
        assert_eq!(trunc(&s("xxxx☆☆☆☆☆☆☆☆")), r#""xxxx☆☆☆☆☆☆...""#);
        assert_eq!(trunc(&s("☆☆☆☆☆☆☆☆")), r#""☆☆☆☆☆☆☆☆""#);
        assert_eq!(described(&int(123)), "number (123)");
    }

    #[test]
    fn slices_round_outward_and_clamp() {
        let n = |f: f64| J::from(f);
        assert_eq!(
            slice_bounds(10, Some(&n(1.2)), Some(&n(3.5))).unwrap(),
            (1, 4)
        );
        assert_eq!(slice_bounds(10, Some(&n(-2.0)), None).unwrap(), (8, 10));
        assert_eq!(
            slice_bounds(3, Some(&n(f64::NAN)), Some(&n(1.0))).unwrap(),
            (0, 1)
        );
        assert_eq!(
            slice_bounds(3, Some(&n(1.0)), Some(&n(f64::NAN))).unwrap(),
            (1, 3)
        );
        assert_eq!(
            slice_bounds(3, Some(&n(2.0)), Some(&n(-9.0))).unwrap(),
            (2, 2)
        );
        assert!(slice_bounds(3, Some(&s("a")), None).is_err());
    }

    #[test]
    fn object_merge_is_recursive_and_bounded() {
        let parse = |t: &str| V(crate::read::parse_one(t).unwrap());
        let merged = (parse(r#"{"a":{"b":1,"c":{"d":1}},"e":2}"#)
            * parse(r#"{"a":{"c":{"f":2},"g":3},"e":{"x":1}}"#))
        .unwrap();
        assert_eq!(
            crate::write::to_json(&merged.0),
            br#"{"a":{"b":1,"c":{"d":1,"f":2},"g":3},"e":{"x":1}}"#
        );
        let nested = |n: usize| {
            let mut v = J::obj(jaq_json::Map::default());
            for _ in 0..n {
                let mut m = jaq_json::Map::default();
                m.insert(J::utf8_str(b"a".to_vec()), v);
                v = J::obj(m);
            }
            V(v)
        };
        let ok = std::thread::Builder::new()
            .stack_size(crate::STACK_SIZE)
            .spawn(move || {
                let fine = (nested(10_000) * nested(10_000)).is_ok();
                let too_deep = (nested(10_001) * nested(10_001)).is_err();
                fine && too_deep
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(ok, "10,000 levels merge, 10,001 are an error");
    }

    #[test]
    fn delpaths_deletes_by_original_positions() {
        let arr = J::Arr(Rc::new((0..10).map(int).collect()));
        let path = |k: J| J::Arr(Rc::new(vec![k]));
        let range = J::from(Some(int(-3))..Some(int(9)));
        let paths = J::Arr(Rc::new(vec![
            path(int(1)),
            path(int(-6)),
            path(int(2)),
            path(range),
        ]));
        let out = delpaths(arr, &paths).unwrap();
        assert_eq!(write::to_json(&out), b"[0,3,5,6,9]");
    }

    #[test]
    fn integer_arithmetic_rounds_like_doubles_beyond_2_53() {
        let big = V(int(13_911_860_366_432_393));
        let out = (big - V(int(10))).unwrap();
        assert_eq!(write::to_json(&out.0), b"13911860366432382");
        let small = (V(int(7)) + V(int(5))).unwrap();
        assert!(matches!(small.0, J::Num(Num::Int(12))));
    }
}
