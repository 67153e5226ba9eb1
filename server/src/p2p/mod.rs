//! The peer relay (issue 16): viewers relay the broadcast to each other
//! over WebRTC data channels, so the server's egress stops growing with
//! every viewer.
//!
//! # The trust rule
//!
//! The server stays the source of truth. A peer-fed viewer gets from the
//! server, for every batch, its `Digest` (a BLAKE3 hash of the exact
//! `Frames` message, computed once per batch), and plays or relays only
//! bytes that hash to it. A peer can delay, drop or corrupt a batch but
//! never make anyone show a forged frame: a corrupt batch is reported
//! (`Report`: its relay is barred once children at two addresses say so,
//! and a reporter that keeps reporting becomes the suspect; see
//! [`tree`]), a late one fetched from the server (`Fetch`, only batches
//! owed, each once) and its relay struck. The offload ratio is measured on the
//! server over the last minute ([`OffloadWindow`]): bytes of batches it did
//! not send to viewers that proved they hold them (`Proof`: a hash of the
//! exact bytes bound to the viewer's id), against the bytes it did send;
//! what viewers merely claim (a `Link` up, digests instead of batches) is
//! counted apart.
//!
//! # Why no TURN
//!
//! A relay only saves egress if it does not come back through a server:
//! a TURN relay would carry every byte the WebSocket would, and cost a
//! second service. The WebSocket is the relay of last resort instead: a
//! viewer whose data channel cannot be set up or is lost is simply fed by
//! the server, as every viewer was before.
//!
//! # Layout
//!
//! - [`tree`]: the sans-IO [`tree::RelayTree`] (who feeds whom; every
//!   change returns the `Assign`s to send);
//! - [`hub`]: the IO side the viewer connections share: the tree behind a
//!   lock, each member's control channel (so a change reaches the other
//!   viewers' tasks), signal forwarding and the ICE candidate filter.
//!
//! The viewer connection (`crate::endpoint::viewer`) decodes the messages and
//! chooses, per batch, `Frames` or its `Digest`.

pub mod filter;
pub mod hub;
pub mod tree;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Stats;

/// Whether viewers relay the broadcast to each other (`--p2p`, see
/// [`crate::p2p`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum P2pMode {
    /// Never: `Peering` goes unanswered and every viewer is served by the
    /// server, exactly as without P2P.
    Off,
    /// Peers feed peers once `--p2p-min-viewers` viewers joined the tree.
    Auto,
    /// Peers feed peers whenever there are two.
    On,
}

/// The offload ratios are measured over this recent window.
pub const OFFLOAD_WINDOW: Duration = Duration::from_secs(60);

/// The relay's figures over [`OFFLOAD_WINDOW`], from the server's own
/// counters, sampled at most once a second.
#[derive(Debug, Default)]
pub struct OffloadWindow {
    /// (when, [confirmed, claimed, direct]) counter readings, oldest first.
    samples: Mutex<VecDeque<(Instant, [u64; 3])>>,
}

/// The offload ratios of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// Of the batch bytes viewers needed, the share peers delivered as
    /// proven by the viewers (a `Proof` of the exact bytes), in
    /// thousandths: what the server measurably saved.
    pub confirmed: u16,
    /// The share announced by digest to viewers that said their link was
    /// up (proven or not), in thousandths: claims, shown apart.
    pub claimed: u16,
}

impl OffloadWindow {
    /// The ratios over the last [`OFFLOAD_WINDOW`] at `now`.
    pub fn read(&self, stats: &Stats, now: Instant) -> Offload {
        let cur = [
            stats.p2p_bytes_confirmed.get(),
            stats.p2p_batch_bytes_offloaded.get(),
            stats.viewer_batch_bytes_direct.get(),
        ];
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples
            .back()
            .is_none_or(|&(t, _)| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            samples.push_back((now, cur));
        }
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|&(t, _)| now.saturating_duration_since(t) >= OFFLOAD_WINDOW)
        {
            samples.pop_front();
        }
        let old = samples.front().map_or([0; 3], |&(_, c)| c);
        let d = |i: usize| cur[i].saturating_sub(old[i]);
        Offload {
            confirmed: ratio(d(0), d(2), 0),
            claimed: ratio(d(1), d(2), 0),
        }
    }
}

/// The offload ratio in thousandths since start, from the server's own
/// counters: of the batch bytes viewers needed (sent directly, or
/// announced by digest), the share announced by digest, fallbacks (sent
/// twice) taken back. Claims: see [`OffloadWindow`] for the measured one.
pub fn offload_permille(stats: &Stats) -> u16 {
    ratio(
        stats.p2p_batch_bytes_offloaded.get(),
        stats.viewer_batch_bytes_direct.get(),
        stats.p2p_fallback_bytes.get(),
    )
}

/// `(offloaded − fallback) / (offloaded + direct − fallback)` in
/// thousandths, the numerator floored at 0 (`direct` includes the
/// fallbacks).
fn ratio(offloaded: u64, direct: u64, fallback: u64) -> u16 {
    let delivered = offloaded.saturating_sub(fallback);
    let needed = (offloaded + direct).saturating_sub(fallback);
    if needed == 0 {
        return 0;
    }
    (u128::from(delivered) * 1000 / u128::from(needed)).min(1000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_proofs_apart_from_claims_and_forgets_the_old() {
        let stats = Stats::default();
        let w = OffloadWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.read(&stats, t0), Offload::default());
        // A minute of claims only (digests to viewers that linked, no
        // proof): claimed, not confirmed.
        stats.p2p_batch_bytes_offloaded.add(900);
        stats.viewer_batch_bytes_direct.add(100);
        let r = w.read(&stats, t0 + Duration::from_secs(30));
        assert_eq!((r.confirmed, r.claimed), (0, 900));
        // Then proven deliveries: the figure follows the last minute only.
        stats.p2p_bytes_confirmed.add(300);
        stats.viewer_batch_bytes_direct.add(100);
        let r = w.read(&stats, t0 + Duration::from_secs(61));
        assert_eq!(r.confirmed, 600, "{r:?}");
        for s in 62..200 {
            w.read(&stats, t0 + Duration::from_secs(s));
        }
        // Nothing moved for two minutes: nothing to measure.
        assert_eq!(
            w.read(&stats, t0 + Duration::from_secs(200)),
            Offload::default()
        );
    }

    #[test]
    fn the_offload_ratio_counts_fallbacks_against_peers() {
        assert_eq!(super::ratio(0, 0, 0), 0);
        assert_eq!(super::ratio(0, 500, 0), 0);
        assert_eq!(super::ratio(300, 100, 0), 750);
        // 100 of the 300 offloaded came again from the server.
        assert_eq!(super::ratio(300, 200, 100), 500);
        assert_eq!(super::ratio(10, 500, 100), 0);
    }
}
