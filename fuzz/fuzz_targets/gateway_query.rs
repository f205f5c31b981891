//! The gateway's stream query-string parser (`bbox`, `routes`, `min_interval_ms`) on arbitrary
//! text: what `/v1/stream` and `/v1/ws` read from the URL before anything else.
#![no_main]

use busflow_fuzz::check_gateway_answer;
use busflow_gateway::{GatewayConfig, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The HTTP layer hands the parser a `&str` (hyper refuses non-UTF-8 URIs before), and `None`
    // when the URL has no `?` at all.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = GatewayConfig::default();
    let raw = if text == "<none>" { None } else { Some(text) };
    check_gateway_answer(parse::stream_query(raw, &cfg), &cfg);
});
