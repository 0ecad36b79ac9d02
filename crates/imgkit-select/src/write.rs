//! Printing values exactly as jq 1.7 prints them: jq's number format, jq's string escapes, its
//! pretty printer (indent, `--tab`, `-c`) and raw output (`-r`, `-j`).

use std::fmt::Write as _;
use std::io::{self, Write};

use jaq_json::{Num, Val};

/// How `imgkit filter` lays out each output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indent {
    /// One line per value (`-c`, or `--indent 0`).
    Compact,
    /// `n` spaces per level (jq's default is 2; `--indent n`, at most 7 as in jq).
    Spaces(u8),
    /// One tab per level (`--tab`).
    Tab,
}

impl Default for Indent {
    fn default() -> Self {
        Self::Spaces(2)
    }
}

/// Output options, spelled like jq's flags.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_excessive_bools, reason = "jq's flags")]
pub struct Style {
    /// Layout of arrays and objects.
    pub indent: Indent,
    /// `-r`: print strings without quotes.
    pub raw: bool,
    /// `-j`: like `-r`, and no newline after each value.
    pub join: bool,
    /// `-a`: escape every non-ASCII character as `\uXXXX`.
    pub ascii: bool,
    /// `-S`: print object keys sorted.
    pub sort_keys: bool,
    /// `--raw-output0`: like `-j`, and a NUL byte after each value.
    pub nul: bool,
    /// `--seq`: an ASCII record separator (0x1E) before each value that is not a raw string.
    pub seq: bool,
    /// `-C`: colours, jq's or `JQ_COLORS`' (see [`Palette`]).
    pub color: Option<&'static Palette>,
}

/// The colours of `-C`: escape sequences for null, false, true, numbers, strings, arrays,
/// objects and object keys, in jq 1.7.1's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    colors: [Vec<u8>; 8],
}

const RESET: &[u8] = b"\x1b[0m";

impl Default for Palette {
    /// jq 1.7.1's default colours.
    fn default() -> Self {
        let c = |s: &str| format!("\x1b[{s}m").into_bytes();
        Self {
            colors: [
                c("0;90"),
                c("0;39"),
                c("0;39"),
                c("0;39"),
                c("0;32"),
                c("1;39"),
                c("1;39"),
                c("1;34"),
            ],
        }
    }
}

impl Palette {
    /// The palette of a `JQ_COLORS` value (`"0;90:0;37:…"`, colon-separated, in the order above;
    /// missing entries keep jq's default). `None` when jq refuses it ("Failed to set
    /// $JQ_COLORS"): an entry longer than 12 characters or with characters other than digits
    /// and `;`.
    pub fn from_jq_colors(spec: &str) -> Option<Self> {
        let mut palette = Self::default();
        if spec.is_empty() {
            return Some(palette);
        }
        for (slot, part) in palette.colors.iter_mut().zip(spec.split(':')) {
            if part.len() > 12 || !part.bytes().all(|c| c.is_ascii_digit() || c == b';') {
                return None;
            }
            *slot = format!("\x1b[{part}m").into_bytes();
        }
        Some(palette)
    }

    fn of(&self, v: &Val) -> &[u8] {
        let i = match v {
            Val::Null => 0,
            Val::Bool(false) => 1,
            Val::Bool(true) => 2,
            Val::Num(_) => 3,
            Val::TStr(_) | Val::BStr(_) => 4,
            Val::Arr(_) => 5,
            Val::Obj(_) => 6,
        };
        &self.colors[i]
    }
}

/// Writes one output value followed by a newline (unless `join`), as jq's `process` does:
/// raw strings as they are (with `-a`, as an ASCII JSON string), `--seq`'s separator before
/// other values, `--raw-output0`'s NUL after each.
pub(crate) fn output(w: &mut impl Write, style: Style, v: &Val) -> io::Result<()> {
    match v {
        Val::TStr(s) | Val::BStr(s) if style.raw || style.join => {
            if style.ascii {
                string(w, s, true)?;
            } else {
                w.write_all(s)?;
            }
        }
        _ => {
            if style.seq {
                w.write_all(b"\x1e")?;
            }
            match style.color {
                Some(palette) => colored(w, style, palette, 0, v)?,
                None => value(w, style, 0, v)?,
            }
        }
    }
    if !style.join {
        w.write_all(b"\n")?;
    }
    if style.nul {
        w.write_all(b"\0")?;
    }
    Ok(())
}

