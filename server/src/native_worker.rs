//! `donut work`: a native worker that renders with the shared crate over the
//! same protocol as the browser's wasm worker.
//!
//! It is how a machine without a browser contributes, how the integration
//! tests and benchmarks drive the server, and the reference client of the
//! worker protocol: say `Hello{slots}`, then for each `Task` render the range
//! with [`render_pose_packed`] (stepping the task's scene) straight into the `Result` message buffer (after
//! its header) and send it. Rendering runs on blocking threads, at most
//! `threads` at once; `slots` (twice that by default) keeps the next task
//! queued while the current one renders. A lost connection is retried with
//! the browser clients' exponential backoff ([`Backoff`]), from 100 ms up to
//! `--max-backoff-ms`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use donut_shared::backoff::Backoff;
use donut_shared::wire::{Hello, MAX_SLOTS, RESULT_HEADER_LEN, Task, TaskResult, ToWorker};
use donut_shared::{PACKED_LEN, render_pose_packed};
use futures_util::{SinkExt, StreamExt};
use rand::RngExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::config::WorkConfig;

/// First reconnect delay in milliseconds, and the least the largest may be.
const FIRST_BACKOFF_MS: u64 = 100;

/// The `/ws/worker` URL for a `--server` value.
pub fn worker_url(server: &str) -> String {
    let base = server.trim_end_matches('/');
    if base.ends_with("/ws/worker") {
        base.to_owned()
    } else {
        format!("{base}/ws/worker")
    }
}

/// Renders a task into a complete `Result` message.
pub fn render_result(task: &Task) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RESULT_HEADER_LEN + task.count as usize * PACKED_LEN);
    msg.extend_from_slice(&TaskResult::header(task.task_id, task.start, task.count));
    msg.resize(RESULT_HEADER_LEN + task.count as usize * PACKED_LEN, 0);
    let frames = &mut msg[RESULT_HEADER_LEN..];
    for (out, pose) in frames
        .as_chunks_mut::<PACKED_LEN>()
        .0
        .iter_mut()
        .zip(task.scene.poses(task.count))
    {
        render_pose_packed(pose, out);
    }
    msg
}

/// Works for the server until `max_attempts` connections in a row fail
/// (forever if 0).
pub async fn run(cfg: WorkConfig) -> anyhow::Result<()> {
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    let slots = if cfg.slots == 0 {
        u16::try_from(threads * 2).unwrap_or(MAX_SLOTS)
    } else {
        cfg.slots
    }
    .clamp(1, MAX_SLOTS);
    let url = worker_url(&cfg.server);
    let mut backoff = Backoff::with_bounds(
        FIRST_BACKOFF_MS as f64,
        cfg.max_backoff_ms.max(FIRST_BACKOFF_MS) as f64,
    );
    let mut failures = 0u32;
    loop {
        match connect(&url, cfg.local_addr).await {
            Ok(socket) => {
                info!(%url, threads, slots, "connected");
                failures = 0;
                backoff.reset();
                match session(socket, threads, slots, cfg.drop_fraction).await {
                    Ok(reason) => info!(%reason, "server closed the connection"),
                    Err(e) => warn!(error = %e, "connection lost"),
                }
            }
            Err(e) => {
                failures += 1;
                warn!(%url, error = %e, failures, "connect failed");
                if cfg.max_attempts > 0 && failures >= cfg.max_attempts {
                    bail!("giving up after {failures} failed connection attempts to {url}");
                }
            }
        }
        // Jitter spreads reconnecting workers after a server restart.
        let delay_ms = backoff.next_delay_ms(rand::rng().random::<f64>());
        tokio::time::sleep(Duration::from_secs_f64(delay_ms / 1000.0)).await;
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket at `url`, from `local` when given (a multi-homed
/// host choosing its source address; tests use 127.0.0.x).
pub async fn connect(url: &str, local: Option<IpAddr>) -> anyhow::Result<Socket> {
    let Some(local) = local else {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        return Ok(socket);
    };
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().context("parsing the URL")?;
    let host = uri.host().context("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let remote = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .context("no address of the server's family")?;
    let tcp = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    tcp.bind(SocketAddr::new(local, 0))
        .with_context(|| format!("binding {local}"))?;
    let stream = tcp.connect(remote).await?;
    stream.set_nodelay(true)?;
    let (socket, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await?;
    Ok(socket)
}

/// One connection: returns the server's close reason, or an error.
async fn session(
    socket: Socket,
    threads: usize,
    slots: u16,
    drop_fraction: f64,
) -> anyhow::Result<String> {
    let (mut sink, mut stream) = socket.split();
    let hello = Hello { slots }.to_bytes();
    sink.send(Message::binary(hello.to_vec()))
        .await
        .context("sending hello")?;
    let permits = Arc::new(Semaphore::new(threads.max(1)));
    let (done_tx, mut done_rx) = mpsc::channel::<Vec<u8>>(usize::from(slots));
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { bail!("connection ended") };
                match msg.context("reading from server")? {
                    Message::Binary(bytes) => match ToWorker::decode(&bytes) {
                        Ok(ToWorker::Task(task)) => {
                            let permits = Arc::clone(&permits);
                            let done = done_tx.clone();
                            tokio::spawn(async move {
                                let Ok(_permit) = permits.acquire_owned().await else { return };
                                if let Ok(msg) = tokio::task::spawn_blocking(move || render_result(&task)).await {
                                    let _ = done.send(msg).await;
                                }
                            });
                        }
                        Ok(ToWorker::Telemetry(_)) => {}
                        Err(e) => bail!("bad message from server: {e}"),
                    },
                    Message::Close(frame) => {
                        return Ok(frame.map_or_else(
                            || "no reason".to_owned(),
                            |f| format!("{} {}", u16::from(f.code), f.reason),
                        ));
                    }
                    _ => {}
                }
            }
            Some(result) = done_rx.recv() => {
                if drop_fraction > 0.0 && rand::rng().random_bool(drop_fraction.min(1.0)) {
                    continue;
                }
                sink.send(Message::binary(result)).await.context("sending result")?;
            }
        }
    }
}
