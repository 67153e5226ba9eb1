//! The fan-out load generator's viewer (§5 "Fan-out", `e2e.rs`) and the
//! server log line it pairs arrivals with, shared by the benches that
//! stamp when each batch reaches a crowd (`e2e`, `cluster_quota`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use donut_server::stream::broadcaster::unix_us;
use donut_shared::wire::ToViewer;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `(start, unix_us)` from the server's `published` debug line (see
/// `donut_server::stream::broadcaster`), ANSI colours and all.
pub fn parse_published(line: &str) -> Option<(u64, u64)> {
    if !line.contains("published") {
        return None;
    }
    let mut plain = String::with_capacity(line.len());
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => plain.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let field = |k: &str| {
        plain
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    Some((field("start=")?, field("unix_us=")?))
}

/// What one load-generator viewer saw.
pub struct ViewerLog {
    /// `(batch start, receive time in µs since the epoch)` of every
    /// `Frames` message, in arrival order.
    pub recv: Vec<(u64, u64)>,
    /// Batches that did not start where the previous one ended.
    pub gaps: u32,
    /// The server closed the connection before the end.
    pub closed: bool,
}

/// One viewer of the fan-out load generator: a tokio-tungstenite client
/// with a 4 KiB read buffer that reads only each `Frames` header (start,
/// count) to check continuity and stamp the arrival; payloads are not
/// decoded, so the load generator leaves the cores to the server. Pings are
/// answered by tungstenite as it reads. Runs until `stop` is set (checked
/// after every message: the stream sends four batches a second).
pub async fn fanout_viewer(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
    connected: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    capacity: usize,
) -> Option<ViewerLog> {
    let permit = gate.acquire_owned().await.ok()?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{addr}/ws/viewer");
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await
    else {
        failed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    drop(permit);
    connected.fetch_add(1, Ordering::Relaxed);
    let mut log = ViewerLog {
        recv: Vec::with_capacity(capacity),
        gaps: 0,
        closed: false,
    };
    let mut next: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                if let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b) {
                    if next.is_some_and(|n| n != f.start) {
                        log.gaps += 1;
                    }
                    next = Some(f.start + u64::from(f.count));
                    log.recv.push((f.start, unix_us()));
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                log.closed = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    Some(log)
}
