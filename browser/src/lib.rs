//! The browser side that the viewer and the worker share: one reconnecting
//! WebSocket, the guards that unhook JS callbacks, a shared cell that never
//! panics on re-entry, and the worker's statistics as one typed shape.
//!
//! - [`reconnect`]: the reconnect state machine, sans-IO (events and a clock in,
//!   what to do out), unit-tested natively.
//! - [`socket`]: the WebSocket shell that drives a [`reconnect::Reconnect`] and hands
//!   its owner typed [`socket::Event`]s.
//! - [`callback`]: [`callback::JsCallback`] and [`callback::Timeout`], a
//!   listener or timer that is removed or cleared when dropped.
//! - [`shared`]: [`shared::Shared`], the owner's state behind a `RefCell`
//!   that defers, never panics, when a callback arrives while it is borrowed.
//! - [`stats`]: [`stats::WorkerStats`], what the Web Worker posts to the
//!   page, with its one conversion to and from a JS value.

pub mod callback;
pub mod reconnect;
pub mod shared;
pub mod socket;
pub mod stats;
