//! The stream: one timeline of frames, scheduled, ordered and sent.
//!
//! - [`core`]: the stream's positions and invariants around the frame ring
//!   ([`donut_shared::ring`]) and the [`scheduler`] (who renders which
//!   range);
//! - [`timeline`]: the scene every frame is drawn at, once viewers steer;
//! - [`fanout`]: the encoded batches out to viewers, and a joiner's
//!   catch-up;
//! - [`broadcaster`], [`telemetry`]: the two background tasks (the stream's
//!   clock, and the figures every viewer sees).

pub mod broadcaster;
pub mod core;
pub mod fanout;
pub mod scheduler;
pub mod telemetry;
pub mod timeline;
