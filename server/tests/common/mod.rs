//! Helpers shared by the integration tests: start the real server in-process
//! on 127.0.0.1:0, run real native workers, and real viewer clients that
//! check every frame they receive against the shared crate's native render;
//! and a real redis-server for the cluster tests ([`redis_server`]).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use donut_server::app::Server;
use donut_server::config::{ServeConfig, WorkConfig};
use donut_shared::wire::{FromWorker, Hello, Task, Telemetry, ToViewer, ToWorker};
use donut_shared::{PACKED_LEN, render_packed};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod cluster;
pub mod nginx;
pub mod p2p;
pub mod recorder;
pub mod redis_server;

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous limit so a broken test fails instead of hanging.
pub const HANG: Duration = Duration::from_secs(60);

/// A test configuration: loopback, ephemeral port, full verification.
pub fn config() -> ServeConfig {
    let mut c = ServeConfig::for_tests();
    c.verify = donut_server::config::VerifyPolicy::Full;
    c.ban_secs = 0;
    c
}

/// Starts the real server in-process.
pub async fn start(cfg: ServeConfig) -> Server {
    // `RUST_LOG=info cargo test` shows the server's logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Server::start(cfg).await.expect("server starts")
}

/// Runs a real native worker against `addr`.
pub fn worker(addr: SocketAddr, threads: usize) -> JoinHandle<()> {
    worker_from(addr, threads, None)
}

/// Runs a real native worker against `addr`, connecting from `local`
/// (127.0.0.x: each is another address to the server).
pub fn worker_from(addr: SocketAddr, threads: usize, local: Option<IpAddr>) -> JoinHandle<()> {
    let mut cfg = WorkConfig::for_server(&format!("ws://{addr}"));
    cfg.threads = threads;
    cfg.max_backoff_ms = 200;
    cfg.local_addr = local;
    tokio::spawn(async move {
        let _ = donut_server::native_worker::run(cfg).await;
    })
}

/// The loopback address 127.0.0.`n`.
pub fn loopback(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, n]))
}

/// Opens a WebSocket to `path` on `addr`.
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    connect_from(addr, path, None).await
}

/// Opens a WebSocket to `path` on `addr` from `local`.
pub async fn connect_from(addr: SocketAddr, path: &str, local: Option<IpAddr>) -> Ws {
    donut_server::native_worker::connect(&format!("ws://{addr}{path}"), local)
        .await
        .expect("websocket connects")
}

/// Reads until the server closes; returns its close frame (code, reason).
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    let wait = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (u16::from(code), reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => {}
                Err(e) => panic!("socket error before a close frame: {e}"),
            }
        }
        panic!("connection ended without a close frame");
    };
    tokio::time::timeout(HANG, wait)
        .await
        .expect("server closes in time")
}

/// Sends a worker `Hello`.
pub async fn hello(ws: &mut Ws, slots: u16) {
    ws.send(Message::binary(Hello { slots }.to_bytes().to_vec()))
        .await
        .expect("send hello");
}

/// Waits for the next task on a raw worker socket.
pub async fn next_task(ws: &mut Ws) -> Task {
    let wait = async {
        while let Some(msg) = ws.next().await {
            if let Message::Binary(b) = msg.expect("worker socket")
                && let Ok(ToWorker::Task(t)) = ToWorker::decode(&b)
            {
                return t;
            }
        }
        panic!("worker socket closed while waiting for a task");
    };
    tokio::time::timeout(HANG, wait)
        .await
        .expect("a task in time")
}

/// The correct `Result` message for a task.
pub fn result_for(task: &Task) -> Vec<u8> {
    donut_server::native_worker::render_result(task)
}

/// What a checking viewer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// First frame received.
    pub first: Option<u64>,
    /// One past the last frame received.
    pub next: u64,
    /// Frames received and checked.
    pub frames: u64,
    /// Telemetry messages received.
    pub telemetry: Vec<Telemetry>,
}

/// A viewer client that checks every frame: in order, no gaps, byte-identical
/// to the native render.
pub struct Viewer {
    pub ws: Ws,
    pub seen: Seen,
}