/// Writes `v` as JSON with colours, byte for byte as jq 1.7.1's `jv_dump_term` does.
fn colored(
    w: &mut impl Write,
    style: Style,
    palette: &Palette,
    level: usize,
    v: &Val,
) -> io::Result<()> {
    let color = palette.of(v);
    w.write_all(color)?;
    if level > 10_000 {
        w.write_all(b"<skipped: too deep>")?;
        return w.write_all(RESET);
    }
    match v {
        Val::Arr(a) if !a.is_empty() => {
            w.write_all(b"[")?;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                newline(w, style, level + 1)?;
                colored(w, style, palette, level + 1, x)?;
                w.write_all(color)?;
            }
            newline(w, style, level)?;
            w.write_all(color)?;
            w.write_all(b"]")?;
        }
        Val::Obj(o) if !o.is_empty() => {
            w.write_all(b"{")?;
            let mut entries: Vec<(&Val, &Val)> = o.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                newline(w, style, level + 1)?;
                w.write_all(RESET)?;
                w.write_all(&palette.colors[7])?;
                match k {
                    Val::TStr(s) | Val::BStr(s) => string(w, s, style.ascii)?,
                    other => string(w, &to_json(other), style.ascii)?,
                }
                w.write_all(RESET)?;
                w.write_all(color)?;
                w.write_all(if style.indent == Indent::Compact {
                    b":"
                } else {
                    b": "
                })?;
                w.write_all(RESET)?;
                colored(w, style, palette, level + 1, x)?;
                w.write_all(color)?;
            }
            newline(w, style, level)?;
            w.write_all(color)?;
            w.write_all(b"}")?;
        }
        scalar => value(w, style, level, scalar)?,
    }
    w.write_all(RESET)
}

/// Writes `v` as JSON in jq's layout.
pub(crate) fn value(w: &mut impl Write, style: Style, level: usize, v: &Val) -> io::Result<()> {
    // jq's printer stops at 10,000 levels.
    if level > 10_000 {
        return w.write_all(b"<skipped: too deep>");
    }
    match v {
        Val::Null => w.write_all(b"null"),
        Val::Bool(true) => w.write_all(b"true"),
        Val::Bool(false) => w.write_all(b"false"),
        Val::Num(n) => number(w, n),
        Val::TStr(s) | Val::BStr(s) => string(w, s, style.ascii),
        Val::Arr(a) if a.is_empty() => w.write_all(b"[]"),
        Val::Arr(a) => {
            w.write_all(b"[")?;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                newline(w, style, level + 1)?;
                value(w, style, level + 1, x)?;
            }
            newline(w, style, level)?;
            w.write_all(b"]")
        }
        Val::Obj(o) if o.is_empty() => w.write_all(b"{}"),
        Val::Obj(o) => {
            w.write_all(b"{")?;
            let mut entries: Vec<(&Val, &Val)> = o.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                newline(w, style, level + 1)?;
                match k {
                    Val::TStr(s) | Val::BStr(s) => string(w, s, style.ascii)?,
                    // jq objects only have string keys; show others as JSON text.
                    other => string(w, &to_json(other), style.ascii)?,
                }
                w.write_all(if style.indent == Indent::Compact {
                    b":"
                } else {
                    b": "
                })?;
                value(w, style, level + 1, x)?;
            }
            newline(w, style, level)?;
            w.write_all(b"}")
        }
    }
}

fn newline(w: &mut impl Write, style: Style, level: usize) -> io::Result<()> {
    const SPACES: &[u8; 64] = b"\n                                                               ";
    const TABS: &[u8; 64] = b"\n\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t";
    let (fill, mut n) = match style.indent {
        Indent::Compact => return Ok(()),
        Indent::Tab => (TABS, level),
        Indent::Spaces(k) => (SPACES, level * usize::from(k)),
    };
    // A newline and the indent, written in pieces of at most 63 characters.
    let mut first = true;
    loop {
        let take = n.min(63);
        let piece = if first {
            &fill[..=take]
        } else {
            &fill[1..=take]
        };
        w.write_all(piece)?;
        first = false;
        n -= take;
        if n == 0 {
            return Ok(());
        }
    }
}

