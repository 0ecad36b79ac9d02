//! Sizes and times printed the way docker prints them, so records converted from podman, ctr and
//! nerdctl read like docker's own: `Size` "72.9MB" (go-units `HumanSize`: decimal units, 3
//! significant digits), `CreatedSince` "2 hours ago" (go-units `HumanDuration`), `CreatedAt`
//! "2026-11-28 06:34:53 +0000 UTC" (Go's `time.Time.String` in UTC).

/// Docker's `HumanSize`: decimal units, 3 significant digits, `%g` style (`65.5kB`, `721kB`,
/// `1.02GB`, `0B`).
///
/// ```
/// use imgkit_types::humanize::size;
/// assert_eq!(size(72_893_000), "72.9MB");
/// assert_eq!(size(65_550), "65.5kB");
/// assert_eq!(size(512), "512B");
/// ```
pub fn size(bytes: u64) -> String {
    size_with_precision(bytes, 3)
}

/// go-units `HumanSizeWithPrecision`: docker 20.10 prints `VirtualSize` with 4 digits
/// (`131.1kB`).
pub fn size_with_precision(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(value, precision.max(1)), UNITS[unit])
}

/// Go's `fmt.Sprintf("%.*g", p, v)` for `0 <= v < 1000` (what `HumanSize` feeds it), including
/// its `1e+03` when rounding reaches 1000.
fn go_g(v: f64, p: usize) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    // %g picks the exponent of the value rounded to p significant digits.
    let sci = format!("{v:.prec$e}", prec = p - 1);
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let p_i = i32::try_from(p).unwrap_or(i32::MAX);
    if exp < -4 || exp >= p_i {
        let (mantissa, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    let decimals = usize::try_from(p_i - 1 - exp).unwrap_or(0);
    trim_zeros(&format!("{v:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Parses sizes as ctr and nerdctl print them (containerd's `progress.Bytes`: `261.3 KiB`,
/// `1.2 MiB`, `0 B`) and docker's own (`72.9MB`). Returns bytes, rounded.
///
/// ```
/// assert_eq!(imgkit_types::humanize::parse_size("261.3 KiB"), Some(267_571));
/// assert_eq!(imgkit_types::humanize::parse_size("72.9MB"), Some(72_900_000));
/// ```
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "PiB" => 1024f64.powi(5),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        _ => return None,
    };
    Some((num * mult).round() as u64)
}

/// Docker's `CreatedSince`: go-units `HumanDuration(now - then) + " ago"`.
///
/// ```
/// assert_eq!(imgkit_types::humanize::since(7_200), "2 hours ago");
/// assert_eq!(imgkit_types::humanize::since(30), "30 seconds ago");
/// ```
pub fn since(elapsed_secs: u64) -> String {
    format!("{} ago", duration(elapsed_secs))
}

fn duration(secs: u64) -> String {
    let minutes = secs / 60;
    // Go rounds to the nearest hour here (d.Round(time.Hour)).
    let hours = (secs + 1800) / 3600;
    match () {
        () if secs < 1 => "Less than a second".to_owned(),
        () if secs == 1 => "1 second".to_owned(),
        () if secs < 60 => format!("{secs} seconds"),
        () if minutes == 1 => "About a minute".to_owned(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".to_owned(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// A unix time as docker's `CreatedAt` prints it in UTC: `2026-11-28 06:34:53 +0000 UTC`.
///
/// ```
/// assert_eq!(imgkit_types::humanize::created_at(1_795_854_111), "2026-11-28 08:21:51 +0000 UTC");
/// ```
pub fn created_at(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses an RFC 3339 UTC time (`2026-11-28T08:21:51Z`, fractions and offsets allowed) to unix
/// seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let s = text;
    let bytes = s.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_docker() {
        // (bytes, what docker 20.10 printed for them on this machine or what go-units prints)
        for (bytes, want) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (65_550, "65.5kB"),
            (131_072, "131kB"),
            (720_896, "721kB"),
            (524_288, "524kB"),
            (72_893_000, "72.9MB"),
            (1_020_000_000, "1.02GB"),
            (999_600, "1e+03kB"),
            (5_000_000_000_000, "5TB"),
        ] {
            assert_eq!(size(bytes), want, "{bytes}");
        }
        assert_eq!(size_with_precision(131_072, 4), "131.1kB");
        assert_eq!(size_with_precision(65_550, 4), "65.55kB");
    }

    #[test]
    fn parses_containerd_and_docker_sizes() {
        assert_eq!(parse_size("0 B"), Some(0));
        assert_eq!(parse_size("1.5 MiB"), Some(1_572_864));
        assert_eq!(parse_size("721kB"), Some(721_000));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("KiB"), None);
    }

    #[test]
    fn durations_match_go_units() {
        for (secs, want) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (15 * 86_400, "2 weeks"),
            (70 * 86_400, "2 months"),
            (800 * 86_400, "2 years"),
        ] {
            assert_eq!(duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn times_round_trip() {
        let t = parse_rfc3339("2026-11-28T08:21:51Z").unwrap();
        assert_eq!(created_at(t), "2026-11-28 08:21:51 +0000 UTC");
        assert_eq!(parse_rfc3339("2026-11-28T09:21:51.123+01:00"), Some(t));
        assert_eq!(created_at(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(created_at(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
