//! The check of an answer's glyphs, run where the worker's socket is: on
//! the node with the core, or on a cluster follower's tunnel before the
//! answer goes up (see `conn::transport::Transport::CHECKED_UPSTREAM`).

use std::time::Instant;

use bytes::Bytes;
use donut_shared::scene::Scene;

use crate::metrics::Stats;
use crate::trust::reputation::{AddrKey, Reputation};
use crate::trust::verifier::Verifier;

/// Checks the packed `frames` of an answer from `key` (the task's first
/// frame and its scene) natively, at the positions the policy and the
/// address's trust pick; counts what was checked, cleans the address on a
/// pass. Returns the first wrong frame, if any (counted as rejected).
pub async fn check_answer(
    verifier: &Verifier,
    reputation: &Reputation,
    stats: &Stats,
    key: AddrKey,
    (start, scene): (u64, Scene),
    frames: Bytes,
) -> Option<u64> {
    let trust = reputation.trust(key);
    let verdict = verifier.verify(trust, (start, scene), frames).await;
    stats.frames_checked.add(u64::from(verdict.checked));
    if verdict.bad_frame.is_some() {
        stats.batches_rejected.inc();
    } else if verdict.checked > 0 {
        stats.batches_verified.inc();
        reputation.clean(key, Instant::now());
    }
    verdict.bad_frame
}
