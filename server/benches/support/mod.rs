//! Pieces the loopback benches share: the table of frames rendered before a
//! run, a worker that replays it, a viewer that checks every frame against
//! it, and the real `donut` binary run as a subprocess whose CPU time and
//! memory can be read from `/proc`.
//!
//! Each bench binary compiles this module on its own (`mod support;`), and
//! not every bench uses every piece.

#![allow(dead_code)]

pub mod fanout;

// Loopback HTTP for `/api/stats`, shared with the browser tests.
#[path = "../../tests/chromium/mod.rs"]
mod chromium;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use donut_shared::wire::{
    Hello, MAX_BATCH_FRAMES, RESULT_HEADER_LEN, TaskResult, ToViewer, ToWorker,
};
use donut_shared::{PACKED_LEN, render_packed};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Frames rendered up front by default; the viewer checks every frame
/// against them, so this is the length of a run.
pub const TABLE: u64 = 1 << 18;
/// Frames received before timing starts.
pub const WARMUP: u64 = 1 << 14;

/// Frames `0..frames`, packed, rendered on every core.
pub fn table(frames: u64) -> Arc<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut buf = vec![0u8; frames as usize * PACKED_LEN];
    let per = (frames as usize).div_ceil(threads);
    std::thread::scope(|s| {
        for (t, chunk) in buf.chunks_mut(per * PACKED_LEN).enumerate() {
            s.spawn(move || {
                for (k, out) in chunk.as_chunks_mut::<PACKED_LEN>().0.iter_mut().enumerate() {
                    render_packed((t * per + k) as u64, out);
                }
            });
        }
    });
    Arc::new(buf)
}

/// A worker that answers from the table, dropping every
/// `1 / drop_fraction`-th result (deterministically) to simulate churn.
pub async fn replay_worker(addr: SocketAddr, table: Arc<Vec<u8>>, drop_fraction: f64) {
    let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/worker")).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let hello = Hello { slots: 2 }.to_bytes();
    if sink.send(Message::binary(hello.to_vec())).await.is_err() {
        return;
    }
    let mut dropped = 0.0f64;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(b) = msg else { continue };
        let Ok(ToWorker::Task(t)) = ToWorker::decode(&b) else {
            continue;
        };
        dropped += drop_fraction;
        if dropped >= 1.0 {
            dropped -= 1.0;
            continue;
        }
        let from = t.start as usize * PACKED_LEN;
        let to = from + t.count as usize * PACKED_LEN;
        let out = match table.get(from..to) {
            Some(frames) => {
                let mut out = Vec::with_capacity(RESULT_HEADER_LEN + frames.len());
                out.extend_from_slice(&TaskResult::header(t.task_id, t.start, t.count));
                out.extend_from_slice(frames);
                out
            }
            // Past the end of the table (the last task of a run): render.
            None => donut_server::native_worker::render_result(&t),
        };
        if sink.send(Message::binary(out)).await.is_err() {
            return;
        }
    }
}

/// The timed part of a viewer's run.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Frames received and checked in it.
    pub frames: u64,
    /// Its length, seconds.
    pub secs: f64,
}

impl Window {
    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.secs
    }
}

/// Starts [`checking_viewer`] on an OS thread of its own, with its own
/// runtime: on the workers' runtime, eight busy replaying workers crowded
/// it out and it, not the server, set the pace. Join it for its window.
pub fn spawn_checking_viewer(
    addr: SocketAddr,
    table: Arc<Vec<u8>>,
    on_mark: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<Window> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("viewer runtime")
            .block_on(checking_viewer(addr, table, on_mark))
    })
}

/// Waits for a viewer thread from an async context.
pub async fn join_viewer(viewer: std::thread::JoinHandle<Window>) -> Window {
    tokio::task::spawn_blocking(move || viewer.join())
        .await
        .expect("join")
        .expect("viewer")
}

/// Receives every frame of the table, checking order and every byte; times
/// frames `WARMUP..` to the table's end. `on_mark` runs when the timed
/// window opens and again when it closes (before this thread ends, so that
/// a reading of the process's threads still counts it).
async fn checking_viewer(
    addr: SocketAddr,
    table: Arc<Vec<u8>>,
    mut on_mark: impl FnMut(),
) -> Window {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/viewer"))
        .await
        .expect("viewer connects");
    let end = (table.len() / PACKED_LEN) as u64;
    let mut next = 0u64;
    let mut t0 = None;
    while next < end {
        let msg = ws.next().await.expect("stream open").expect("readable");
        let Message::Binary(b) = msg else {
            continue;
        };
        let Ok(ToViewer::Frames(f)) = ToViewer::decode(&b) else {
            continue;
        };
        assert_eq!(
            f.start, next,
            "gap or reordering (a viewer queue too short for the batch size skips it ahead)"
        );
        f.decode_frames(|n, got| {
            if let Some(want) = table.get(n as usize * PACKED_LEN..(n as usize + 1) * PACKED_LEN) {
                assert_eq!(&got[..], want, "wrong frame {n}");
            }
        })
        .expect("decodable batch");
        next = f.start + u64::from(f.count);
        if t0.is_none() && next >= WARMUP {
            t0 = Some((Instant::now(), next));
            on_mark();
        }
    }
    let (t, from) = t0.expect("warm-up passed");
    on_mark();
    Window {
        frames: next - from,
        secs: t.elapsed().as_secs_f64(),
    }
}

