//! What cheaters and idle takers get away with, per verification policy,
//! against the real `donut serve` (a subprocess, paced at 60 fps) and real
//! `donut work` subprocesses on loopback (issue 11).
//!
//! `cargo bench -p donut-server --bench trust -- [forgery|zombies|all] [SECS]`
//!
//! - `forgery`: for `full`, `quorum` and `sample`, at 600 fps (ten times
//!   real time), honest workers from 127.0.0.1 and 127.0.0.3 and a
//!   *patient cheater* from 127.0.0.2: it answers 25 batches honestly (past
//!   the 20 of the `sample` trust decay), then forges one glyph of one frame
//!   in one batch in ten, hanging up and reconnecting after every forged
//!   batch. A short lead (0.5 s) and 20 ms tasks give it many batches. A viewer compares every frame
//!   it plays with the native render. Prints forged frames sent, forged
//!   frames played (per thousand sent and per thousand played), and the
//!   server's CPU per frame played, read from `/proc`.
//! - `zombies`: one honest `donut work` from 127.0.0.1 and 0, 1 or 8
//!   zombies from 127.0.0.2 (they take tasks, answer pings, never deliver,
//!   and reconnect when closed). Prints the playback rate the viewer saw,
//!   the server's stall count and how many zombie connections it closed.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use donut_shared::wire::{Hello, RESULT_HEADER_LEN, ToViewer, ToWorker};
use donut_shared::{PACKED_LEN, render_packed};
use futures_util::{SinkExt, StreamExt};
use support::{ServerProcess, donut_bin};
use tokio_tungstenite::tungstenite::Message;

/// Batches the patient cheater answers honestly before it starts forging:
/// past the 20 over which `sample` decays to its floor.
const PATIENCE: u64 = 25;

/// Playback rate of the forgery runs: ten times real time, so a patient
/// cheater gets through its patience and many forged batches within a
/// run; the mechanics (lead, task sizing, checks) scale with it.
const FPS: &str = "600";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn loopback(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, n]))
}

