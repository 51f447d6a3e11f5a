//! Civil time from the system clock, without a date-time dependency.

/// (year, month, day, hour, minute, second) in UTC.
pub fn utc_now() -> (i64, u32, u32, u32, u32, u32) {
    civil(crate::ids::now_ms())
}

fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// "2026-11-25T01:30:00Z" (RFC 3339, to the second).
pub fn utc_rfc3339() -> String {
    utc_rfc3339_at(crate::ids::now_ms())
}

/// The same, of `ms` since the epoch.
pub fn utc_rfc3339_at(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Milliseconds since the epoch of an RFC 3339 UTC time, "2026-11-28T03:30:00Z" (a
/// fraction of a second allowed); None for anything else.
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let t = text
        .trim()
        .strip_suffix('Z')
        .or_else(|| text.trim().strip_suffix('z'))?;
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.split(':');
    let (hh, mi, ss): (i64, i64, i64) = (
        h.next()?.parse().ok()?,
        h.next()?.parse().ok()?,
        h.next()?.parse().ok()?,
    );
    if d.next().is_some()
        || h.next().is_some()
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || hh > 23
        || mi > 59
        || ss > 60
    {
        return None;
    }
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(3).collect();
        if !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<3}").parse().ok()?
    };
    // Howard Hinnant's days-from-civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mi * 60 + ss) * 1000) + ms)
}

/// "20261125-013000": sorts by time, safe in a file name.
pub fn utc_compact() -> String {
    let (y, mo, d, h, mi, s) = utc_now();
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_reads_back() {
        assert_eq!(super::parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        let now = crate::ids::now_ms() / 1000 * 1000;
        assert_eq!(
            super::parse_rfc3339_utc(&super::utc_rfc3339_at(now)),
            Some(now)
        );
        assert_eq!(
            super::parse_rfc3339_utc("2026-11-28T03:30:00.5Z"),
            Some(1_795_836_600_500)
        );
        assert_eq!(
            super::parse_rfc3339_utc("2000-03-01T00:00:00Z"),
            Some(951_868_800_000)
        );
        for bad in [
            "2026-11-28T03:30:00",
            "2026-13-01T00:00:00Z",
            "soon",
            "2026-11-28T03:30Z",
        ] {
            assert_eq!(super::parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn plausible() {
        let (y, mo, d, h, mi, s) = super::utc_now();
        assert!((2025..2100).contains(&y) && (1..=12).contains(&mo) && (1..=31).contains(&d));
        assert!(h < 24 && mi < 60 && s < 60);
        assert_eq!(super::utc_compact().len(), 15);
    }
}
