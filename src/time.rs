//! Wall-clock time as Unix seconds, and its human rendering for pages and logs.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-11-25 22:52 UTC`, from Unix seconds.
pub fn display(ts: i64) -> String {
    let (y, m, d, hh, mm, _) = civil(ts);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// `2026-11-26 07:52 JST`: Unix seconds in `zone`, with the zone's abbreviation (or its
/// offset from UTC where the zone has no letters, e.g. `UTC+04`).
pub fn display_in(ts: i64, zone: chrono_tz::Tz) -> String {
    use chrono::TimeZone;
    let Some(t) = zone.timestamp_opt(ts, 0).single() else {
        return display(ts);
    };
    let abbr = t.format("%Z").to_string();
    let abbr = if abbr.starts_with(['+', '-']) {
        format!("UTC{abbr}")
    } else {
        abbr
    };
    format!("{} {abbr}", t.format("%Y-%m-%d %H:%M"))
}

/// RFC 3339 (`2026-11-25T22:52:04Z`), from Unix seconds.
pub fn rfc3339(ts: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ts);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Splits Unix seconds into a proleptic Gregorian date and time (Howard Hinnant's algorithm).
fn civil(ts: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
    (
        y,
        to_u32(m),
        to_u32(d),
        to_u32(secs / 3_600),
        to_u32(secs % 3_600 / 60),
        to_u32(secs % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_647_124), "2026-11-25T22:52:04Z");
        assert_eq!(display(951_782_400), "2000-02-29 00:00 UTC");
        let t = 1_795_647_124;
        assert_eq!(display_in(t, chrono_tz::Tz::UTC), "2026-11-25 22:52 UTC");
        assert_eq!(
            display_in(t, chrono_tz::Tz::Asia__Tokyo),
            "2026-11-26 07:52 JST"
        );
        assert_eq!(
            display_in(t, chrono_tz::Tz::Asia__Dubai),
            "2026-11-26 02:52 UTC+04"
        );
    }
}