/// A `donut work` subprocess of one thread connecting from `local`.
fn honest_worker(addr: SocketAddr, local: &str) -> Child {
    Command::new(donut_bin())
        .args(["work", "--threads", "1", "--local-addr", local])
        .args(["--server", &format!("ws://{addr}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("donut work starts")
}

async fn connect(addr: SocketAddr, path: &str, local: Option<IpAddr>) -> Option<Ws> {
    let url = format!("ws://{addr}{path}");
    donut_server::native_worker::connect(&url, local).await.ok()
}

async fn hello(ws: &mut Ws, slots: u16) -> bool {
    ws.send(Message::binary(Hello { slots }.to_bytes().to_vec()))
        .await
        .is_ok()
}

/// What the counting viewer saw.
#[derive(Default, Debug)]
struct Played {
    frames: u64,
    wrong: u64,
}

/// Plays until `deadline`, comparing every frame with the native render.
async fn counting_viewer(addr: SocketAddr, deadline: Instant) -> Played {
    let mut played = Played::default();
    let Some(mut ws) = connect(addr, "/ws/viewer", None).await else {
        return played;
    };
    let mut expected = [0u8; PACKED_LEN];
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        let Message::Binary(b) = msg else { continue };
        if let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b) {
            let _ = f.decode_frames(|n, got| {
                render_packed(n, &mut expected);
                played.frames += 1;
                played.wrong += u64::from(got != &expected);
            });
        }
    }
    played
}

/// What the patient cheater did.
#[derive(Default, Debug)]
struct Cheated {
    forged_frames: u64,
    sessions: u64,
    banned_after: Option<Duration>,
}

/// The patient cheater of the module docs, until `deadline` or a refusal.
async fn patient_cheater(addr: SocketAddr, deadline: Instant) -> Cheated {
    let started = Instant::now();
    let mut out = Cheated::default();
    let mut answered = 0u64;
    while Instant::now() < deadline {
        let Some(mut ws) = connect(addr, "/ws/worker", loopback(2)).await else {
            break;
        };
        out.sessions += 1;
        if !hello(&mut ws, 2).await {
            break;
        }
        let mut in_session = 0;
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), ws.next()).await;
            let Ok(Some(Ok(msg))) = msg else { return out };
            match msg {
                Message::Binary(b) => {
                    let Ok(ToWorker::Task(t)) = ToWorker::decode(&b) else {
                        continue;
                    };
                    let mut r = donut_server::native_worker::render_result(&t);
                    answered += 1;
                    in_session += 1;
                    let forge = answered > PATIENCE && in_session >= 10;
                    if forge {
                        // Another glyph at row 7, column 40: layout intact.
                        let at = RESULT_HEADER_LEN + (t.count as usize / 2) * PACKED_LEN + 300;
                        r[at] = (((r[at] >> 4) % 12 + 1) << 4) | (r[at] & 0x0f);
                        out.forged_frames += 1;
                    }
                    if ws.send(Message::binary(r)).await.is_err() {
                        break;
                    }
                    if forge {
                        let _ = ws.close(None).await;
                        break;
                    }
                }
                Message::Close(Some(f)) if f.reason.contains("banned") => {
                    out.banned_after = Some(started.elapsed());
                    return out;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    out
}

async fn forgery(policy: &str, secs: u64) {
    let server = ServerProcess::start(&[
        "--verify",
        policy,
        "--ban-secs",
        "600",
        "--fps",
        FPS,
        "--lead-secs",
        "0.5",
        "--viewer-lead-secs",
        "0.25",
        "--task-ms",
        "20",
    ]);
    let addr = server.addr;
    let mut workers = [
        honest_worker(addr, "127.0.0.1"),
        honest_worker(addr, "127.0.0.3"),
    ];
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu0 = server.cpu_ns();
    let viewer = tokio::spawn(counting_viewer(addr, deadline));
    let cheated = patient_cheater(addr, deadline).await;
    let played = viewer.await.unwrap_or_default();
    let cpu = server.cpu_ns().saturating_sub(cpu0);
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let per_sent = 1000.0 * played.wrong as f64 / cheated.forged_frames.max(1) as f64;
    let per_played = 1000.0 * played.wrong as f64 / played.frames.max(1) as f64;
    println!(
        "{policy:<7} {secs} s: {} frames played, cheater forged {} frames in {} sessions ({}), \
         {} forged frames played = {per_sent:.0} per 1000 forged, {per_played:.2} per 1000 played; \
         server CPU {:.2} us per frame played",
        played.frames,
        cheated.forged_frames,
        cheated.sessions,
        cheated
            .banned_after
            .map_or("never banned".to_owned(), |d| format!(
                "banned after {:.1} s",
                d.as_secs_f64()
            )),
        played.wrong,
        cpu as f64 / 1e3 / played.frames.max(1) as f64,
    );
}

/// A zombie from 127.0.0.2 until `deadline`, reconnecting when closed;
/// returns how often the server closed it.
async fn zombie(addr: SocketAddr, deadline: Instant) -> u64 {
    let mut closed = 0;
    while Instant::now() < deadline {
        let Some(mut ws) = connect(addr, "/ws/worker", loopback(2)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !hello(&mut ws, 4).await {
            continue;
        }
        loop {
            match tokio::time::timeout_at(deadline.into(), ws.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    closed += 1;
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Err(_) => return closed,
            }
        }
        // Back at once, like a page reloading.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    closed
}

async fn zombies(n: usize, secs: u64) {
    let server = ServerProcess::start(&[]);
    let addr = server.addr;
    let mut honest = honest_worker(addr, "127.0.0.1");
    // Playing before the zombies come; the window starts then.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalls0 = stat(&server, "playback_stall_frames");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let viewer = tokio::spawn(counting_viewer(addr, deadline));
    let zs: Vec<_> = (0..n)
        .map(|_| tokio::spawn(zombie(addr, deadline)))
        .collect();
    let played = viewer.await.unwrap_or_default();
    let mut closed = 0;
    for z in zs {
        closed += z.await.unwrap_or(0);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stalls = stat(&server, "playback_stall_frames").saturating_sub(stalls0);
    let _ = honest.kill();
    let _ = honest.wait();
    // The viewer's first batch brings up to a second of buffer at once.
    println!(
        "{n} zombies, {secs} s: viewer played {} frames ({:.1} fps incl. its 1 s join burst), \
         {} wrong, {stalls} frames of stall, {closed} zombie connections closed by the server",
        played.frames,
        played.frames as f64 / elapsed,
        played.wrong,
    );
}

fn stat(server: &ServerProcess, name: &str) -> u64 {
    server.stats().and_then(|s| s[name].as_u64()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let what = args.first().map_or("all", String::as_str).to_owned();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let zombie_secs = secs.min(40);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        if what == "forgery" || what == "all" {
            for policy in ["full", "quorum", "sample"] {
                forgery(policy, secs).await;
            }
        }
        if what == "zombies" || what == "all" {
            for n in [0, 1, 8] {
                zombies(n, zombie_secs).await;
            }
        }
    });
}
