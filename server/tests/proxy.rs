//! Behind a real reverse proxy: Debian's nginx, started by the test with a
//! generated configuration (the README's snippet) on a private loopback
//! port, proxying HTTP and both WebSocket endpoints to the real server.
//!
//! Distinct clients are distinct loopback source addresses (127.0.0.2,
//! 127.0.0.3, ...): nginx writes each into `X-Forwarded-For` and connects
//! to the server from 127.0.0.1, so the server sees one TCP peer and must
//! believe the header to tell the clients apart, and only when nginx is a
//! `--trusted-proxies` member.
//!
//! The test fails (never skips) when nginx is missing: `./build.sh test`
//! installs it from Debian.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// nginx in front of `upstream`, killed and cleaned up when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nginx binary: `DONUT_NGINX`, or Debian's.
fn nginx_bin() -> PathBuf {
    let bin = std::env::var_os("DONUT_NGINX")
        .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
    assert!(
        bin.exists(),
        "nginx not found at {}: run ./build.sh test (it installs Debian's nginx), \
         or apt-get install nginx, or set DONUT_NGINX",
        bin.display()
    );
    bin
}

impl Nginx {
    /// Starts nginx on a free loopback port, proxying to `upstream`.
    fn start(upstream: SocketAddr) -> Self {
        let bin = nginx_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("donut-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nginx prefix dir");
        let d = dir.display();
        // Single process, in the foreground, everything under `dir`: the
        // test owns exactly one process and kills it. The `location` block
        // is the README's snippet.
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut nginx = Self {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(nginx.addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "nginx never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

/// A loopback address standing for the `k`-th distinct client.
fn client_ip(k: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, k))
}

/// Opens a WebSocket to `path` through `via` from source address `from`,
/// with an `X-Forwarded-For` of the client's own when `forged` is given.
async fn connect_from(via: SocketAddr, from: IpAddr, path: &str, forged: Option<&str>) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind source");
    let stream: TcpStream = socket.connect(via).await.expect("connect");
    let mut req = format!("ws://{via}{path}")
        .into_client_request()
        .expect("request");
    if let Some(f) = forged {
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(f).expect("header"));
    }
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket through the proxy");
    ws
}

/// A checking viewer through `via` from `from`.
async fn viewer_from(via: SocketAddr, from: IpAddr) -> Viewer {
    Viewer {
        ws: connect_from(via, from, "/ws/viewer", None).await,
        seen: Seen::default(),
    }
}

async fn refused_per_address(mut ws: Ws, cap: usize) {
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(
        reason.contains(&format!("per-address connection cap of {cap}")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_nginx_each_forwarded_client_has_its_own_places() {
    let mut cfg = config();
    cfg.max_per_ip = 2;
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    let server = start(cfg).await;
    let nginx = Nginx::start(server.addr);
    let via = nginx.addr;

    // A worker through nginx (from 127.0.0.1, the proxy's own address).
    let honest = worker(via, 1);
    // Six viewers from three clients, two each: three times the cap of the
    // one TCP peer the server sees, all admitted, all playing.
    let mut viewers = Vec::new();
    for k in 2..=4 {
        viewers.push(viewer_from(via, client_ip(k)).await);
        viewers.push(viewer_from(via, client_ip(k)).await);
    }
    for v in &mut viewers {
        v.receive(30).await;
    }
    wait_stats(server.addr, "6 viewers and the worker", |s| {
        s["viewers"] == 6 && s["workers"] == 1
    })
    .await;
    // A third from one of them is over its own cap...
    refused_per_address(connect_from(via, client_ip(3), "/ws/viewer", None).await, 2).await;
    refused_per_address(connect_from(via, client_ip(3), "/ws/worker", None).await, 2).await;
    // ...and forging the header does not get it another address: nginx
    // appends the real one, the rightmost untrusted hop.
    let forged = connect_from(via, client_ip(3), "/ws/viewer", Some("203.0.113.7")).await;
    refused_per_address(forged, 2).await;
    // A client connecting directly is not a proxy: its header is ignored.
    let direct = client_ip(9);
    let _a = connect_from(server.addr, direct, "/ws/viewer", Some("203.0.113.1")).await;
    let _b = connect_from(server.addr, direct, "/ws/viewer", Some("203.0.113.2")).await;
    let c = connect_from(server.addr, direct, "/ws/viewer", Some("203.0.113.3")).await;
    refused_per_address(c, 2).await;
    // Everyone admitted is still playing.
    for v in &mut viewers {
        let target = v.seen.frames + 30;
        v.receive(target).await;
    }
    honest.abort();
    drop(nginx);
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_the_forwarded_header_is_ignored() {
    let mut cfg = config();
    cfg.max_per_ip = 3;
    let server = start(cfg).await;
    let nginx = Nginx::start(server.addr);
    let via = nginx.addr;
    // The worker connects directly, from 127.0.0.1: nginx's address too.
    let honest = worker(server.addr, 1);
    wait_stats(server.addr, "the worker", |s| s["workers"] == 1).await;
    // Distinct clients, but the server only believes the TCP peer: nginx.
    let mut first = viewer_from(via, client_ip(2)).await;
    let _second = viewer_from(via, client_ip(3)).await;
    refused_per_address(connect_from(via, client_ip(4), "/ws/viewer", None).await, 3).await;
    refused_per_address(connect_from(via, client_ip(5), "/ws/worker", None).await, 3).await;
    // The page and the API still work through the proxy.
    let body = http_get(via, "/healthz").await;
    assert_eq!(body, "ok\n");
    first.receive(30).await;
    honest.abort();
    drop(nginx);
    server.shutdown(Duration::from_secs(3)).await;
}
