//! The real binary: SIGTERM closes every socket with "server shutting down"
//! and the process exits cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_and_exits() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_donut"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn donut serve");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        line
    })
    .await
    .expect("reader");
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("address");

    let mut viewer = Viewer::connect(addr).await;
    let mut raw_worker = connect(addr, "/ws/worker").await;
    hello(&mut raw_worker, 1).await;
    let _ = next_task(&mut raw_worker).await;
    let native = worker(addr, 1);
    viewer.receive(30).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    let (code, reason) = expect_close(&mut viewer.ws).await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    let (code, reason) = expect_close(&mut raw_worker).await;
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));

    // Generous limit only to avoid hanging; the exit itself is what is checked.
    let deadline = Instant::now() + HANG;
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    native.abort();
}
