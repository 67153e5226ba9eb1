//! The Distributed Donut server: schedules frame ranges over a fleet of
//! browser and native workers, verifies and orders their results in a ring,
//! and broadcasts frames to every viewer.
//!
//! Data flow:
//!
//! ```text
//!  worker ──Result──▶ endpoint::worker ─decode─▶ scheduler.claim ─▶ verifier ─▶ core.accept ─▶ ring
//!                                                                                             │
//!  viewer ◀─Frames── endpoint::viewer ◀── fanout (Bytes, encoded once) ◀── core.tick (broadcaster)
//!  worker ◀─Task──── endpoint::worker ◀── core.dispatch ◀── scheduler (pace-sized, hedged)
//! ```
//!
//! # Layout
//!
//! The crate is laid out by capability, one folder each:
//!
//! - [`edge`]: before the upgrade: [`edge::handshake`], [`edge::origin`],
//!   [`edge::client_addr`] (the client's address behind trusted proxies),
//!   [`edge::assets`] (the embedded web client), [`edge::fds`] (the
//!   file-descriptor budget the caps must fit), [`edge::send_queue`] (the
//!   bound on what a viewer leaves unread).
//! - [`conn`]: one connection: [`conn::connection`] (keep-alive, limits,
//!   close, why it ended), [`conn::transport`] (a [`conn::connection`] or a
//!   [`conn::pipe`], channels to a socket on another node),
//!   [`conn::limits`], [`conn::fleet`] (admission, caps, close codes).
//! - [`endpoint`]: the two endpoints, [`endpoint::worker`] and
//!   [`endpoint::viewer`].
//! - [`stream`]: [`stream::core`] (the stream's positions and invariants
//!   around the frame ring, [`donut_shared::ring`]), [`stream::scheduler`],
//!   [`stream::fanout`] (encoded batches out, a joiner's catch-up),
//!   [`stream::broadcaster`] and [`stream::telemetry`] (the two background
//!   tasks), [`stream::timeline`] (the scene every frame is drawn at once
//!   viewers steer). The scheduler is a folder of its concerns: the
//!   picking policy (`mod.rs`), per-worker and range bookkeeping.
//! - [`trust`]: native re-rendering of results ([`trust::verifier`]),
//!   reputation by address, the check of an answer's glyphs
//!   ([`trust::check`]), the quorum referee, and the one sanctions rule
//!   both judges use ([`trust::sanction`]).
//! - [`p2p`]: the peer relay: viewers feed viewers over WebRTC, the
//!   server assigns the tree ([`p2p::tree`]), forwards signalling
//!   ([`p2p::hub`]) and announces each batch by its digest.
//! - [`cluster`]: several nodes sharing one timeline through Redis
//!   (`--cluster`); absent, nothing of it runs. A node is handed the parts
//!   it drives ([`cluster::deps::NodeDeps`]), never the state.
//!
//! At the top: [`app`] (router, start/stop: the one module that wires the
//! parts), [`state`] (the shared state), [`engine`] (the one seam between
//! the connections and what runs the stream, in this process
//! ([`engine::Engine::Memory`]) or across a cluster; nothing else names
//! the cluster's node), [`config`] (flags and environment variables, and
//! every component config derived from them in `config/derive.rs`),
//! [`metrics`] (`/metrics` and `/api/stats`), [`native_worker`] (`donut
//! work`).
//!
//! # Imports
//!
//! Imports point down this ladder, never up (a module may import its own
//! rung or lower):
//!
//! ```text
//!  app                     wires the parts
//!  endpoint                a protocol over one connection, against the state
//!  state, native_worker    the shared App; `donut work`
//!  engine                  the seam: one node or a cluster
//!  config                  flags, and every component config derived from them
//!  cluster                 several nodes, given the parts it needs
//!  stream trust p2p conn edge metrics    the domains
//! ```
//!
//! So nothing below `state` imports `state`, and no domain imports
//! `config` (each domain owns its config type and enums; `config` derives
//! them). The domains may use each other, but no cycle of modules may cross
//! a capability folder (a cycle inside one folder is that folder's
//! business). `tests/layout.rs` checks both on the source.

pub mod app;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod edge;
pub mod endpoint;
pub mod engine;
pub mod metrics;
pub mod native_worker;
pub mod p2p;
pub mod state;
pub mod stream;
pub mod trust;
