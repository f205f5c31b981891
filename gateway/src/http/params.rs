//! Query-string parsing with strict validation: unknown or repeated parameters are errors, so a
//! typo never silently widens a subscription.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::viewport::{Bbox, Filter};

/// Parameters accepted everywhere (the token, for clients such as EventSource that cannot set
/// headers).
const ALWAYS_ALLOWED: &[&str] = &["access_token"];

/// Parsed query parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `raw`, refusing anything not in `allowed`.
    pub(crate) fn parse(
        raw: Option<&str>,
        allowed: &[&str],
        max_len: usize,
    ) -> Result<Params, ApiError> {
        let raw = raw.unwrap_or("");
        if raw.len() > max_len {
            return Err(ApiError::bad_request(
                "request_too_large",
                format!("query string is {} bytes; the limit is {max_len}", raw.len()),
            ));
        }
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !allowed.contains(&k.as_ref()) && !ALWAYS_ALLOWED.contains(&k.as_ref()) {
                let mut names: Vec<&str> = allowed.to_vec();
                names.sort_unstable();
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter {k:?}; allowed: {}", names.join(", ")),
                ));
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::bad_request(
                    "duplicate_parameter",
                    format!("query parameter {k:?} given more than once"),
                ));
            }
        }
        Ok(Params(map))
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// Optional bbox; `max_span` limits its size.
    pub(crate) fn bbox(&self, max_span: Option<f64>) -> Result<Option<Bbox>, ApiError> {
        let Some(s) = self.get("bbox") else { return Ok(None) };
        let b = Bbox::parse(s).map_err(|e| ApiError::bad_request("invalid_bbox", e.to_string()))?;
        match max_span {
            Some(m) => b
                .check_span(m)
                .map(Some)
                .map_err(|e| ApiError::bad_request("bbox_too_large", e.to_string())),
            None => Ok(Some(b)),
        }
    }

    /// Optional `routes=a,b`.
    pub(crate) fn routes(&self, max: usize) -> Result<Option<HashSet<String>>, ApiError> {
        let Some(s) = self.get("routes") else { return Ok(None) };
        parse_routes(s.split(','), max).map(Some)
    }

    /// Optional non-negative integer up to `max`.
    pub(crate) fn uint(&self, k: &str, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(s) = self.get(k) else { return Ok(None) };
        match s.parse::<u64>() {
            Ok(v) if v <= max => Ok(Some(v)),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("{k} must be an integer from 0 to {max}; got {s:?}"),
            )),
        }
    }
}

/// Validates a list of route ids.
pub(crate) fn parse_routes<'a>(
    items: impl Iterator<Item = &'a str>,
    max: usize,
) -> Result<HashSet<String>, ApiError> {
    let mut set = HashSet::new();
    for r in items {
        let r = r.trim();
        if r.is_empty() || r.len() > 128 {
            return Err(ApiError::bad_request(
                "invalid_routes",
                "routes must be a comma-separated list of non-empty route ids (at most 128 bytes each)",
            ));
        }
        set.insert(r.to_string());
        if set.len() > max {
            return Err(ApiError::bad_request(
                "too_many_routes",
                format!("at most {max} routes per filter"),
            ));
        }
    }
    if set.is_empty() {
        return Err(ApiError::bad_request("invalid_routes", "routes is empty"));
    }
    Ok(set)
}

/// Longest `min_interval_ms`.
pub(crate) const MAX_MIN_INTERVAL_MS: u64 = 60_000;

/// The parameters of a stream: `bbox` (required), `routes`, `min_interval_ms`.
pub fn stream_params(
    raw: Option<&str>,
    cfg: &GatewayConfig,
) -> Result<(Filter, Duration), ApiError> {
    let p = Params::parse(raw, &["bbox", "routes", "min_interval_ms"], cfg.max_query_len)?;
    let bbox = p.bbox(Some(cfg.max_bbox_span_deg))?.ok_or_else(|| {
        ApiError::bad_request("missing_parameter", "bbox=west,south,east,north is required")
    })?;
    let routes = p.routes(cfg.max_routes)?;
    let min_interval = p.uint("min_interval_ms", MAX_MIN_INTERVAL_MS)?.unwrap_or(0);
    Ok((Filter { bbox, routes }, Duration::from_millis(min_interval)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_params_validate() {
        let cfg = GatewayConfig::default();
        let (f, iv) = stream_params(
            Some("bbox=145.7,-17,145.8,-16.9&routes=110,111&min_interval_ms=250"),
            &cfg,
        )
        .unwrap();
        assert_eq!(f.routes.unwrap().len(), 2);
        assert_eq!(iv, Duration::from_millis(250));
        let code = |q: &str| stream_params(Some(q), &cfg).unwrap_err().code;
        assert_eq!(code(""), "missing_parameter");
        assert_eq!(code("bbox=1,2,3"), "invalid_bbox");
        assert_eq!(code("bbox=145.8,-17,145.7,-16.9"), "invalid_bbox");
        assert_eq!(code("bbox=140,-20,150,-10"), "bbox_too_large");
        assert_eq!(code("bbox=145.7,-17,145.8,-16.9&zoom=3"), "unknown_parameter");
        assert_eq!(
            code("bbox=145.7,-17,145.8,-16.9&bbox=145.7,-17,145.8,-16.9"),
            "duplicate_parameter"
        );
        assert_eq!(code("bbox=145.7,-17,145.8,-16.9&routes=a,,b"), "invalid_routes");
        assert_eq!(code("bbox=145.7,-17,145.8,-16.9&min_interval_ms=-1"), "invalid_parameter");
        let many = (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(code(&format!("bbox=145.7,-17,145.8,-16.9&routes={many}")), "too_many_routes");
        assert_eq!(
            code(&format!("bbox=145.7,-17,145.8,-16.9&routes={}", "a".repeat(5000))),
            "request_too_large"
        );
    }
}
