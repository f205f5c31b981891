//! Where generated records go: Kafka in production, memory or nowhere in tests and benches.

use crate::Error;

/// Receives generated records, one generator thread per sink.
pub trait Sink: Send {
    /// Takes one record. A sink that cannot accept it yet waits (backpressure) rather than drop
    /// it; an error stops the run.
    fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), Error>;
}

/// Keeps every record in memory, in emission order.
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    /// `(key, payload)` pairs.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Sink for VecSink {
    fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), Error> {
        self.records.push((key.to_vec(), payload.to_vec()));
        Ok(())
    }
}

/// Counts records and bytes and discards them (benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    /// Records received.
    pub records: u64,
    /// Payload bytes received.
    pub bytes: u64,
}

impl Sink for CountingSink {
    fn send(&mut self, _key: &[u8], payload: &[u8]) -> Result<(), Error> {
        self.records += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }
}
