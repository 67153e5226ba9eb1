//! A real `redis-server` for the cluster tests: started on a free loopback
//! port with nothing persisted, killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The redis-server binary: `DONUT_REDIS`, or Debian's.
fn redis_bin() -> PathBuf {
    let bin = std::env::var_os("DONUT_REDIS")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    assert!(
        bin.exists(),
        "redis-server not found at {}: run ./build.sh test (it installs Debian's redis-server), \
         or apt-get install redis-server, or set DONUT_REDIS",
        bin.display()
    );
    bin
}

/// A private redis-server on 127.0.0.1, in memory only (`--save ''
/// --appendonly no`): a restart loses everything, on purpose.
pub struct RedisServer {
    child: Child,
    port: u16,
    extra: Vec<String>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = free_port();
        Self::start_with(port, Vec::new())
    }

    /// Starts a replica of `primary` (`--replicaof`) on a free port, and
    /// waits until it answers `PING` (not until it is in sync).
    pub fn replica_of(primary: &RedisServer) -> Self {
        let port = free_port();
        let extra = vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port.to_string(),
        ];
        Self::start_with(port, extra)
    }

    fn start_with(port: u16, extra: Vec<String>) -> Self {
        let mut server = Self {
            child: spawn(port, &extra),
            port,
            extra,
        };
        server.wait_ready();
        server
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its URL, for `--cluster`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// Freezes it (`SIGSTOP`): connections stay open, nothing is answered,
    /// and commands sent meanwhile run when it is thawed ([`Self::thaw`]).
    pub fn freeze(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Thaws it after [`Self::freeze`] (`SIGCONT`).
    pub fn thaw(&self) {
        signal(self.child.id(), "CONT");
    }

    /// Kills it (`SIGKILL`: no goodbye to clients) and waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it and starts a new one on the same port: every key is lost
    /// and every client connection is cut.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &self.extra);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pong(self.addr()) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server on port {} exited with {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `SIGsig` to process `pid` (with kill(1)).
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A free loopback port (bound, read and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn spawn(port: u16, extra: &[String]) -> Child {
    let bin = redis_bin();
    Command::new(&bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(extra)
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

/// Whether `PING` on `addr` gets `+PONG` (a raw RESP exchange).
fn pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// The redis-sentinel binary: `DONUT_REDIS_SENTINEL`, or Debian's.
fn sentinel_bin() -> PathBuf {
    let bin = std::env::var_os("DONUT_REDIS_SENTINEL")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-sentinel"), PathBuf::from);
    assert!(
        bin.exists(),
        "redis-sentinel not found at {}: run ./build.sh test (it installs Debian's \
         redis-sentinel), or apt-get install redis-sentinel, or set DONUT_REDIS_SENTINEL",
        bin.display()
    );
    bin
}

/// A private `redis-sentinel` on 127.0.0.1 monitoring one primary, with
/// its (rewritable) config in a directory of its own; killed and its
/// directory removed when dropped.
pub struct RedisSentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisSentinel {
    /// Starts one on a free port monitoring `primary` as service `master`
    /// with `quorum`, judging it down after `down_after_ms` of silence;
    /// waits until it answers `PING`.
    pub fn start(master: &str, primary: &RedisServer, quorum: u32, down_after_ms: u64) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("donut-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the sentinel");
        let conf = dir.join("sentinel.conf");
        let p = primary.port;
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {master} 127.0.0.1 {p} {quorum}\n\
                 sentinel down-after-milliseconds {master} {down_after_ms}\n\
                 sentinel failover-timeout {master} 10000\n\
                 sentinel parallel-syncs {master} 1\n",
                dir = dir.display()
            ),
        )
        .expect("the sentinel's config is written");
        let bin = sentinel_bin();
        let child = Command::new(&bin)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut sentinel = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pong(sentinel.addr()) {
            if let Ok(Some(status)) = sentinel.child.try_wait() {
                panic!("redis-sentinel on port {port} exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-sentinel never answered PING on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}
