use busflow_core::geometry::LocalFrame;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;

use crate::config::{LoadConfig, ViewportMix};

/// A viewer's subscription: a bounding box and an optional route filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Viewport {
    /// `[west, south, east, north]`.
    pub bbox: [f64; 4],
    /// Route ids, or none for every route.
    pub routes: Option<Vec<String>>,
}

impl Viewport {
    /// Draws a viewport of `config.viewport_km` around a point chosen by the mix, clamped to the
    /// area, and a route filter for `config.filtered_share` of viewers.
    pub fn draw<R: Rng>(rng: &mut R, config: &LoadConfig) -> Viewport {
        let [w, s, e, n] = config.area;
        let uniform = |rng: &mut R| (rng.random_range(s..=n), rng.random_range(w..=e));
        let (lat, lon) = match config.mix {
            ViewportMix::Random => uniform(rng),
            ViewportMix::Hotspot { share, center } => {
                if rng.random_bool(share) {
                    // Within about one viewport of the hot spot.
                    let (dlat, dlon) = LocalFrame::new(center.0, center.1)
                        .degrees_for(config.viewport_km * 1000.0);
                    (
                        center.0 + rng.random_range(-dlat..=dlat),
                        center.1 + rng.random_range(-dlon..=dlon),
                    )
                } else {
                    uniform(rng)
                }
            }
        };
        let (hlat, hlon) = LocalFrame::new(lat, lon).degrees_for(config.viewport_km * 500.0);
        let bbox = [
            round5((lon - hlon).max(-180.0)),
            round5((lat - hlat).max(-90.0)),
            round5((lon + hlon).min(180.0)),
            round5((lat + hlat).min(90.0)),
        ];
        let routes =
            (config.filtered_share > 0.0 && rng.random_bool(config.filtered_share)).then(|| {
                let k = config.routes_per_filter.clamp(1, config.routes.len().max(1));
                config.routes.choose_multiple(rng, k).cloned().collect()
            });
        Viewport { bbox, routes }
    }

    /// Query string for `/v1/stream`.
    pub fn query(&self) -> String {
        let [w, s, e, n] = self.bbox;
        let mut q = format!("bbox={w},{s},{e},{n}");
        if let Some(r) = &self.routes {
            q.push_str("&routes=");
            q.push_str(&r.join(","));
        }
        q
    }

    /// WebSocket subscribe message.
    pub fn subscribe_message(&self) -> String {
        let mut v = serde_json::json!({"type": "subscribe", "bbox": self.bbox});
        if let Some(r) = &self.routes {
            v["routes"] = serde_json::json!(r);
        }
        v.to_string()
    }
}

fn round5(x: f64) -> f64 {
    (x * 1e5).round() / 1e5
}

/// Whether a delivered vehicle belongs to the viewport: its display point (snapped, else
/// reported) inside the box, edges included, and its route in the filter.
pub fn inside(v: &Viewport, point: (f64, f64), route_id: Option<&str>) -> bool {
    let (lat, lon) = point;
    let [w, s, e, n] = v.bbox;
    let in_box = lat >= s && lat <= n && lon >= w && lon <= e;
    let in_filter = match &v.routes {
        None => true,
        Some(r) => route_id.is_some_and(|id| r.iter().any(|x| x == id)),
    };
    in_box && in_filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn viewports_have_the_asked_size_and_stay_in_range() {
        let cfg = LoadConfig { viewport_km: 2.0, ..LoadConfig::default() };
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let v = Viewport::draw(&mut rng, &cfg);
            let [w, s, e, n] = v.bbox;
            assert!(w < e && s < n);
            let h = busflow_core::geometry::haversine_m(s, w, n, w);
            assert!((h - 2000.0).abs() < 10.0, "height {h}");
            assert!(v.routes.is_none());
        }
    }

    #[test]
    fn hotspot_mix_concentrates_viewers() {
        let center = (-16.92, 145.77);
        let cfg = LoadConfig {
            mix: ViewportMix::Hotspot { share: 1.0, center },
            ..LoadConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let v = Viewport::draw(&mut rng, &cfg);
            let (clat, clon) = ((v.bbox[1] + v.bbox[3]) / 2.0, (v.bbox[0] + v.bbox[2]) / 2.0);
            assert!(busflow_core::geometry::haversine_m(clat, clon, center.0, center.1) < 4300.0);
        }
    }

    #[test]
    fn filters_are_drawn_from_known_routes() {
        let cfg = LoadConfig {
            routes: vec!["a".into(), "b".into(), "c".into()],
            filtered_share: 1.0,
            routes_per_filter: 2,
            ..LoadConfig::default()
        };
        let v = Viewport::draw(&mut StdRng::seed_from_u64(3), &cfg);
        let r = v.routes.clone().unwrap();
        assert_eq!(r.len(), 2);
        assert!(v.query().contains("&routes="));
        assert!(v.subscribe_message().contains("\"routes\""));
    }

    #[test]
    fn inside_checks_box_edges_and_filter() {
        let v = Viewport { bbox: [145.0, -17.0, 146.0, -16.0], routes: Some(vec!["r1".into()]) };
        assert!(inside(&v, (-17.0, 145.0), Some("r1")));
        assert!(!inside(&v, (-17.0001, 145.5), Some("r1")));
        assert!(!inside(&v, (-16.5, 145.5), Some("r2")));
        assert!(!inside(&v, (-16.5, 145.5), None));
        let open = Viewport { routes: None, ..v };
        assert!(inside(&open, (-16.5, 145.5), None));
    }
}
