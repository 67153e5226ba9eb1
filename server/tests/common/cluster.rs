//! Nodes of a cluster for the cluster tests: real `donut serve` processes
//! on free loopback ports sharing one timeline through Redis (`--cluster`
//! with a `redis://…` or `redis+sentinel://…` URL), each under a key
//! prefix of the test's own. Self-contained (std only), so tests that do
//! not load `common` include it by `#[path]`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to listen before the test fails (as `HANG`).
const LISTEN_WITHIN: Duration = Duration::from_secs(60);

/// A `donut serve` process in the cluster; killed (SIGKILL) when dropped.
pub struct Node {
    /// The process.
    pub child: Child,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Its `--node-id`.
    pub id: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts node `id` of the cluster at `url` (`--cluster`) under
    /// `prefix`, with leader lease `lease` (whole milliseconds), three
    /// seconds sent ahead of the playback head (a viewer plays through a
    /// failover) and `extra` arguments; returns once it accepts
    /// connections. `RUST_LOG` is passed on (default `warn`).
    pub fn start(url: &str, prefix: &str, id: &str, lease: Duration, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let lease_ms = lease.as_millis().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--cluster", url, "--cluster-prefix", prefix])
            .args(["--node-id", id, "--leader-lease-ms", &lease_ms])
            .args(["--viewer-lead-secs", "3"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .expect("the donut binary starts");
        // Owned at once, so a node that never listens is still killed.
        let node = Self {
            child,
            addr,
            id: id.to_owned(),
        };
        let deadline = Instant::now() + LISTEN_WITHIN;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "node {id} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// Kills it at once, as `kill -9` does.
    pub fn kill(self) {
        drop(self);
    }
}

/// A key prefix no other run shares: `{tag}{pid}-{nanos}:`.
pub fn fresh_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{tag}{}-{nanos}:", std::process::id())
}

/// Nodes `n1`..=`n{n}` of the cluster at `url` under `prefix`, each
/// started as [`Node::start`] does.
pub fn start_nodes(
    url: &str,
    prefix: &str,
    n: usize,
    lease: Duration,
    extra: &[&str],
) -> Vec<Node> {
    (1..=n)
        .map(|k| Node::start(url, prefix, &format!("n{k}"), lease, extra))
        .collect()
}
