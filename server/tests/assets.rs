//! The embedded web client is served like a modern site, over a real
//! socket: ETag and Last-Modified, 304 for a current cache, brotli or gzip
//! when asked (decompressing to exactly the file in `www/`), and nothing
//! compressed where it would not help (`/metrics`, the WebSocket upgrade).

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, head, raw body.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    /// A header's value, by case-insensitive name.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// GET over HTTP/1.0 (so the body ends at the close, never chunked),
/// with `extra` header lines.
async fn get(addr: SocketAddr, path: &str, extra: &[String]) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(HANG, s.read_to_end(&mut out))
        .await
        .expect("a response in time")
        .expect("read response");
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    Reply {
        status,
        head,
        body: out[end + 4..].to_vec(),
    }
}

fn www(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../www")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_carry_validators_and_answer_304_when_current() {
    let server = start(config()).await;
    let addr = server.addr;
    for (path, file) in [
        ("/", "index.html"),
        ("/main.js", "main.js"),
        ("/style.css", "style.css"),
    ] {
        let r = get(addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert_eq!(r.body, www(file), "{path}");
        let etag = r.header("etag").expect("an ETag").to_owned();
        assert!(etag.starts_with("W/\"") && etag.len() == 68, "{etag}");
        let modified = r.header("last-modified").expect("Last-Modified").to_owned();
        assert!(modified.ends_with("GMT"), "{modified}");
        assert_eq!(r.header("cache-control"), Some("no-cache"));

        // The browser's revalidation: 304, no body, the same validators.
        let again = get(addr, path, &[format!("If-None-Match: {etag}")]).await;
        assert_eq!(again.status, 304, "{path}: {}", again.head);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        // Strong form of the same tag, in a list: still current.
        let strong = etag.trim_start_matches("W/");
        let listed = get(addr, path, &[format!("If-None-Match: \"nope\", {strong}")]).await;
        assert_eq!(listed.status, 304, "{path}: {}", listed.head);
        // Another tag: the full file.
        let other = get(addr, path, &["If-None-Match: \"nope\"".to_owned()]).await;
        assert_eq!(other.status, 200);
        assert_eq!(other.body, www(file));
        // If-Modified-Since, when no If-None-Match.
        let since = get(addr, path, &[format!("If-Modified-Since: {modified}")]).await;
        assert_eq!(since.status, 304, "{path}: {}", since.head);
    }
    let missing = get(addr, "/nope.js", &[]).await;
    assert_eq!(missing.status, 404);
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_compressed_as_asked_and_decompress_to_the_file() {
    let server = start(config()).await;
    let addr = server.addr;
    for (path, file) in [
        ("/", "index.html"),
        ("/main.js", "main.js"),
        ("/style.css", "style.css"),
    ] {
        let original = www(file);

        let br = get(addr, path, &["Accept-Encoding: br".to_owned()]).await;
        assert_eq!(br.status, 200);
        assert_eq!(
            br.header("content-encoding"),
            Some("br"),
            "{path}: {}",
            br.head
        );
        assert!(
            br.header("vary")
                .is_some_and(|v| v.contains("accept-encoding"))
        );
        assert!(br.header("etag").is_some(), "{}", br.head);
        let mut plain = Vec::new();
        brotli::Decompressor::new(br.body.as_slice(), 4096)
            .read_to_end(&mut plain)
            .expect("valid brotli");
        assert_eq!(plain, original, "{path} via brotli");
        assert!(
            br.body.len() < original.len(),
            "{path}: brotli made it no smaller"
        );

        let gz = get(addr, path, &["Accept-Encoding: gzip".to_owned()]).await;
        assert_eq!(
            gz.header("content-encoding"),
            Some("gzip"),
            "{path}: {}",
            gz.head
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.body.as_slice())
            .read_to_end(&mut plain)
            .expect("valid gzip");
        assert_eq!(plain, original, "{path} via gzip");

        // A browser that offers both gets one of them; one that offers
        // neither gets the file as is.
        let both = get(
            addr,
            path,
            &["Accept-Encoding: gzip, deflate, br".to_owned()],
        )
        .await;
        assert!(matches!(
            both.header("content-encoding"),
            Some("br" | "gzip")
        ));
        let identity = get(addr, path, &[]).await;
        assert_eq!(identity.header("content-encoding"), None);
        assert_eq!(identity.body, original);
    }

    // Not the operations endpoints or the WebSocket upgrade.
    let metrics = get(addr, "/metrics", &["Accept-Encoding: br, gzip".to_owned()]).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-encoding"), None, "{}", metrics.head);
    assert!(String::from_utf8_lossy(&metrics.body).contains("donut_"));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/ws/viewer"),
    )
    .expect("request");
    req.headers_mut().insert(
        "accept-encoding",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("gzip, br"),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade with Accept-Encoding");
    assert!(resp.headers().get("content-encoding").is_none());
    // And the stream over it is the plain protocol.
    let honest = worker(addr, 1);
    let mut viewer = Viewer {
        ws,
        seen: Seen::default(),
    };
    viewer.receive(30).await;
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

/// WebAssembly 1.0 (the MVP) plus mutable globals: what the compatibility
/// builds claim (build.sh re-emits them with exactly these features), so
/// what an engine like Chromium 69 or Safari 15 can compile.
fn mvp() -> wasmparser::WasmFeatures {
    wasmparser::WasmFeatures::WASM1 | wasmparser::WasmFeatures::MUTABLE_GLOBAL
}

/// The compatibility wasm packages are served like the rest, and what is
/// served validates with only the features they claim, while the default
/// builds (SIMD, reference types…) do not: the page's probes must choose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compat_wasm_is_served_and_is_webassembly_1_0() {
    let server = start(config()).await;
    let addr = server.addr;
    for (sub, name) in [("viewer", "donut_viewer"), ("worker", "donut_worker")] {
        let compat_path = format!("/pkg/{sub}-compat/{name}_bg.wasm");
        let compat = get(addr, &compat_path, &[]).await;
        assert_eq!(compat.status, 200, "{compat_path}: {}", compat.head);
        assert_eq!(compat.header("content-type"), Some("application/wasm"));
        assert_eq!(compat.body, www(&compat_path[1..]), "{compat_path}");
        if let Err(e) = wasmparser::Validator::new_with_features(mvp()).validate_all(&compat.body) {
            panic!("{compat_path} is not WebAssembly 1.0 + mutable globals: {e}");
        }
        let glue = format!("/pkg/{sub}-compat/{name}.js");
        let js = get(addr, &glue, &[]).await;
        assert_eq!(js.status, 200, "{glue}: {}", js.head);
        assert_eq!(js.body, www(&glue[1..]), "{glue}");

        let default_path = format!("/pkg/{sub}/{name}_bg.wasm");
        let default = get(addr, &default_path, &[]).await;
        assert_eq!(default.status, 200, "{default_path}: {}", default.head);
        wasmparser::Validator::new()
            .validate_all(&default.body)
            .unwrap_or_else(|e| panic!("{default_path} does not validate at all: {e}"));
        let refused = wasmparser::Validator::new_with_features(mvp()).validate_all(&default.body);
        assert!(
            refused.is_err(),
            "{default_path} validates as WebAssembly 1.0: the compatibility build would be pointless"
        );
    }
    server.shutdown(Duration::from_secs(3)).await;
}
