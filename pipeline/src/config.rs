use std::time::Duration;

/// Everything the pipeline needs besides the network, the brokers and the topics.
///
/// `Default` gives the values `busflow pipeline` uses when no flag is set.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Worker threads in this process (timely `-w`).
    pub workers: usize,
    /// Processes in the timely cluster (timely `-n`); 1 runs everything here.
    pub processes: usize,
    /// This process's index in the cluster (timely `-p`).
    pub process_index: usize,
    /// Text file with one `host:port` per process (timely `-h`); `None` uses localhost:2101+i.
    pub hostfile: Option<std::path::PathBuf>,
    /// Consumer group whose committed offsets on the raw topic mark what is done.
    pub group_id: String,
    /// Largest raw message accepted, bytes.
    pub max_message_bytes: usize,
    /// How far in the future a fix may be (device clock skew).
    pub max_future: Duration,
    /// How old a fix may be when it arrives.
    pub max_age: Duration,
    /// Fastest plausible ground speed between consecutive fixes, m/s.
    pub max_speed_mps: f64,
    /// GPS noise allowance, metres: jumps up to this are never called implausible, and movement
    /// within it does not count as moving.
    pub gps_noise_m: f64,
    /// Beyond this distance from every candidate shape, the vehicle is off route, metres.
    pub max_off_route_m: f64,
    /// A vehicle that stays within `gps_noise_m` for this long is `stopped`.
    pub stopped_after: Duration,
    /// Per-vehicle state of a vehicle silent for this long is dropped.
    pub state_ttl: Duration,
    /// H3 resolution of `h3_cell`.
    pub h3_resolution: u8,
    /// How long a processing epoch collects input before it is closed.
    pub epoch: Duration,
    /// Upper bound on raw messages per epoch per worker.
    pub max_epoch_messages: usize,
    /// Epochs in flight (produced but not yet acknowledged) before a worker stops reading.
    pub max_epochs_in_flight: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            processes: 1,
            process_index: 0,
            hostfile: None,
            group_id: "busflow-pipeline".into(),
            max_message_bytes: 16 * 1024,
            max_future: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            max_speed_mps: 40.0,
            gps_noise_m: 25.0,
            max_off_route_m: 60.0,
            stopped_after: Duration::from_secs(30),
            state_ttl: Duration::from_secs(1800),
            h3_resolution: busflow_core::h3::DEFAULT_RESOLUTION,
            epoch: Duration::from_millis(50),
            max_epoch_messages: 5000,
            max_epochs_in_flight: 20,
        }
    }
}
