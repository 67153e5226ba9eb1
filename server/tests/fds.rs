//! The file-descriptor budget, on the real `donut` binary started with a
//! low `RLIMIT_NOFILE` (soft 128, hard 256, set by the shell that execs
//! it): the soft limit is raised to the hard one and logged, the default
//! caps (11,000 connections) are lowered to fit with headroom, and
//! connections beyond them are refused with a close reason instead of
//! hanging in the accept queue of a process out of descriptors.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_fit_the_descriptor_budget_and_the_excess_is_refused_with_a_reason() {
    let bin = env!("CARGO_BIN_EXE_donut");
    let child = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -Sn 128 && ulimit -Hn 256 && exec "$0" serve --listen 127.0.0.1:0 --max-per-ip 0 --fps 0"#)
        .arg(bin)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs the server");
    let mut proc = Proc(child);
    let stdout = proc.0.stdout.take().expect("stdout");
    let mut stderr = proc.0.stderr.take().expect("stderr");
    // Drained all along: a full pipe would stall the server's logging.
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));

    // Three times the connections the process has descriptors for.
    let mut admitted = Vec::new();
    let mut cap_reason = None;
    for i in 0..768 {
        let first = async {
            let mut ws = connect(addr, "/ws/viewer").await;
            let first = ws.next().await;
            (ws, first)
        };
        let (ws, first) = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .unwrap_or_else(|_| panic!("connection {i} hangs"));
        match first {
            Some(Ok(Message::Binary(_))) => admitted.push(ws),
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1013, "{f:?}");
                cap_reason = Some(f.reason.to_string());
            }
            other => panic!("connection {i}: {other:?}"),
        }
    }
    let reason = cap_reason.expect("connections beyond the cap are refused");
    let n = admitted.len();
    assert!(
        reason.contains(&format!("viewer connection cap of {n}")),
        "{n} admitted: {reason}"
    );
    assert!(
        (2..=256 - 64).contains(&n),
        "{n} viewers admitted under a budget of 256"
    );
    // The server still serves: it never ran out of descriptors.
    let s = stats(addr).await;
    assert_eq!(s["viewers"], n, "{s}");
    drop(admitted);
    drop(proc);

    let log = log.join().expect("log reader");
    assert!(
        log.contains("soft_before=128") && log.contains("budget=256"),
        "the budget is logged:\n{log}"
    );
    assert!(
        log.contains("lowered to fit") && log.contains("now_viewers"),
        "the clamp is logged:\n{log}"
    );
}
