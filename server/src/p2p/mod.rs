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
//! (`Report`) and its relay barred, a late one fetched from the server
//! (`Fetch`) and its relay struck. The offload ratio is measured on the
//! server from what it sent (digests instead of batches, less the
//! fallbacks), never from what viewers claim.
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
//! The viewer connection (`crate::viewer_conn`) decodes the messages and
//! chooses, per batch, `Frames` or its `Digest`.

pub mod filter;
pub mod hub;
pub mod tree;

use crate::metrics::Stats;

/// The offload ratio in thousandths, from the server's own counters: of
/// the batch bytes viewers needed (sent directly, or announced by digest),
/// the share peers delivered, fallbacks (sent twice) taken back.
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
