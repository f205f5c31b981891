//! Limits on open streams, in total and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open streams and refuses new ones past the limits with 429.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_ip: usize,
    retry_after_s: u64,
}

/// Held for the life of a stream; releases its slot when dropped.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: Option<IpAddr>,
    transport: &'static str,
}

impl ConnLimiter {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, retry_after_s: u64) -> Self {
        ConnLimiter { counts: Mutex::default(), max_total, max_per_ip, retry_after_s }
    }

    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        transport: &'static str,
    ) -> Result<ConnPermit, ApiError> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.max_total {
            metrics::counter!("busflow_gateway_rejected_connections_total", "reason" => "total")
                .increment(1);
            return Err(ApiError::too_many(
                format!("the gateway holds its maximum of {} streams", self.max_total),
                self.retry_after_s,
            ));
        }
        if let Some(ip) = ip {
            let n = c.per_ip.entry(ip).or_default();
            if *n >= self.max_per_ip {
                metrics::counter!("busflow_gateway_rejected_connections_total", "reason" => "per_ip")
                    .increment(1);
                return Err(ApiError::too_many(
                    format!("at most {} streams per client address", self.max_per_ip),
                    self.retry_after_s,
                ));
            }
            *n += 1;
        }
        c.total += 1;
        metrics::gauge!("busflow_gateway_clients", "transport" => transport).increment(1.0);
        Ok(ConnPermit { limiter: self.clone(), ip, transport })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = c.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
        metrics::gauge!("busflow_gateway_clients", "transport" => self.transport).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip_and_releases() {
        let l = Arc::new(ConnLimiter::new(3, 2, 5));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.acquire(Some(a), "sse").unwrap();
        let _p2 = l.acquire(Some(a), "sse").unwrap();
        assert_eq!(l.acquire(Some(a), "sse").unwrap_err().retry_after, Some(5));
        let _p3 = l.acquire(Some(b), "ws").unwrap();
        assert!(l.acquire(Some(b), "ws").is_err(), "total limit");
        drop(p1);
        assert!(l.acquire(Some(a), "sse").is_ok());
    }
}
