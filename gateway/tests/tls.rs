#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTPS with rustls, using a throwaway self-signed certificate made with the openssl CLI.

mod common;

use std::sync::Arc;

use busflow_gateway::{AppState, LiveState, TlsConfig, serve_http};
use common::{TestGateway, config, network};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

fn self_signed(dir: &std::path::Path) -> TlsConfig {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("the openssl CLI is needed to make a test certificate");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    TlsConfig { cert, key }
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let mut cfg = config();
    cfg.tls = Some(tls.clone());
    let gw = TestGateway::start(cfg).await;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&tls.cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut s = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok\n"), "{out}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(2), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn unusable_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = self_signed(dir.path());
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    tls.key = dir.path().join("bad.pem");
    let mut cfg = config();
    cfg.tls = Some(tls);
    let live = LiveState::new(cfg.live_settings());
    let state = AppState::new(cfg, live, network(), None, CancellationToken::new());
    let err = serve_http(state, None, CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
}
