//! The one sanctions rule: strike → ban → evict → share, for every judge of
//! an address (the worker endpoint, `worker_conn`, for what a connection
//! sends; the [`quorum`](super::quorum) referee for a vote it settled,
//! whose connection may be gone).
//!
//! - A violation is a *strike* on the address ([`Reputation::strike`]):
//!   its trust is gone, and at `max_strikes` strikes it is *cut off*. A
//!   flood is cut off at once ([`Sanctions::cut_off`]).
//! - A cut-off bans the address for the reputation's ban length (longer
//!   each time); with bans off (`--ban-secs 0`) it bans nobody, and only
//!   the offending connection, if the judge has one, is closed.
//! - A ban is counted once (`workers_banned`: bans imposed, whoever judged),
//!   evicts the address's other workers from the core, and is shared with
//!   every node of a cluster (the [`Share`] the engine gives).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::core::Core;
use crate::metrics::Stats;
use crate::trust::reputation::{AddrKey, Reputation};

/// Shares a ban of an address, for a length, with the other nodes of a
/// cluster (`Engine::ban_share`).
pub type Share = Arc<dyn Fn(AddrKey, Duration) + Send + Sync>;

/// An address was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutOff {
    /// The ban it earned (`None`: bans are off).
    pub ban: Option<Duration>,
    /// The strikes that led to it (0: a flood, cut off at once).
    pub strikes: u32,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Sanctions {
    core: Arc<Core>,
    reputation: Arc<Reputation>,
    stats: Arc<Stats>,
    share: Option<Share>,
}

impl Sanctions {
    /// Sanctions over these parts, shared with no other node.
    pub fn new(core: Arc<Core>, reputation: Arc<Reputation>, stats: Arc<Stats>) -> Self {
        Self {
            core,
            reputation,
            stats,
            share: None,
        }
    }

    /// The same sanctions, each ban shared through `share` (`None`: one
    /// node).
    pub fn sharing(self, share: Option<Share>) -> Self {
        Self { share, ..self }
    }

    /// A violation by `addr` (`why`, for the log): counted and struck; the
    /// cut-off if it reached the strike limit.
    pub fn strike(&self, addr: AddrKey, why: &str) -> Option<CutOff> {
        self.stats.strikes.inc();
        let strike = self.reputation.strike(addr, Instant::now());
        warn!(%addr, strikes = strike.strikes, "strike: {why}");
        if strike.strikes < self.reputation.max_strikes() {
            return None;
        }
        self.impose(addr, strike.banned_for);
        Some(CutOff {
            ban: strike.banned_for,
            strikes: strike.strikes,
        })
    }

    /// Cuts `addr` off now, whatever its strikes (a flood).
    pub fn cut_off(&self, addr: AddrKey) -> CutOff {
        let ban = self.reputation.ban(addr, Instant::now());
        self.impose(addr, ban);
        CutOff { ban, strikes: 0 }
    }

    /// The core this rule evicts from.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The reputation it strikes.
    pub fn reputation(&self) -> &Arc<Reputation> {
        &self.reputation
    }

    /// The counters it counts on.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// A ban (if bans are on): counted, the address's workers evicted, the
    /// ban shared.
    fn impose(&self, addr: AddrKey, ban: Option<Duration>) {
        let Some(length) = ban else {
            return;
        };
        self.stats.workers_banned.inc();
        self.core.evict(addr);
        if let Some(share) = &self.share {
            share(addr, length);
        }
    }
}
