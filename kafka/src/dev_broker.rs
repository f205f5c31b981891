use std::sync::mpsc;
use std::thread::JoinHandle;

use busflow_core::Topics;
use rdkafka::mocking::MockCluster;

use crate::Error;

/// librdkafka's in-process mock cluster: a zero-setup broker for development and tests.
///
/// It speaks the Kafka protocol on a loopback port, so other processes on this machine can use
/// its [`bootstrap_servers`](DevBroker::bootstrap_servers). Limits: data lives in memory only
/// and is gone when it stops; no retention, no compaction (the latest-state topic keeps every
/// record); the Admin API cannot create topics on it, so it creates busflow's topics itself.
///
/// The cluster is not `Send`, so it lives on a thread of its own; dropping the handle stops it.
#[derive(Debug)]
pub struct DevBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DevBroker {
    /// Starts a one-broker mock cluster with busflow's topics, `partitions` each.
    pub fn start(topics: &Topics, partitions: i32) -> Result<DevBroker, Error> {
        let names: Vec<String> = topics.specs().iter().map(|s| s.name.to_string()).collect();
        Self::start_with(names, partitions)
    }

    /// Starts a one-broker mock cluster with the given topics.
    pub fn start_with(topics: Vec<String>, partitions: i32) -> Result<DevBroker, Error> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dev-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Either an explicit stop or the handle being dropped ends the wait.
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| Error::DevBroker(format!("cannot start thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(bootstrap)) => {
                Ok(DevBroker { bootstrap, stop: Some(stop_tx), thread: Some(thread) })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(Error::DevBroker(e))
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::DevBroker("broker thread exited before it was ready".into()))
            }
        }
    }

    /// Bootstrap address (`127.0.0.1:PORT`) for clients in this or other processes.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Stops the broker and waits for it to shut down.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
