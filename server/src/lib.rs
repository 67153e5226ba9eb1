//! The Distributed Donut server: schedules frame ranges over a fleet of
//! browser and native workers, verifies and orders their results in a ring,
//! and broadcasts frames to every viewer.
//!
//! Data flow (one concept per module):
//!
//! ```text
//!  worker ──Result──▶ worker_conn ─decode─▶ scheduler.claim ─▶ verifier ─▶ core.accept ─▶ ring
//!                                                                                        │
//!  viewer ◀─Frames── viewer_conn ◀── fanout (Bytes, encoded once) ◀── core.tick (broadcaster)
//!  worker ◀─Task──── worker_conn ◀── core.dispatch ◀── scheduler (pace-sized, hedged)
//! ```
//!
//! - [`config`]: flags and environment variables.
//! - [`state`]: the shared state; [`app`]: router, start/stop; [`assets`]: the
//!   embedded web client.
//! - [`core`]: the stream's positions and invariants around the frame ring
//!   ([`donut_shared::ring`]) and [`scheduler`]; [`timeline`]: the scene
//!   every frame is drawn at once viewers steer.
//! - [`broadcaster`], [`telemetry`]: the two background tasks;
//!   [`fanout`]: the encoded batches out to viewers, and a joiner's
//!   catch-up.
//! - [`worker_conn`], [`viewer_conn`]: the two endpoints, each over a
//!   [`connection`] (keep-alive, limits, close, why it ended);
//!   [`send_queue`]: the bound on what a viewer leaves unread;
//!   [`transport`]: what a worker connection runs over, a [`connection`]
//!   or a [`pipe`] (channels to a socket on another node).
//! - [`trust`]: native re-rendering of results ([`trust::verifier`]),
//!   reputation by address, the quorum referee, and the one sanctions rule
//!   both judges use ([`trust::sanction`]).
//! - [`fleet`], [`limits`], [`fds`]: admission, caps, bans, close codes, the
//!   file-descriptor budget the caps must fit.
//! - [`handshake`], [`origin`], [`client_addr`]: checks before a WebSocket
//!   upgrade, and the client's address behind trusted proxies.
//! - [`p2p`]: the peer relay: viewers feed viewers over WebRTC, the
//!   server assigns the tree ([`p2p::tree`]), forwards signalling
//!   ([`p2p::hub`]) and announces each batch by its digest.
//! - [`metrics`]: `/metrics` and `/api/stats`.
//! - [`native_worker`]: `donut work`.
//! - [`engine`]: the one seam between the connections and what runs the
//!   stream, in this process ([`engine::Engine::Memory`]) or across a
//!   cluster; [`cluster`]: several nodes sharing one timeline through Redis
//!   (`--cluster`); absent, nothing of it runs.

pub mod app;
pub mod assets;
pub mod broadcaster;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod core;
pub mod engine;
pub mod fanout;
pub mod fds;
pub mod fleet;
pub mod handshake;
pub mod limits;
pub mod metrics;
pub mod native_worker;
pub mod origin;
pub mod p2p;
pub mod pipe;
pub mod scheduler;
pub mod send_queue;
pub mod state;
pub mod telemetry;
pub mod timeline;
pub mod transport;
pub mod trust;
pub mod viewer_conn;
pub mod worker_conn;
