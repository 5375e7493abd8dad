//! Display dates for the catalog (the RFC 3339 form comes from `wharf::time`).

pub use wharf::time::rfc3339;

/// `YYYY-MM-DD HH:MM UTC`, for people.
pub fn display(ms: u64) -> String {
    let s = rfc3339(ms);
    format!("{} {} UTC", &s[..10], &s[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_for_people() {
        assert_eq!(display(1_700_000_000_123), "2023-11-14 22:13 UTC");
    }
}
