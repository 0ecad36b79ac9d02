//! Docker's ways of printing sizes and times (go-units `HumanSizeWithPrecision(…, 3)` and
//! `HumanDuration`, Go's `time.Time.String()` in UTC), so archive listings read like docker's.

/// `72.9MB`, `5.58kB`, `0B`: decimal units, three significant digits, as `docker image ls`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", g3(value), UNITS[unit])
}

/// Go's `%.3g` for 0 ≤ v < 1000.
fn g3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let exp = v.log10().floor() as i32;
    let decimals = (2 - exp).max(0) as usize;
    let text = format!("{v:.decimals$}");
    // Rounding may carry into a fourth digit (999.5 → 1000): Go switches to `1e+03` then.
    if text.parse::<f64>().is_ok_and(|r| r >= 1000.0) {
        return "1e+03".to_owned();
    }
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `2 hours`, `About a minute`, … as go-units `HumanDuration`.
pub fn duration(seconds: i64) -> String {
    let s = seconds;
    let minutes = s / 60;
    let hours = s / 3600;
    if s < 1 {
        "Less than a second".to_owned()
    } else if s == 1 {
        "1 second".to_owned()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".to_owned()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// Parses RFC 3339 (`2026-11-28T06:34:53.123Z`, `…+02:00`) to unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset)
}

/// Unix seconds as Go prints a UTC time: `2026-11-28 06:34:53 +0000 UTC`.
pub fn docker_time(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Unix seconds as RFC 3339 UTC: `2026-11-28T06:34:53Z`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        for (n, want) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (5_583, "5.58kB"),
            (72_900_000, "72.9MB"),
            (72_949_999, "72.9MB"),
            (1_234_567_890, "1.23GB"),
            (10_000_000, "10MB"),
            (123_456, "123kB"),
        ] {
            assert_eq!(size(n), want, "{n}");
        }
    }

    #[test]
    fn times_like_go() {
        let t = parse_rfc3339("2026-11-28T06:34:53.123456789Z").unwrap();
        assert_eq!(docker_time(t), "2026-11-28 06:34:53 +0000 UTC");
        assert_eq!(parse_rfc3339("2026-11-28T08:34:53+02:00"), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339(t), "2026-11-28T06:34:53Z");
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(90), "About a minute");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(duration(3 * 86400), "3 days");
        assert_eq!(duration(800 * 86400), "2 years");
    }
}