impl Viewer {
    /// Connects to `/ws/viewer`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            ws: connect(addr, "/ws/viewer").await,
            seen: Seen::default(),
        }
    }

    /// Handles one message; returns the frames batch range if it was one.
    pub fn check(&mut self, bytes: &[u8]) -> Option<(u64, u32)> {
        match ToViewer::decode(bytes).expect("server sends valid viewer messages") {
            ToViewer::Telemetry(t) => {
                self.seen.telemetry.push(t);
                None
            }
            ToViewer::Frames(f) => {
                match self.seen.first {
                    None => self.seen.first = Some(f.start),
                    Some(_) => assert_eq!(
                        f.start, self.seen.next,
                        "gap or reordering: expected frame {}, batch starts at {}",
                        self.seen.next, f.start
                    ),
                }
                let mut expected = [0u8; PACKED_LEN];
                f.decode_frames(|n, got| {
                    render_packed(n, &mut expected);
                    assert_eq!(got, &expected, "frame {n} differs from the native render");
                })
                .expect("server sends decodable batches");
                self.seen.next = f.start + u64::from(f.count);
                self.seen.frames += u64::from(f.count);
                Some((f.start, f.count))
            }
            other => panic!("a viewer that never joined the relay tree got {other:?}"),
        }
    }

    /// Receives until at least `frames` frames have been checked.
    pub async fn receive(&mut self, frames: u64) {
        let wait = async {
            while self.seen.frames < frames {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        self.check(&b);
                    }
                    Some(Ok(Message::Close(f))) => panic!("viewer closed by server: {f:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("viewer socket error: {e}"),
                    None => panic!("viewer socket ended"),
                }
            }
        };
        tokio::time::timeout(HANG, wait)
            .await
            .expect("frames arrive in time");
    }
}

/// Fetches `/api/stats` as JSON.
pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    let body = http_get(addr, "/api/stats").await;
    serde_json::from_str(&body).expect("stats are JSON")
}

/// A minimal HTTP/1.1 GET over a real socket; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

/// Polls `f` on the stats until it holds (or the hang limit).
pub async fn wait_stats(addr: SocketAddr, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let wait = async {
        loop {
            if f(&stats(addr).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Decodes a worker message, for tests that forge them.
pub fn decode_worker(b: &[u8]) -> FromWorker<'_> {
    FromWorker::decode(b).expect("valid worker message")
}

/// A checking viewer running on its own task until stopped, so a test can
/// do other things while every frame is still checked as it arrives.
pub struct BackgroundViewer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<Viewer>,
}

impl BackgroundViewer {
    /// Connects to `/ws/viewer` and starts checking.
    pub async fn start(addr: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut viewer = Viewer::connect(addr).await;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                let next = viewer.seen.frames + 1;
                viewer.receive(next).await;
            }
            viewer
        });
        Self { stop, task }
    }

    /// Stops once at least `frames` frames were checked; returns what it saw.
    pub async fn finish(self, frames: u64) -> Seen {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        let mut viewer = self.task.await.expect("the viewer task does not panic");
        viewer.receive(frames).await;
        viewer.seen
    }
}

/// What a hostile worker sends for each task it is given.
pub type Forge = Box<dyn FnMut(&Task) -> Vec<Vec<u8>> + Send>;

/// Runs a hostile worker from 127.0.0.`from` until the server closes it;
/// returns the close and how many results it sent.
pub async fn cheat_from(addr: SocketAddr, from: u8, mut forge: Forge) -> ((u16, String), usize) {
    let mut ws = connect_from(addr, "/ws/worker", loopback(from)).await;
    hello(&mut ws, 2).await;
    let mut sent = 0;
    let run = async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    if let Ok(ToWorker::Task(t)) = ToWorker::decode(&b) {
                        for m in forge(&t) {
                            if ws.send(Message::binary(m)).await.is_err() {
                                break;
                            }
                            sent += 1;
                        }
                    }
                }
                Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (u16::from(code), reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => {}
                Err(e) => return (0, e.to_string()),
            }
        }
        (0, "ended without close".to_owned())
    };
    let close = tokio::time::timeout(HANG, run)
        .await
        .expect("cheater is cut off in time");
    (close, sent)
}

/// The index in `nodes` of the node that leads now (its `cluster_role` is
/// 2), polling every 100 ms; panics after [`HANG`] without one.
pub async fn cluster_leader<N: std::borrow::Borrow<cluster::Node>>(nodes: &[N]) -> usize {
    let deadline = std::time::Instant::now() + HANG;
    loop {
        for (k, n) in nodes.iter().enumerate() {
            if stats(n.borrow().addr).await["cluster_role"] == 2 {
                return k;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node became leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A native worker (one thread) on each of `nodes`, returned once every
/// node counts them all cluster-wide (`cluster_workers`).
pub async fn worker_on_each(nodes: &[cluster::Node]) -> Vec<JoinHandle<()>> {
    let workers: Vec<_> = nodes.iter().map(|n| worker(n.addr, 1)).collect();
    for n in nodes {
        wait_stats(
            n.addr,
            &format!("{} workers cluster-wide", nodes.len()),
            |s| s["cluster_workers"] == nodes.len(),
        )
        .await;
    }
    workers
}
