//! Records a bounded slice of busflow's topics to NDJSON files (one message value per line), the
//! format `busflow sql --table NAME=FILE` reads: for offline analysis, bug reports and the
//! fixtures in `tests/fixtures/`.
//!
//! ```sh
//! cargo run -p busflow-sql --example record -- 127.0.0.1:9092 out/
//! ```
//! writes `out/positions.ndjson` (bus.positions), `out/rejected.ndjson`, `out/raw.ndjson` and
//! `out/latest.ndjson`, each read from the beginning to the end it had when the read started.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use busflow_core::Topics;
use busflow_kafka::KafkaConfig;
use busflow_sql::{KafkaRead, ReadRange, read_topic};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, dir] = args.as_slice() else {
        eprintln!("usage: record BROKERS OUT_DIR");
        return ExitCode::from(2);
    };
    match record(brokers, &PathBuf::from(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record: {e}");
            ExitCode::FAILURE
        }
    }
}

fn record(brokers: &str, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let read = KafkaRead {
        kafka: KafkaConfig::new(brokers),
        timeout: Duration::from_secs(30),
        max_records: u64::MAX,
        progress: true,
    };
    let t = Topics::default();
    let cancel = Default::default();
    for (name, topic) in [
        ("positions", &t.positions),
        ("rejected", &t.rejected),
        ("raw", &t.raw),
        ("latest", &t.latest),
    ] {
        let records = read_topic(&read, topic, ReadRange::default(), &cancel)?;
        let path = dir.join(format!("{name}.ndjson"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut n = 0usize;
        for r in records {
            // One value per line: a value containing a newline (a malformed raw message) cannot
            // be recorded faithfully in this format, so it is left out and counted.
            match r.value {
                Some(v) if !v.contains(&b'\n') => {
                    f.write_all(&v)?;
                    f.write_all(b"\n")?;
                    n += 1;
                }
                _ => eprintln!(
                    "{topic} partition {:?} offset {}: not recordable as one line",
                    r.partition, r.offset
                ),
            }
        }
        f.flush()?;
        eprintln!("{topic}: {n} records -> {}", path.display());
    }
    Ok(())
}