/// `v` as compact JSON text, numbers as jq prints them.
pub(crate) fn to_json(v: &Val) -> Vec<u8> {
    let mut buf = Vec::new();
    let style = Style {
        indent: Indent::Compact,
        ..Style::default()
    };
    value(&mut buf, style, 0, v).expect("writing to a Vec cannot fail");
    buf
}

/// Writes a JSON string with jq's escapes: `\"`, `\\`, `\b\f\n\r\t`, other control characters
/// and DEL as `\u00XX`; everything else as UTF-8 (or `\uXXXX` with `ascii`). Invalid UTF-8
/// becomes U+FFFD, as jq reads it.
fn string(w: &mut impl Write, s: &[u8], ascii: bool) -> io::Result<()> {
    w.write_all(b"\"")?;
    let mut start = 0;
    let special = |c: u8| c < 0x20 || c == b'"' || c == b'\\' || c == 0x7f || (ascii && c >= 0x80);
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !special(c) {
            i += 1;
            continue;
        }
        if c >= 0x80 {
            break;
        }
        w.write_all(&s[start..i])?;
        match c {
            b'"' => w.write_all(b"\\\"")?,
            b'\\' => w.write_all(b"\\\\")?,
            b'\n' => w.write_all(b"\\n")?,
            b'\t' => w.write_all(b"\\t")?,
            b'\r' => w.write_all(b"\\r")?,
            0x08 => w.write_all(b"\\b")?,
            0x0c => w.write_all(b"\\f")?,
            c => write!(w, "\\u{c:04x}")?,
        }
        i += 1;
        start = i;
    }
    if i < s.len() {
        // ASCII output: escape the rest character by character.
        w.write_all(&s[start..i])?;
        for ch in String::from_utf8_lossy(&s[i..]).chars() {
            match ch {
                '"' => w.write_all(b"\\\"")?,
                '\\' => w.write_all(b"\\\\")?,
                '\n' => w.write_all(b"\\n")?,
                '\t' => w.write_all(b"\\t")?,
                '\r' => w.write_all(b"\\r")?,
                '\u{8}' => w.write_all(b"\\b")?,
                '\u{c}' => w.write_all(b"\\f")?,
                c if c.is_ascii() && !c.is_ascii_control() => w.write_all(&[c as u8])?,
                c => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        write!(w, "\\u{u:04x}")?;
                    }
                }
            }
        }
    } else {
        let rest = &s[start..];
        match std::str::from_utf8(rest) {
            Ok(_) => w.write_all(rest)?,
            Err(_) => w.write_all(String::from_utf8_lossy(rest).as_bytes())?,
        }
    }
    w.write_all(b"\"")
}

/// Writes a number as jq 1.7 does: integers in full (also beyond 2^53), other numbers in the
/// shortest form that reads back to the same double, laid out like jq's `jvp_dtoa_fmt`
/// (`1.0` → `1`, `1E2` → `100`, `1e17` → `1e+17`, `0.00001` → `1e-05`), a program's literal
/// untouched by arithmetic as jq 1.7 keeps it ([`decimal_literal`]); NaN as `null`,
/// infinities as ±`1.7976931348623157e+308`.
pub(crate) fn number(w: &mut impl Write, n: &Num) -> io::Result<()> {
    match n {
        Num::Int(i) => write!(w, "{i}"),
        Num::BigInt(i) => write!(w, "{i}"),
        Num::Float(f) => float(w, *f),
        Num::Dec(d) => match integer_literal(d) {
            Some(digits) => w.write_all(digits.as_bytes()),
            None => match decimal_literal(d) {
                Some(text) => w.write_all(text.as_bytes()),
                None => float(w, d.parse().unwrap_or(f64::NAN)),
            },
        },
    }
}

