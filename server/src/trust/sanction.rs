//! The one sanctions rule: strike → ban → evict → share, for every judge of
//! an address (the worker endpoint, `endpoint::worker`, for what a connection
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

use crate::metrics::Stats;
use crate::stream::core::Core;
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;

    use super::*;
    use crate::stream::fanout::Fanout;
    use crate::trust::reputation::{BanScope, ReputationConfig};

    /// The bans shared so far.
    type Shared = Vec<(AddrKey, Duration)>;

    /// Sanctions with `max_strikes` 3 and bans of `ban_secs`, recording
    /// what they share.
    fn sanctions(ban_secs: u64) -> (Sanctions, Arc<Mutex<Shared>>) {
        // `donut serve`'s defaults but for the strikes and the ban.
        let cfg = ReputationConfig {
            scope: BanScope::Address,
            max_strikes: 3,
            ban: Duration::from_secs(ban_secs),
            max_ban: Duration::from_secs(86_400_u64.max(ban_secs)),
            max_trust: 20,
        };
        let stats = Arc::new(Stats::default());
        let fanout = Arc::new(Fanout::new(64, Arc::clone(&stats)));
        let core = Arc::new(Core::new(
            crate::stream::core::tests::config(),
            Arc::clone(&stats),
            fanout,
            Instant::now(),
        ));
        let reputation = Arc::new(Reputation::new(cfg));
        let shared = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&shared);
        let share: Share = Arc::new(move |key, length| {
            log.lock().expect("not poisoned").push((key, length));
        });
        let s = Sanctions::new(core, reputation, stats).sharing(Some(share));
        (s, shared)
    }

    fn addr(s: &Sanctions, last: u8) -> AddrKey {
        s.reputation().key(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn the_third_strike_bans_once_and_shares_the_ban() {
        let (s, shared) = sanctions(60);
        let a = addr(&s, 1);
        assert_eq!(s.strike(a, "one"), None);
        assert_eq!(s.strike(a, "two"), None);
        let cut = s.strike(a, "three").expect("cut off at the third");
        assert_eq!(cut.strikes, 3);
        let ban = cut.ban.expect("bans are on");
        assert_eq!(s.stats().strikes.get(), 3);
        assert_eq!(s.stats().workers_banned.get(), 1);
        assert_eq!(*shared.lock().expect("not poisoned"), vec![(a, ban)]);
        assert!(s.reputation().banned(a, Instant::now()).is_some());
    }

    #[test]
    fn a_flood_is_cut_off_at_once() {
        let (s, shared) = sanctions(60);
        let a = addr(&s, 2);
        let cut = s.cut_off(a);
        assert_eq!(cut.strikes, 0);
        assert!(cut.ban.is_some());
        assert_eq!(s.stats().strikes.get(), 0);
        assert_eq!(s.stats().workers_banned.get(), 1);
        assert_eq!(shared.lock().expect("not poisoned").len(), 1);
    }

    #[test]
    fn with_bans_off_a_cut_off_bans_counts_and_shares_nothing() {
        let (s, shared) = sanctions(0);
        let a = addr(&s, 3);
        s.strike(a, "one");
        s.strike(a, "two");
        let cut = s.strike(a, "three").expect("still cut off");
        assert_eq!(cut.ban, None);
        assert_eq!(s.cut_off(a).ban, None);
        assert_eq!(s.stats().strikes.get(), 3);
        assert_eq!(s.stats().workers_banned.get(), 0);
        assert!(shared.lock().expect("not poisoned").is_empty());
    }
}
