//! The HTTP half of the WebSocket handshake, over real sockets: the version
//! (426 naming 13, RFC 6455 §4.4) and the page's origin (403 before any
//! upgrade for pages from elsewhere; native clients without `Origin` and
//! the server's own page welcome).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a WebSocket handshake for `path` with `Host: host` and `extra`
/// header lines; returns the status and the response head (lower-cased).
async fn handshake(addr: SocketAddr, path: &str, host: &str, extra: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write handshake");
    let mut head = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read response");
            assert!(n > 0, "connection closed before a response head");
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .expect("a response in time");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_websocket_version_gets_426_naming_13() {
    let server = start(config()).await;
    let addr = server.addr;
    let host = addr.to_string();
    for path in ["/ws/worker", "/ws/viewer"] {
        for version in ["8", "14", "13, 8"] {
            let line = format!("Sec-WebSocket-Version: {version}");
            let (status, head) = handshake(addr, path, &host, &[&line]).await;
            assert_eq!(status, 426, "{path} v{version}: {head}");
            assert!(
                head.contains("\r\nsec-websocket-version: 13\r\n"),
                "{path} v{version}: {head}"
            );
        }
        // No version at all is not version 13 either.
        let (status, head) = handshake(addr, path, &host, &[]).await;
        assert_eq!(status, 426, "{path} without a version: {head}");
        let (status, head) = handshake(addr, path, &host, &["Sec-WebSocket-Version: 13"]).await;
        assert_eq!(status, 101, "{path} v13: {head}");
    }
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_are_refused_before_upgrading() {
    let server = start(config()).await;
    let addr = server.addr;
    let host = addr.to_string();
    let v13 = "Sec-WebSocket-Version: 13";
    let own = format!("Origin: http://{host}");
    for path in ["/ws/worker", "/ws/viewer"] {
        // Another site's page.
        let (status, head) =
            handshake(addr, path, &host, &[v13, "Origin: https://evil.test"]).await;
        assert_eq!(status, 403, "{path}: {head}");
        // Same host, another port: another origin.
        let other_port = format!("Origin: http://127.0.0.1:{}", addr.port() ^ 1);
        let (status, head) = handshake(addr, path, &host, &[v13, &other_port]).await;
        assert_eq!(status, 403, "{path}: {head}");
        // A sandboxed frame or a file: page.
        let (status, head) = handshake(addr, path, &host, &[v13, "Origin: null"]).await;
        assert_eq!(status, 403, "{path}: {head}");
        // The server's own page, on whatever name it is reached by.
        let (status, head) = handshake(addr, path, &host, &[v13, &own]).await;
        assert_eq!(status, 101, "{path}: {head}");
        let (status, head) = handshake(
            addr,
            path,
            "donut.test:8443",
            &[v13, "Origin: https://DONUT.test:8443"],
        )
        .await;
        assert_eq!(status, 101, "{path}: {head}");
        // A native client sends no Origin.
        let (status, head) = handshake(addr, path, &host, &[v13]).await;
        assert_eq!(status, 101, "{path}: {head}");
    }
    let s = stats(addr).await;
    assert_eq!(s["connections_refused"], 0, "403s are not admissions: {s}");
    server.shutdown(Duration::from_secs(3)).await;

    // Listed origins, and `*` for everyone.
    let mut cfg = config();
    cfg.allowed_origins = vec!["https://embed.test".into(), "http://other.test:3000".into()];
    let server = start(cfg).await;
    let addr = server.addr;
    let host = addr.to_string();
    for (origin, status) in [
        ("Origin: https://embed.test", 101),
        ("Origin: http://other.test:3000", 101),
        ("Origin: http://embed.test", 403),
        ("Origin: https://evil.test", 403),
    ] {
        let (got, head) = handshake(addr, "/ws/viewer", &host, &[v13, origin]).await;
        assert_eq!(got, status, "{origin}: {head}");
    }
    server.shutdown(Duration::from_secs(3)).await;
    let mut cfg = config();
    cfg.allowed_origins = vec!["*".into()];
    let server = start(cfg).await;
    let (got, head) = handshake(
        server.addr,
        "/ws/viewer",
        "x",
        &[v13, "Origin: https://anyone.test"],
    )
    .await;
    assert_eq!(got, 101, "{head}");
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_must_be_origins() {
    let mut cfg = config();
    cfg.allowed_origins = vec!["example.com".into()];
    let err = match donut_server::app::Server::start(cfg).await {
        Ok(_) => panic!("started with a malformed --allowed-origins"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--allowed-origins"), "{err}");
}
