//! The edge: what runs before a WebSocket upgrade, and the bound on what a
//! viewer leaves unread once upgraded.
//!
//! - [`handshake`]: the checks a request passes before its upgrade
//!   (origin, role caps, bans, protocol version);
//! - [`origin`]: which pages may open a socket;
//! - [`client_addr`]: the client's address behind trusted proxies;
//! - [`assets`]: the embedded web client;
//! - [`fds`]: the file-descriptor budget the caps must fit;
//! - [`send_queue`]: how much a viewer may leave unread.

pub mod assets;
pub mod client_addr;
pub mod fds;
pub mod handshake;
pub mod origin;
pub mod send_queue;
