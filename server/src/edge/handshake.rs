//! The HTTP half of a WebSocket handshake, checked before upgrading.
//!
//! [`Handshake`] is the extractor both endpoints take instead of axum's
//! `WebSocketUpgrade`. In order:
//!
//! 1. It is a WebSocket handshake at all (axum's checks: `GET`,
//!    `Connection: upgrade`, `Upgrade: websocket`, a key; 400 otherwise).
//! 2. The version is 13. axum answers any other `Sec-WebSocket-Version`
//!    with a bare 400; RFC 6455 §4.2.2 and §4.4 ask for
//!    `426 Upgrade Required` with `Sec-WebSocket-Version: 13`, so a client
//!    speaking another version learns which one to retry with.
//! 3. The page's `Origin` is allowed ([`crate::edge::origin`]; 403 otherwise).
//! 4. The client's address is resolved ([`crate::edge::client_addr`]).
//!
//! Everything after the upgrade (caps, bans) is admission, refused with a
//! close frame and a reason instead (see `app::admit`), because a browser
//! shows a script nothing of a refused handshake's status or body.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::edge::client_addr::ClientAddr;
use crate::edge::origin::OriginPolicy;
use crate::edge::send_queue::Peer;

/// The only WebSocket version there is (RFC 6455 §4.1).
pub const WEBSOCKET_VERSION: &str = "13";

/// A handshake that passed every check before the upgrade.
pub struct Handshake {
    /// The upgrade, to configure and complete.
    pub upgrade: WebSocketUpgrade,
    /// The client's address: the TCP peer, or what a trusted proxy
    /// forwarded ([`crate::edge::client_addr`]). Admission is keyed on it.
    pub client: IpAddr,
    /// The TCP connection.
    pub peer: Peer,
}

/// What the handshake needs of the state it runs against (axum's
/// substates, as a trait): the origins allowed and whose forwarded address
/// is believed. The server's `App` is one.
pub trait Gatekeeper: Send + Sync + 'static {
    /// Which pages may open a socket.
    fn origins(&self) -> &OriginPolicy;
    /// Whose forwarded client address is believed.
    fn client_addr(&self) -> &ClientAddr;
}

impl<S: Gatekeeper> FromRequestParts<Arc<S>> for Handshake {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<S>) -> Result<Self, Response> {
        let upgrade = match WebSocketUpgrade::from_request_parts(parts, app).await {
            Ok(u) => u,
            Err(WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_)) => {
                return Err(unsupported_version());
            }
            Err(other) => return Err(other.into_response()),
        };
        if let Err(refused) = app.origins().check(&parts.headers) {
            tracing::info!(reason = %refused.0.trim_end(), "handshake refused");
            return Err((StatusCode::FORBIDDEN, refused.0).into_response());
        }
        let ConnectInfo(peer) = ConnectInfo::<Peer>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let client = app.client_addr().resolve(peer.addr.ip(), &parts.headers);
        Ok(Self {
            upgrade,
            client,
            peer,
        })
    }
}

/// `426 Upgrade Required` naming the version we speak (RFC 6455 §4.4).
fn unsupported_version() -> Response {
    (
        StatusCode::UPGRADE_REQUIRED,
        [
            (
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(WEBSOCKET_VERSION),
            ),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
        ],
        "this server speaks WebSocket version 13 only\n",
    )
        .into_response()
}
