//! JSON form of stream events, shared by SSE (`data:`) and WebSocket (text frames).

use std::sync::Arc;

use busflow_core::VehiclePosition;
use serde::Serialize;

use crate::subscription::queue::{DensityCell, Outgoing, RemoveReason};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire<'a> {
    Snapshot { vehicles: &'a [Arc<VehiclePosition>], resumed: bool },
    Update { vehicle: &'a VehiclePosition },
    Remove { vehicle_id: &'a str, reason: RemoveReason },
    Density { resolution: u8, total: usize, cells: &'a [DensityCell] },
    Diff { removed: &'a [String], added: &'a [Arc<VehiclePosition>] },
    Error { error: &'a str, message: &'a str },
}

/// The event's JSON text. Updates are encoded once and shared between clients.
pub(crate) fn to_json(e: &Outgoing) -> Arc<str> {
    if let Outgoing::Update(u) = e {
        return u.json(|p| encode(&Wire::Update { vehicle: p }));
    }
    let w = match e {
        Outgoing::Snapshot { vehicles, resumed } => Wire::Snapshot { vehicles, resumed: *resumed },
        Outgoing::Update(u) => Wire::Update { vehicle: u.position() },
        Outgoing::Remove { vehicle_id, reason } => Wire::Remove { vehicle_id, reason: *reason },
        Outgoing::Density(f) => {
            Wire::Density { resolution: f.resolution, total: f.total, cells: &f.cells }
        }
        Outgoing::Diff { removed, added } => Wire::Diff { removed, added },
        Outgoing::Error { code, message } => Wire::Error { error: code, message },
    };
    Arc::from(encode(&w))
}

fn encode(w: &Wire<'_>) -> String {
    // Serializing these types cannot fail (no maps with non-string keys, no custom impls).
    serde_json::to_string(w).unwrap_or_else(|e| {
        format!(
            r#"{{"type":"error","error":"internal","message":"{}"}}"#,
            e.to_string().escape_default()
        )
    })
}

/// Records delivery metrics for a batch about to be written.
pub(crate) fn observe_sent(batch: &[Outgoing], bytes: usize, transport: &'static str) {
    let now = crate::live::now_ms();
    let h = metrics::histogram!("busflow_gateway_delivery_latency_seconds");
    // Age as a rider sees it: from the device's own fix (`ts`) to the moment its bytes are
    // handed to the socket.
    let age = metrics::histogram!("busflow_gateway_age_at_write_seconds", "transport" => transport);
    for e in batch {
        if let Outgoing::Update(p) = e {
            h.record((now - p.processed_ts).max(0) as f64 / 1000.0);
            age.record((now - p.ts).max(0) as f64 / 1000.0);
        }
    }
    metrics::counter!("busflow_gateway_events_sent_total", "transport" => transport)
        .increment(batch.len() as u64);
    metrics::counter!("busflow_gateway_bytes_sent_total", "transport" => transport)
        .increment(bytes as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::vp;
    use crate::subscription::queue::SharedUpdate;

    #[test]
    fn an_update_is_encoded_once_and_the_same_for_every_client() {
        let shared = SharedUpdate::new(Arc::new(vp("a", 1, -16.9, 145.7, Some("110"))));
        let (one, two) = (Outgoing::Update(shared.clone()), Outgoing::Update(shared.clone()));
        let (a, b) = (to_json(&one), to_json(&two));
        assert!(Arc::ptr_eq(&a, &b), "encoded twice");
        // Byte-identical to encoding the position on its own, per client, as before sharing.
        let fresh = encode(&Wire::Update { vehicle: shared.position() });
        assert_eq!(&*a, fresh.as_str());
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["vehicle"]["vehicle_id"].as_str()),
            (Some("update"), Some("a"))
        );
    }
}
