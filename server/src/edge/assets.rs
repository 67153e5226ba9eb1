//! The embedded web client (`www/`, with the wasm packages), served like a
//! modern site: validators, conditional requests, compression.
//!
//! - `ETag: W/"<sha256 of the file>"` (the hash rust-embed computes at build
//!   time) and `Last-Modified` (the file's time, RFC 9110 §8.8).
//! - `Cache-Control: no-cache`: a browser revalidates on every load, so a
//!   new release is never hidden behind a stale cache, and an unchanged
//!   file costs a `304 Not Modified` with no body (`If-None-Match`, else
//!   `If-Modified-Since`; RFC 9110 §13.1).
//! - gzip or brotli, as the browser asks (`Accept-Encoding`), from
//!   tower-http's `CompressionLayer`, for HTML, JS, CSS and wasm alike
//!   (its default predicate skips images and bodies under 32 bytes). Only
//!   these routes are compressed: the WebSocket handshakes have no body and
//!   their frames are already compact, and `/metrics` is scraped over
//!   short distances.
//!
//! The ETag is weak because the bytes on the wire depend on the content
//! coding chosen per request, while the tag names the file: a strong tag
//! would claim byte-identical representations (RFC 9110 §8.8.3), and
//! `If-None-Match` compares weakly anyway (§13.1.2).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use tower_http::compression::CompressionLayer;

/// The web client, embedded at build time from `www/`.
#[derive(rust_embed::Embed)]
#[folder = "../www"]
struct Assets;

/// The fallback route serving the embedded files, compressed.
pub fn route<S: Clone + Send + Sync + 'static>() -> MethodRouter<S> {
    get(asset).layer(CompressionLayer::new().gzip(true).br(true))
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let modified = file
        .metadata
        .last_modified()
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    let mut validators = vec![
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if let Some(t) = modified
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t))
    {
        validators.push((header::LAST_MODIFIED, v));
    }
    if not_modified(&headers, &etag, modified) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().extend(validators);
        return r;
    }
    let mut r = file.data.into_response();
    let h = r.headers_mut();
    h.extend(validators);
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

/// `W/"<64 hex digits>"`.
fn etag(sha256: &[u8; 32]) -> HeaderValue {
    use std::fmt::Write;
    let mut s = String::with_capacity(70);
    s.push_str("W/\"");
    for b in sha256 {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("W/\"\""))
}

/// Whether the request's validators say its cached copy is current:
/// `If-None-Match` when present (any listed tag, weakly compared, or `*`),
/// else `If-Modified-Since` (RFC 9110 §13.2.2's order).
fn not_modified(
    headers: &HeaderMap,
    etag: &HeaderValue,
    modified: Option<std::time::SystemTime>,
) -> bool {
    let opaque = |t: &[u8]| -> Vec<u8> {
        let t = t.trim_ascii();
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    let ours = opaque(etag.as_bytes());
    let mut lists = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if lists.peek().is_some() {
        return lists
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii() == b"*" || opaque(t) == ours);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((modified, since), (Some(m), Some(s)) if m <= s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn conditional_requests_follow_rfc_9110() {
        let tag = etag(&[0xab; 32]);
        let t = tag.to_str().expect("ascii").to_owned();
        assert!(t.starts_with("W/\"abab") && t.len() == 68, "{t}");
        let strong = t.trim_start_matches("W/").to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {strong}")).expect("header"),
        );
        assert!(not_modified(&h, &tag, None));
        assert!(not_modified(&with(header::IF_NONE_MATCH, "*"), &tag, None));
        assert!(!not_modified(
            &with(header::IF_NONE_MATCH, "\"x\""),
            &tag,
            None
        ));
        let t0 = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        let ims = with(header::IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(not_modified(&ims, &tag, Some(t0)));
        let later = t0 + std::time::Duration::from_secs(1);
        assert!(!not_modified(&ims, &tag, Some(later)));
        // If-None-Match wins over If-Modified-Since.
        let mut both = ims.clone();
        both.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!not_modified(&both, &tag, Some(t0)));
    }
}
