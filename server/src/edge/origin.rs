//! Which web pages may open our WebSockets: the `Origin` check.
//!
//! Browsers do not apply the same-origin policy to WebSockets: any page on
//! any site can open `ws://our-host/ws/worker` from its visitors' browsers
//! and spend their CPU (or their per-address places) on us, and the
//! handshake carries no CORS preflight. What browsers do send is `Origin`
//! (RFC 6454, required by RFC 6455 §4.1 for browser clients), which a page
//! cannot forge. So a handshake whose `Origin` is not ours is refused with
//! HTTP 403 before upgrading (RFC 6455 §4.2.2: "If the server does not wish
//! to accept this connection, it MUST return an appropriate HTTP error code
//! (e.g., 403 Forbidden)").
//!
//! "Ours" is the same origin by default: the `Origin`'s host and port equal
//! the request's `Host` (so the page this server itself served is always
//! welcome, on any address it is reached by), plus whatever
//! `--allowed-origins` lists, or every origin with `*` (deliberately: a
//! page elsewhere embedding this stream). A request without `Origin` is not
//! from a browser page (`donut work`, tests, tools): the check does not
//! apply to it, since such a client could write any `Origin` it liked.
//!
//! Behind a reverse proxy the proxy must pass the client's `Host` through
//! (nginx: `proxy_set_header Host $http_host;`), or the origins must be
//! listed.

use axum::http::{HeaderMap, header};

/// The origins allowed to open WebSockets, besides the same origin.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    /// Normalised `scheme://host:port`.
    allowed: Vec<String>,
}

/// Why a handshake's origin was refused; the text is the 403's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl OriginPolicy {
    /// A policy from `--allowed-origins` entries: `scheme://host[:port]`
    /// each, or `*` for every origin.
    ///
    /// # Errors
    /// An entry that is not an origin, with the entry in the message.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if e == "*" {
                policy.any = true;
            } else {
                let o = normalise(e).ok_or_else(|| {
                    format!("--allowed-origins: {e:?} is not an origin like https://example.com")
                })?;
                policy.allowed.push(o);
            }
        }
        Ok(policy)
    }

    /// Checks a handshake's headers: `Ok` when it has no `Origin`, when its
    /// `Origin` is the request's `Host`, or when it is allowed.
    ///
    /// # Errors
    /// [`Refused`] naming the origin.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let text = String::from_utf8_lossy(origin.as_bytes());
        let refuse = || Refused(format!("origin {text} may not connect to this server\n"));
        // "null" (sandboxed frames, file: pages) and anything unparsable
        // never match.
        let origin = normalise(&text).ok_or_else(refuse)?;
        if self.allowed.contains(&origin) {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(refuse)?;
        // The Host carries no scheme: a missing port is the origin
        // scheme's default (`https://example.com` behind a TLS proxy
        // arrives with `Host: example.com`).
        let scheme = origin.split("://").next().unwrap_or_default();
        match normalise(&format!("{scheme}://{host}")) {
            Some(same) if same == origin => Ok(()),
            _ => Err(refuse()),
        }
    }
}

/// `scheme://host[:port]` as lower-case `scheme://host:port`, with the
/// scheme's default port made explicit (RFC 6454 §4 compares scheme, host
/// and port). `None` for anything else, including a path or `null`.
fn normalise(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // An IPv6 literal is bracketed; its colons are not the port's.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], rest[i + 1..].parse::<u16>().ok()?),
        _ => (rest, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn same_origin_and_no_origin_are_welcome() {
        let p = OriginPolicy::default();
        assert!(p.check(&headers(None, "a.test:8080")).is_ok());
        assert!(
            p.check(&headers(Some("http://a.test:8080"), "a.test:8080"))
                .is_ok()
        );
        assert!(
            p.check(&headers(Some("HTTP://A.test:8080"), "a.test:8080"))
                .is_ok()
        );
        assert!(p.check(&headers(Some("https://a.test"), "a.test")).is_ok());
        assert!(
            p.check(&headers(Some("http://a.test"), "a.test:80"))
                .is_ok()
        );
        assert!(
            p.check(&headers(Some("http://[::1]:81"), "[::1]:81"))
                .is_ok()
        );
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let p = OriginPolicy::default();
        for (o, host) in [
            ("http://evil.test", "a.test"),
            ("http://a.test:8081", "a.test:8080"),
            ("https://a.test", "a.test:80"),
            ("null", "a.test"),
            ("http://a.test@evil.test", "a.test"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
            assert!(p.check(&h).is_err(), "{o} vs {host}");
        }
        let listed = OriginPolicy::new(&["https://b.test".into(), "http://c.test:3000/".into()])
            .expect("origins");
        assert!(
            listed
                .check(&headers(Some("https://b.test:443"), "a.test"))
                .is_ok()
        );
        assert!(
            listed
                .check(&headers(Some("http://c.test:3000"), "a.test"))
                .is_ok()
        );
        assert!(
            listed
                .check(&headers(Some("http://b.test"), "a.test"))
                .is_err()
        );
        let any = OriginPolicy::new(&["*".into()]).expect("origins");
        assert!(any.check(&headers(Some("null"), "a.test")).is_ok());
    }

    #[test]
    fn entries_that_are_not_origins_are_refused_at_start() {
        assert!(OriginPolicy::new(&["example.com".into()]).is_err());
        assert!(OriginPolicy::new(&["https://example.com/page".into()]).is_err());
        assert!(OriginPolicy::new(&["ftp://example.com".into()]).is_err());
    }
}
