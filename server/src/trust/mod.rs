//! Trust: why no forged or malformed frame reaches a viewer, and why no
//! client, cheating or merely idle, can stall the show.
//!
//! A result passes four gates before it can reach a viewer (see
//! [`crate::endpoint::worker`]): the decoder checks every frame's symbols *and
//! layout* (`donut_shared::frame::validate_frame`) whatever the policy; the
//! scheduler checks the header against the task it gave; then the
//! [`VerifyPolicy`](crate::trust::verifier::VerifyPolicy) decides how the glyphs are
//! trusted:
//!
//! - `full` (the default): the [`verifier`] re-renders every frame natively.
//!   About 20 µs a frame on one core, so 60 fps costs ~0.1% of a core: zero
//!   forged frames for the price of nothing, for this scene.
//! - `quorum`: for scenes too costly to re-render, as BOINC does. A range is
//!   broadcast once two workers from different addresses returned the same
//!   bytes; the server re-renders only to settle a disagreement, or a vote
//!   left alone for too long (see [`quorum`]). The liar is struck.
//! - `sample`: a share of each batch, falling with the address's record. For
//!   benchmarks and for fleets far faster than playback; a patient cheater
//!   gets some frames through (BENCHMARKS.md measures how many).
//!
//! Every judgement is about an *address* ([`reputation`]), not a
//! connection: strikes, trust, bans and missed tasks survive reconnects, and
//! repeated bans grow longer. Whoever judges (the worker endpoint or the
//! quorum referee) sanctions by one rule, [`sanction`]: strike, ban at the
//! limit, evict the address's workers, share the ban with the cluster.

pub mod check;
pub mod quorum;
pub mod reputation;
pub mod sanction;
pub mod verifier;
