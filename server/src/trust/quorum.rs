//! The `quorum` policy's referee: settles what two addresses' votes cannot.
//!
//! Under `quorum` (after BOINC's replication with a quorum of two) the
//! server renders nothing while workers agree: a range is accepted when a
//! worker of a second address returns the very bytes of the first vote
//! ([`Core::vote`]). The referee re-renders natively only
//!
//! - to settle a *dispute* (two votes differ): whoever is wrong is struck,
//!   a right answer is accepted, and if both are wrong the range starts
//!   over with no vote;
//! - to settle a *lone vote* that waited `--quorum-wait-ms` without a
//!   worker of another address to check it (a fleet of one address, or
//!   every other address busy): the server is then the second voter, so
//!   playback never waits on the quorum beyond that.
//!
//! Two colluding addresses that return the same forged bytes defeat a
//! quorum of two; that is why `full` is the default for this scene, whose
//! frames are cheap to re-render.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::Stats;
use crate::stream::core::{Candidate, Core};
use crate::trust::reputation::{AddrKey, Reputation};
use crate::trust::sanction::Sanctions;
use crate::trust::verifier::VerifyPolicy;
use crate::trust::verifier::{Trust, Verifier};

/// Re-renders disputed and lone votes; strikes liars. Cheap to clone.
#[derive(Clone)]
pub struct Referee {
    core: Arc<Core>,
    reputation: Arc<Reputation>,
    stats: Arc<Stats>,
    verifier: Verifier,
    /// How a liar is sanctioned (and its ban shared, in a cluster).
    sanctions: Sanctions,
}

impl Referee {
    /// A referee over the parts `sanctions` holds, re-rendering every
    /// frame it judges and sanctioning liars by that rule (in a cluster,
    /// the addresses it bans are refused by every node).
    pub fn new(sanctions: Sanctions) -> Self {
        Self {
            core: Arc::clone(sanctions.core()),
            reputation: Arc::clone(sanctions.reputation()),
            stats: Arc::clone(sanctions.stats()),
            verifier: Verifier::new(VerifyPolicy::Full, 1.0, 0),
            sanctions,
        }
    }

    /// Whether every frame of the vote is right (re-rendered off the executor).
    async fn judge(&self, vote: &Candidate) -> bool {
        let verdict = self
            .verifier
            .verify(
                Trust::default(),
                (vote.start, vote.scene),
                vote.frames.clone(),
            )
            .await;
        self.stats.frames_checked.add(u64::from(verdict.checked));
        verdict.passed()
    }

    /// Settles a dispute between an earlier vote and `second`, this
    /// connection's answer: returns whether `second` was right. The earlier
    /// voter, if wrong, is struck here; the caller strikes `second`.
    pub async fn settle_dispute(&self, first: Candidate, second: Candidate) -> bool {
        self.stats.quorum_disputes.inc();
        // Rendering is deterministic and the two differ: if the second is
        // right, the first is wrong without a second re-render.
        let second_ok = self.judge(&second).await;
        let first_ok = !second_ok && self.judge(&first).await;
        let start = second.start;
        if second_ok {
            self.core.accept(
                second.worker,
                (second.task_id, second.scene),
                start,
                &second.frames,
                Instant::now(),
            );
            self.reputation.clean(second.addr, Instant::now());
        } else {
            self.core
                .reject(second.worker, second.task_id, Instant::now());
            if first_ok {
                self.core.accept(
                    first.worker,
                    (first.task_id, first.scene),
                    start,
                    &first.frames,
                    Instant::now(),
                );
            } else {
                self.core.clear_vote(start, first.addr, Instant::now());
            }
        }
        if first_ok {
            self.reputation.clean(first.addr, Instant::now());
        } else {
            self.punish(first.addr, start);
        }
        second_ok
    }

    /// Settles a lone vote: accepted if right, its address struck if not.
    async fn settle_alone(&self, vote: Candidate) {
        self.stats.quorum_settled_alone.inc();
        if self.judge(&vote).await {
            self.core.accept(
                vote.worker,
                (vote.task_id, vote.scene),
                vote.start,
                &vote.frames,
                Instant::now(),
            );
            self.reputation.clean(vote.addr, Instant::now());
        } else {
            self.punish(vote.addr, vote.start);
            self.core.clear_vote(vote.start, vote.addr, Instant::now());
        }
    }

    /// Strikes an address whose vote was wrong (its connection may be gone:
    /// the address answers for it), evicting its workers if that bans it.
    fn punish(&self, addr: AddrKey, start: u64) {
        self.stats.batches_rejected.inc();
        let why = format!("quorum vote for frame {start} failed verification");
        // No connection to close here: a ban, if any, evicts its workers.
        let _ = self.sanctions.strike(addr, &why);
    }

    /// Settles lone votes older than `wait` until shutdown.
    pub async fn run(self, wait: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval((wait / 4).max(Duration::from_millis(20)));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for vote in self.core.take_stale_votes(wait, Instant::now()) {
                        self.settle_alone(vote).await;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
