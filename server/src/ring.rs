//! The frame ring: the bounded store of accepted frames keyed by absolute
//! frame number, [`donut_shared::ring::FrameRing`] (the viewer's jitter
//! buffer is the same ring).
//!
//! The server allocates it once, `capacity × 880` bytes sized by
//! configuration (the Go original allocates a fixed 90 MiB), and its base is
//! the playback head. Invariants (upheld by the caller, [`crate::core::Core`],
//! and checked by the ring):
//! - only frames within `[base, base + capacity)` are stored, where `base` is
//!   the oldest frame still needed (the playback head);
//! - a stored frame is never overwritten by a different frame number until
//!   `base` has moved past it.

pub use donut_shared::ring::{FrameRing, RingError};
