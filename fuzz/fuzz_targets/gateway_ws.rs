//! The gateway's WebSocket client-message parser (`{"type":"subscribe",...}`) on arbitrary
//! text: every text frame a client sends after the upgrade goes through it.
#![no_main]

use busflow_fuzz::check_gateway_answer;
use busflow_gateway::{GatewayConfig, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the protocol (tungstenite refuses others).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = GatewayConfig::default();
    check_gateway_answer(parse::ws_message(text, &cfg), &cfg);
});
