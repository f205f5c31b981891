//! Durations on the command line and in config: `90s`, `5m`, `24h`, `1h30m`, `250ms`.

use std::time::Duration;

use crate::Error;

/// Parses a human duration such as `90s`, `5m`, `24h` or `1h30m`. A bare number is refused
/// because its unit would be a guess.
pub fn parse_duration(input: &str) -> Result<Duration, Error> {
    let s = input.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Duration { input: input.into(), detail: "a unit is required".into() });
    }
    humantime::parse_duration(s)
        .map_err(|e| Error::Duration { input: input.into(), detail: e.to_string() })
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn refuses_bare_numbers_and_junk() {
        assert!(parse_duration("90").unwrap_err().to_string().contains("unit"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn format_round_trips() {
        let d = Duration::from_secs(5_400);
        assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }
}
