//! Running the real `busflow up` from an integration test: a free port, the process stopped by
//! PID on drop, and plain HTTP/1.1 GETs against its gateway.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_busflow");

/// A running `busflow up`; SIGTERM (then SIGKILL) on drop.
pub struct Up {
    pub child: Child,
    /// Its gateway, `127.0.0.1:PORT`.
    pub http: String,
    /// The in-process broker's address, from the "busflow is up" line.
    pub brokers: String,
    /// Its stderr (logs at `info`).
    pub log: tempfile::NamedTempFile,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `busflow up --http-addr ... ARGS` (the `env_remove` variables taken out of its
/// environment) and waits until it prints that it is up.
pub fn start_up(args: &[&str], env_remove: &[&str]) -> Up {
    let http = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["up", "--http-addr", &http])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap());
    for v in env_remove {
        cmd.env_remove(v);
    }
    let child = cmd.spawn().unwrap();
    let mut up = Up { child, http, brokers: String::new(), log };
    let stdout = up.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // "busflow is up: open http://ADDR/ for the live map (Kafka at BROKERS; Ctrl-C to stop)"
    let line = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("busflow up did not come up: {}", up.log_text()));
    up.brokers = line
        .split("Kafka at ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no broker address in {line:?}"))
        .to_string();
    up
}

/// `GET path`: the status code and the body.
pub fn http_get_raw(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `GET path` answered 200 with a JSON body.
pub fn http_get(addr: &str, path: &str) -> Option<serde_json::Value> {
    match http_get_raw(addr, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}
