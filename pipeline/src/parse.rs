//! Bytes to [`RawPosition`], or the reason they cannot be one.

use busflow_core::{RawPosition, RejectReason, SCHEMA_VERSION};
use serde_json::error::Category;

/// Longest vehicle id accepted; ids are Kafka keys and metric-free, but state is keyed on them.
const MAX_VEHICLE_ID_LEN: usize = 128;

/// Why a message was refused, before it is wrapped into a [`busflow_core::Rejected`].
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// Human-readable explanation.
    pub detail: String,
    /// The vehicle id, when it could be read.
    pub vehicle_id: Option<String>,
}

impl Refusal {
    pub(crate) fn new(
        reason: RejectReason,
        detail: impl Into<String>,
        vehicle: Option<&str>,
    ) -> Self {
        Refusal { reason, detail: detail.into(), vehicle_id: vehicle.map(str::to_string) }
    }
}

/// Parses one raw message. `key` is the Kafka key; when present it must equal `vehicle_id`.
pub fn parse(payload: &[u8], key: Option<&[u8]>, max_bytes: usize) -> Result<RawPosition, Refusal> {
    let key_str = key.and_then(|k| std::str::from_utf8(k).ok());
    if payload.len() > max_bytes {
        return Err(Refusal::new(
            RejectReason::Oversized,
            format!("{} bytes, limit {max_bytes}", payload.len()),
            key_str,
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Refusal::new(RejectReason::NotUtf8, format!("invalid UTF-8: {e}"), key_str))?;
    let raw: RawPosition = serde_json::from_str(text).map_err(|e| classify(text, &e, key_str))?;
    if raw.v != SCHEMA_VERSION {
        return Err(Refusal::new(
            RejectReason::UnsupportedVersion,
            format!("contract version {} (this build reads {SCHEMA_VERSION})", raw.v),
            Some(&raw.vehicle_id),
        ));
    }
    if raw.vehicle_id.trim().is_empty() || raw.vehicle_id.len() > MAX_VEHICLE_ID_LEN {
        return Err(Refusal::new(
            RejectReason::InvalidField,
            format!("vehicle_id must be 1..={MAX_VEHICLE_ID_LEN} non-blank characters"),
            key_str,
        ));
    }
    if let Some(k) = key
        && k != raw.vehicle_id.as_bytes()
    {
        return Err(Refusal::new(
            RejectReason::KeyMismatch,
            format!(
                "key {:?} differs from vehicle_id {:?}",
                String::from_utf8_lossy(k),
                raw.vehicle_id
            ),
            Some(&raw.vehicle_id),
        ));
    }
    Ok(raw)
}

/// Maps a serde error to a reason. Only reached for refused messages, so it may re-parse.
fn classify(text: &str, e: &serde_json::Error, key: Option<&str>) -> Refusal {
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let vehicle = key
        .map(str::to_string)
        .or_else(|| value.as_ref()?.get("vehicle_id")?.as_str().map(str::to_string));
    // A record of another contract version may have another shape (or a `v` of another
    // type): name the version, not whichever field this version misses.
    if let Some(v) = value.as_ref().and_then(|x| x.get("v"))
        && v.as_u64() != Some(u64::from(SCHEMA_VERSION))
    {
        return Refusal {
            reason: RejectReason::UnsupportedVersion,
            detail: format!("contract version {v} (this build reads {SCHEMA_VERSION}): {e}"),
            vehicle_id: vehicle,
        };
    }
    let reason = match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => RejectReason::MalformedJson,
        // Valid JSON of the wrong shape: a top-level non-object is malformed, a bad field is not.
        Category::Data if !text.trim_start().starts_with('{') => RejectReason::MalformedJson,
        Category::Data if e.to_string().starts_with("missing field") => RejectReason::MissingField,
        Category::Data => RejectReason::InvalidField,
    };
    Refusal { reason, detail: e.to_string(), vehicle_id: vehicle }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(payload: &[u8], key: Option<&[u8]>) -> RejectReason {
        parse(payload, key, 1024).unwrap_err().reason
    }

    #[test]
    fn accepts_a_minimal_report_with_matching_key() {
        let raw =
            parse(br#"{"vehicle_id":"b1","ts":5,"lat":-16.9,"lon":145.7}"#, Some(b"b1"), 1024)
                .unwrap();
        assert_eq!(raw.vehicle_id, "b1");
        assert!(parse(br#"{"vehicle_id":"b1","ts":5,"lat":1,"lon":2}"#, None, 1024).is_ok());
    }

    #[test]
    fn each_parse_reason() {
        assert_eq!(reason(&[0xff, 0xfe, b'{'], None), RejectReason::NotUtf8);
        assert_eq!(reason(b"{\"vehicle_id\":", None), RejectReason::MalformedJson);
        assert_eq!(reason(b"[1,2,3]", None), RejectReason::MalformedJson);
        assert_eq!(reason(b"\"text\"", None), RejectReason::MalformedJson);
        assert_eq!(
            reason(br#"{"vehicle_id":"b1","lat":1.0,"lon":2.0}"#, None),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(br#"{"vehicle_id":"b1","ts":"soon","lat":1.0,"lon":2.0}"#, None),
            RejectReason::InvalidField
        );
        assert_eq!(
            reason(br#"{"vehicle_id":"","ts":1,"lat":1.0,"lon":2.0}"#, None),
            RejectReason::InvalidField
        );
        assert_eq!(
            reason(br#"{"v":7,"vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0}"#, None),
            RejectReason::UnsupportedVersion
        );
        // Another version's record shape, or a version of another type, is still a version.
        assert_eq!(
            reason(br#"{"v":2,"vehicle_id":"b1","ts":1,"position":[1.0,2.0]}"#, None),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(
            reason(br#"{"v":"1","vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0}"#, None),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(reason(&vec![b' '; 2000], None), RejectReason::Oversized);
        assert_eq!(
            reason(br#"{"vehicle_id":"b1","ts":1,"lat":1.0,"lon":2.0}"#, Some(b"b2")),
            RejectReason::KeyMismatch
        );
    }

    #[test]
    fn refusals_carry_the_vehicle_when_readable() {
        let r = parse(br#"{"vehicle_id":"b9","lat":1.0,"lon":2.0}"#, None, 1024).unwrap_err();
        assert_eq!(r.vehicle_id.as_deref(), Some("b9"));
        let r = parse(b"garbage", Some(b"k7"), 1024).unwrap_err();
        assert_eq!(r.vehicle_id.as_deref(), Some("k7"));
    }
}