/// A number literal of the program (`1.000`, `1E1000`) as jq 1.7 prints it while no
/// arithmetic has touched it: decNumber's scientific string of the literal, which keeps its
/// digits (`1.000`, `100e-2` → `1.00`, `1E1000` → `1E+1000`, `1.5e3` → `1.5E+3`,
/// `5e-6` → `0.000005`). `None` when `d` is not a JSON number.
pub(crate) fn decimal_literal(d: &str) -> Option<String> {
    let (neg, rest) = match d.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, d),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int}{frac}");
    let digits = all.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let exp = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let n = i64::try_from(digits.len()).ok()?;
    let adjusted = exp + n - 1;
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if exp <= 0 && adjusted >= -6 {
        if exp == 0 {
            out.push_str(digits);
        } else {
            let point = n + exp;
            if point > 0 {
                let p = usize::try_from(point).ok()?;
                out.push_str(&digits[..p]);
                out.push('.');
                out.push_str(&digits[p..]);
            } else {
                out.push_str("0.");
                out.push_str(&"0".repeat(usize::try_from(-point).ok()?));
                out.push_str(digits);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if adjusted >= 0 { '+' } else { '-' });
        out.push_str(&adjusted.unsigned_abs().to_string());
    }
    Some(out)
}

/// A decimal literal that is a plain integer (`-?[0-9]+`), which jq 1.7 prints unchanged.
fn integer_literal(d: &str) -> Option<&str> {
    let digits = d.strip_prefix('-').unwrap_or(d);
    (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(d)
}

fn float(w: &mut impl Write, f: f64) -> io::Result<()> {
    if f.is_nan() {
        return w.write_all(b"null");
    }
    let f = if f.is_infinite() {
        f64::MAX.copysign(f)
    } else {
        f
    };
    w.write_all(format_float(f).as_bytes())
}

/// jq's layout of the shortest round-trip digits of `f` (finite).
pub(crate) fn format_float(f: f64) -> String {
    // `{:e}` yields the shortest round-trip digits: "-1.2345e-5", "0e0", "1e17".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // jq/dtoa's decpt: the value is 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    if digits == "0" {
        out.push('0');
    } else if decpt <= -4 || decpt > n + 15 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        let e = decpt - 1;
        out.push(if e < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        (0..-decpt).for_each(|_| out.push('0'));
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        (0..decpt - n).for_each(|_| out.push('0'));
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_print_like_decnumber() {
        for (literal, printed) in [
            ("1.000", "1.000"),
            ("100e-2", "1.00"),
            ("1E1000", "1E+1000"),
            ("-1E+1000", "-1E+1000"),
            ("1.5e3", "1.5E+3"),
            ("500000e-1", "50000.0"),
            ("99999999999999e1", "9.9999999999999E+14"),
            ("5e-6", "0.000005"),
            ("1e-7", "1E-7"),
            ("100e-7", "0.0000100"),
            (
                "0.12345678901234567890123456789",
                "0.12345678901234567890123456789",
            ),
            ("0.00", "0.00"),
            ("0e5", "0E+5"),
        ] {
            assert_eq!(
                decimal_literal(literal).as_deref(),
                Some(printed),
                "{literal}"
            );
        }
        assert_eq!(decimal_literal("nan"), None);
    }

    #[test]
    fn floats_print_like_jq() {
        let cases = [
            (1.0, "1"),
            (100.0, "100"),
            (-0.0, "-0"),
            (0.0, "0"),
            (2.5, "2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1000000000000000"),
            (1e16, "1e+16"),
            (1e17, "1e+17"),
            (1.5e17, "1.5e+17"),
            (123_456_789_012_345_680.0, "123456789012345680"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1e300, "1e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (3.0 / 1.0, "3"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float(f), want, "{f:e}");
        }
    }

    #[test]
    fn indents_of_any_depth() {
        for indent in [Indent::Spaces(7), Indent::Spaces(1), Indent::Tab] {
            for level in [0, 1, 9, 10, 63, 64, 200] {
                let style = Style {
                    indent,
                    ..Style::default()
                };
                let mut out = Vec::new();
                newline(&mut out, style, level).unwrap();
                let (c, n) = match indent {
                    Indent::Tab => ('\t', level),
                    Indent::Spaces(k) => (' ', level * usize::from(k)),
                    Indent::Compact => unreachable!(),
                };
                let want = format!("\n{}", c.to_string().repeat(n));
                assert_eq!(String::from_utf8(out).unwrap(), want, "{indent:?} {level}");
            }
        }
    }

    #[test]
    fn strings_escape_like_jq() {
        let mut out = Vec::new();
        string(&mut out, "a\"\\\n\t\u{1}\u{7f}é".as_bytes(), false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"\\\n\t\u0001\u007fé""#
        );
        let mut out = Vec::new();
        string(&mut out, "é😀".as_bytes(), true).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""\u00e9\ud83d\ude00""#);
    }
}
