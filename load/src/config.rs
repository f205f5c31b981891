use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// How viewers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /v1/stream` (Server-Sent Events).
    Sse,
    /// `GET /v1/ws` (WebSocket), with optional viewport changes in place.
    Ws,
}

impl Transport {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

/// Where viewports are centred.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ViewportMix {
    /// Uniformly over the area.
    Random,
    /// A share of viewers around one hot spot (a city centre), the rest uniform.
    Hotspot {
        /// Share of viewers near the hot spot, 0..=1.
        share: f64,
        /// `(lat, lon)` of the hot spot.
        center: (f64, f64),
    },
}

/// What a load run does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Gateway address.
    pub gateway: SocketAddr,
    /// Concurrent viewers.
    pub clients: usize,
    /// SSE or WebSocket.
    pub transport: Transport,
    /// Viewport width and height, kilometres.
    pub viewport_km: f64,
    /// Where viewports go.
    pub mix: ViewportMix,
    /// Area viewports are drawn from, `[west, south, east, north]` (normally the network's).
    pub area: [f64; 4],
    /// Route ids filters are drawn from.
    pub routes: Vec<String>,
    /// Share of viewers with a route filter, 0..=1.
    pub filtered_share: f64,
    /// Routes in each filter.
    pub routes_per_filter: usize,
    /// WebSocket viewers move their viewport this often.
    pub change_every: Option<Duration>,
    /// Time over which viewers connect (evenly spread).
    pub ramp: Duration,
    /// How long to run after the ramp.
    pub duration: Duration,
    /// Seed for viewports and filters.
    pub seed: u64,
    /// Bearer token, when the gateway requires one.
    pub auth_token: Option<String>,
    /// Live progress line on stderr.
    pub progress: bool,
    /// Reconnect a viewer whose stream ends or cannot connect (backing off up to 2 s; SSE sends
    /// `Last-Event-ID`), as a browser's EventSource does; counted per viewer.
    pub reconnect: bool,
    /// At the end, compare what each viewer holds with the gateway's `/v1/vehicles` for its
    /// viewport: vehicles it holds that the gateway does not have (ghosts) and the reverse.
    /// Meaningful when the input has stopped (the state no longer moves).
    pub verify_state: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            gateway: SocketAddr::from(([127, 0, 0, 1], 8080)),
            clients: 100,
            transport: Transport::Sse,
            viewport_km: 3.0,
            mix: ViewportMix::Random,
            area: [145.6, -17.1, 145.9, -16.7],
            routes: Vec::new(),
            filtered_share: 0.0,
            routes_per_filter: 2,
            change_every: None,
            ramp: Duration::from_secs(5),
            duration: Duration::from_secs(30),
            seed: 1,
            auth_token: None,
            progress: true,
            reconnect: false,
            verify_state: false,
        }
    }
}

impl LoadConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if !(self.viewport_km > 0.0 && self.viewport_km <= 500.0) {
            return bad(format!("--viewport-km must be in (0, 500], got {}", self.viewport_km));
        }
        if !(0.0..=1.0).contains(&self.filtered_share) {
            return bad(format!("filtered share must be in 0..=1, got {}", self.filtered_share));
        }
        if let ViewportMix::Hotspot { share, .. } = self.mix
            && !(0.0..=1.0).contains(&share)
        {
            return bad(format!("hot-spot share must be in 0..=1, got {share}"));
        }
        let [w, s, e, n] = self.area;
        if !(w < e && s < n) {
            return bad(format!("area {:?} is empty or inverted", self.area));
        }
        if self.change_every.is_some() && self.transport != Transport::Ws {
            return bad("viewport changes need --transport ws".into());
        }
        if self.filtered_share > 0.0 && self.routes.is_empty() {
            return bad("route filters asked but no routes known".into());
        }
        Ok(())
    }
}