/// The `donut` binary: `DONUT_BIN`, or the one cargo built for the bench.
pub fn donut_bin() -> String {
    std::env::var("DONUT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_donut").to_owned())
}

/// The real `donut serve` (the binary cargo built for the bench, or
/// `DONUT_BIN`) on a free loopback port; killed on drop.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `donut serve --listen 127.0.0.1:0 <args>` and waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(args, "warn", Stdio::null())
    }

    /// [`ServerProcess::start`] with `RUST_LOG=<log>` and its log piped, for
    /// [`ServerProcess::take_log`].
    pub fn start_logging(args: &[&str], log: &str) -> Self {
        Self::spawn(args, log, Stdio::piped())
    }

    fn spawn(args: &[&str], log: &str, stderr: Stdio) -> Self {
        let bin = donut_bin();
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("run {bin} (set DONUT_BIN): {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let addr = line
            .trim()
            .trim_start_matches("listening on ")
            .parse()
            .unwrap_or_else(|_| panic!("server address, got {line:?}"));
        Self { child, addr }
    }

    /// The server's log (stderr), once, if started with
    /// [`ServerProcess::start_logging`]; it ends when the server does.
    pub fn take_log(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The process id (for `perf record -p`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:")
    }

    /// CPU time used so far by all its threads, nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        cpu_ns(self.pid())
    }

    /// `GET /api/stats`, if it answers.
    pub fn stats(&self) -> Option<serde_json::Value> {
        chromium::stats(self.addr.port(), Duration::from_secs(10)).ok()
    }
}

/// The most frames a viewer may fall behind the unpaced benches' server
/// before it is skipped ahead to live, which the checking viewer reports as
/// a gap: 256 batches of the default 600 frames.
pub const VIEWER_BACKLOG_FRAMES: u64 = 256 * 600;

/// The viewer batch size of the unpaced benches: `DONUT_BATCH_FRAMES` (the
/// variable `donut serve` reads, which the subprocess would inherit anyway),
/// else the server's default of 600. Refuses, with a message, a value the
/// server would refuse.
pub fn batch_frames() -> u32 {
    let Ok(v) = std::env::var("DONUT_BATCH_FRAMES") else {
        return 600;
    };
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_BATCH_FRAMES).contains(&n) => n,
        _ => panic!("DONUT_BATCH_FRAMES={v:?}: the benches take 1..={MAX_BATCH_FRAMES} frames"),
    }
}

/// `--viewer-queue` for viewer batches of `batch_frames`: as many batches as
/// keep the backlog at [`VIEWER_BACKLOG_FRAMES`] whatever the batch size
/// (256 of 600 frames, 2,560 of 60). A fixed number of batches would let
/// the server skip the checking viewer ahead with small batches.
pub fn viewer_queue(batch_frames: u32) -> u64 {
    VIEWER_BACKLOG_FRAMES.div_ceil(u64::from(batch_frames.max(1)))
}

/// `donut serve` as the throughput benches run it: pacing off, a 2^16-frame
/// ring, no per-address cap, 50 ms tasks, with `codec` (`nibble` or
/// `context`) and `verify` (`off`, `sample` or `full`), viewer batches of
/// [`batch_frames`] and a viewer queue sized for them ([`viewer_queue`]).
pub fn unpaced_server(codec: &str, verify: &str) -> ServerProcess {
    let verify = if verify == "off" {
        "off-benchmark-only"
    } else {
        verify
    };
    let batch = batch_frames();
    let (batch_arg, queue_arg) = (batch.to_string(), viewer_queue(batch).to_string());
    ServerProcess::start(&[
        "--no-pacing",
        "--codec",
        codec,
        "--verify",
        verify,
        "--ring-frames",
        "65536",
        "--max-per-ip",
        "0",
        "--task-ms",
        "50",
        "--first-task-frames",
        "120",
        "--batch-frames",
        &batch_arg,
        "--viewer-queue",
        &queue_arg,
    ])
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`), 0 if absent.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// [`cpu_ns`] in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    cpu_ns(pid) as f64 / 1e9
}

/// CPU time used so far by all threads of process `pid` (threads that have
/// already exited are not counted), nanoseconds: the first field of each
/// thread's `/proc/<pid>/task/<tid>/schedstat`.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
