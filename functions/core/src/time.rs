//! Dates for people and protocols: Unix milliseconds to RFC 3339, through the `time` crate.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The last second RFC 3339 can write: its years have four digits (`date-fullyear = 4DIGIT`).
/// A later instant is written as this one, so every answer stays a valid RFC 3339 date of
/// fixed width (the catalog slices the date and the time out of it).
const LAST_RFC3339_SECOND: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// `YYYY-MM-DDTHH:MM:SSZ`, in UTC, milliseconds dropped.
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).map_or(LAST_RFC3339_SECOND, |s| s.min(LAST_RFC3339_SECOND));
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        // Unreachable: every second in 0..=LAST_RFC3339_SECOND is a valid timestamp and formats.
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_763_856_000_000), "2025-11-23T00:00:00Z");
    }

    #[test]
    fn instants_past_year_9999_stay_four_digit_years() {
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800_000), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
