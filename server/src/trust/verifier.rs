//! The verifier: no result enters the frame ring until the server has
//! re-rendered (some of) its frames natively with the same `no_std` crate the
//! workers run, and found every checked byte identical.
//!
//! Policies ([`VerifyPolicy`]):
//! - `full` (default): every frame of every result is re-rendered.
//! - `quorum`: results are votes (see [`super::quorum`]); its referee uses
//!   this verifier at `full` to settle disputes.
//! - `sample`: after a result arrives, positions are drawn from a
//!   CSPRNG (`rand`'s thread RNG, ChaCha12 seeded by the OS), so a worker
//!   cannot know which of its frames will be checked. How many depends on its
//!   address's [`Trust`]: a new address, or one that has just failed, is
//!   checked in full; each clean batch lowers its rate linearly down to a
//!   floor, and at least one frame of every batch is always checked.
//! - `off`: nothing is checked; named `off-benchmark-only` on the command line.
//!
//! Rendering is CPU work, so it never runs on the async executor threads: it
//! goes to tokio's blocking pool, with a semaphore of one permit per core so a
//! flood of results queues instead of multiplying threads. A worker's results
//! are verified one at a time (its connection awaits the verdict before
//! reading its next message), which is also the flood control: a worker can
//! only make the server check as fast as the server chooses.

use std::sync::Arc;

use bytes::Bytes;
use donut_shared::PACKED_LEN;
use donut_shared::render_pose_packed;
use donut_shared::scene::Scene;
use rand::seq::index;
use tokio::sync::Semaphore;

/// An address's verification record under `sample` (kept by
/// [`super::reputation::Reputation`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Trust {
    /// Consecutive batches that passed verification since its last strike,
    /// capped at the batches over which the rate decays.
    pub clean_batches: u32,
}

/// The outcome of checking one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Frames re-rendered.
    pub checked: u32,
    /// The first checked frame (absolute number) that differed, if any.
    pub bad_frame: Option<u64>,
}

impl Verdict {
    /// Whether every checked frame matched.
    pub fn passed(&self) -> bool {
        self.bad_frame.is_none()
    }
}

/// How results are checked before they may enter the frame ring (see
/// [`crate::trust`]). Every frame's symbols and layout are checked under
/// every policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyPolicy {
    /// Re-render every frame of every result natively: no forged frame
    /// reaches a viewer, for ~0.1% of a core at 60 fps.
    Full,
    /// Broadcast a range once workers from two addresses returned the same
    /// bytes; re-render only to settle a disagreement or a lone vote.
    Quorum,
    /// Re-render frames at positions the worker cannot predict, at a rate
    /// that adapts to the address's record (never zero). A patient cheater
    /// gets some forged frames through: for benchmarks and fleets far
    /// faster than playback.
    Sample,
    /// Check nothing. For benchmarks only: one bad worker corrupts everyone's stream.
    #[value(name = "off-benchmark-only", alias = "off")]
    Off,
}

impl VerifyPolicy {
    /// The policy's name as `--verify` spells it (and `/metrics` shows it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Quorum => "quorum",
            Self::Sample => "sample",
            Self::Off => "off-benchmark-only",
        }
    }
}

/// Checks results against native renders. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    policy: VerifyPolicy,
    floor: f64,
    trust_batches: u32,
    permits: Arc<Semaphore>,
}

impl Verifier {
    /// A verifier with `policy`; under `sample`, the rate decays from 1 to
    /// `floor` over `trust_batches` clean batches.
    pub fn new(policy: VerifyPolicy, floor: f64, trust_batches: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            policy,
            floor: floor.clamp(0.0, 1.0),
            trust_batches,
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> VerifyPolicy {
        self.policy
    }

    /// The fraction of a batch checked for a worker with this record.
    pub fn rate(&self, trust: Trust) -> f64 {
        match self.policy {
            // Quorum results are judged by the referee, which re-renders all.
            VerifyPolicy::Full | VerifyPolicy::Quorum => 1.0,
            VerifyPolicy::Off => 0.0,
            VerifyPolicy::Sample => {
                if self.trust_batches == 0 {
                    return self.floor;
                }
                let progress = f64::from(trust.clean_batches) / f64::from(self.trust_batches);
                (1.0 - progress).max(self.floor)
            }
        }
    }

    /// Chooses which frames of a `count`-frame batch to check, after the
    /// batch has arrived, from a CSPRNG. Sorted, without repeats.
    pub fn positions(&self, trust: Trust, count: u32) -> Vec<u32> {
        let rate = self.rate(trust);
        if rate <= 0.0 || count == 0 {
            return Vec::new();
        }
        let k = ((rate * f64::from(count)).ceil() as u32).clamp(1, count);
        if k == count {
            return (0..count).collect();
        }
        let mut rng = rand::rng();
        let mut picked: Vec<u32> = index::sample(&mut rng, count as usize, k as usize)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        picked.sort_unstable();
        picked
    }

    /// Checks the packed `frames` of the batch starting at `start`, whose
    /// task carried `scene` (the scene of `start`), at the chosen positions,
    /// off the async executor. `frames` must hold whole packed frames (the
    /// decoder guarantees it).
    pub async fn verify(
        &self,
        trust: Trust,
        (start, scene): (u64, Scene),
        frames: Bytes,
    ) -> Verdict {
        let count = (frames.len() / PACKED_LEN) as u32;
        let positions = self.positions(trust, count);
        if positions.is_empty() {
            return Verdict {
                checked: 0,
                bad_frame: None,
            };
        }
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let checked = positions.len() as u32;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check_positions((start, scene), &frames, &positions)
        });
        match job.await {
            Ok(bad_frame) => Verdict { checked, bad_frame },
            // The check panicked or was cancelled: treat as failed, never as passed.
            Err(_) => Verdict {
                checked,
                bad_frame: Some(start),
            },
        }
    }
}

/// Re-renders the frames at `positions` (ascending) by stepping `scene`,
/// the scene of frame `start` (never from frame numbers alone: a steered
/// timeline's frames follow from its scene), and compares; returns the
/// absolute number of the first one that differs.
pub fn check_positions(
    (start, scene): (u64, Scene),
    frames: &[u8],
    positions: &[u32],
) -> Option<u64> {
    let packed = frames.as_chunks::<PACKED_LEN>().0;
    let mut expected = [0u8; PACKED_LEN];
    let mut at = scene;
    let mut at_pos = 0u32;
    for &p in positions {
        // Positions ascend; one out of order fails closed.
        let Some(gap) = p.checked_sub(at_pos) else {
            return Some(start);
        };
        at.advance(u64::from(gap));
        at_pos = p;
        // Fails closed: an impossible frame number is a failed check.
        let Some(frame) = start.checked_add(u64::from(p)) else {
            return Some(start);
        };
        let Some(got) = packed.get(p as usize) else {
            return Some(frame);
        };
        render_pose_packed(at.pose, &mut expected);
        if &expected != got {
            return Some(frame);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use donut_shared::render_packed;
    use donut_shared::scene::Impulse;

    use super::*;

    fn batch(start: u64, count: u32) -> Vec<u8> {
        let mut out = vec![0u8; count as usize * PACKED_LEN];
        for (k, chunk) in out.as_chunks_mut::<PACKED_LEN>().0.iter_mut().enumerate() {
            render_packed(start + k as u64, chunk);
        }
        out
    }

    fn idle(start: u64) -> (u64, Scene) {
        (start, Scene::idle(start))
    }

    #[test]
    fn checks_by_the_scene_not_the_frame_number() {
        let mut scene = Scene::idle(500);
        scene.push(Impulse { a: 900, b: -300 });
        let mut frames = vec![0u8; 20 * PACKED_LEN];
        for (chunk, pose) in frames
            .as_chunks_mut::<PACKED_LEN>()
            .0
            .iter_mut()
            .zip(scene.poses(20))
        {
            render_pose_packed(pose, chunk);
        }
        let all: Vec<u32> = (0..20).collect();
        assert_eq!(check_positions((500, scene), &frames, &all), None);
        assert_eq!(check_positions((500, scene), &frames, &[3, 11, 19]), None);
        // The idle frames of the same numbers are not these (the push shows
        // from the second frame: it changes the spin, not the first pose).
        assert_eq!(check_positions(idle(500), &frames, &all), Some(501));
        assert!(check_positions((500, scene), &batch(500, 20), &all).is_some());
    }

    #[test]
    fn sample_rate_decays_to_floor_and_resets() {
        let v = Verifier::new(VerifyPolicy::Sample, 0.05, 20);
        assert_eq!(v.rate(Trust { clean_batches: 0 }), 1.0);
        assert!((v.rate(Trust { clean_batches: 10 }) - 0.5).abs() < 1e-9);
        assert_eq!(
            v.rate(Trust {
                clean_batches: 1000
            }),
            0.05
        );
        // Never zero: one frame of a small batch at the floor.
        assert_eq!(
            v.positions(
                Trust {
                    clean_batches: 1000
                },
                10
            )
            .len(),
            1
        );
        assert_eq!(v.positions(Trust { clean_batches: 0 }, 10).len(), 10);
    }

    #[test]
    fn positions_are_distinct_sorted_and_vary() {
        let v = Verifier::new(VerifyPolicy::Sample, 0.05, 20);
        let trusted = Trust {
            clean_batches: 1000,
        };
        let a = v.positions(trusted, 600);
        assert_eq!(a.len(), 30);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&p| p < 600));
        let differ = (0..10).any(|_| v.positions(trusted, 600) != a);
        assert!(differ, "positions must not be predictable");
    }

    #[test]
    fn catches_one_flipped_byte() {
        let mut frames = batch(1000, 8);
        assert_eq!(
            check_positions(idle(1000), &frames, &[0, 1, 2, 3, 4, 5, 6, 7]),
            None
        );
        frames[5 * PACKED_LEN + 17] ^= 0x01;
        assert_eq!(
            check_positions(idle(1000), &frames, &[0, 1, 2, 3, 4, 5, 6, 7]),
            Some(1005)
        );
        // Right frames under the wrong numbers are wrong too.
        assert_eq!(
            check_positions(idle(1001), &batch(1000, 1), &[0]),
            Some(1001)
        );
    }

    #[tokio::test]
    async fn full_policy_checks_everything_off_the_executor() {
        let v = Verifier::new(VerifyPolicy::Full, 0.05, 20);
        let good = Bytes::from(batch(7, 12));
        let verdict = v.verify(Trust::default(), idle(7), good).await;
        assert_eq!(
            verdict,
            Verdict {
                checked: 12,
                bad_frame: None
            }
        );
        let off = Verifier::new(VerifyPolicy::Off, 0.05, 20);
        let mut bad = batch(7, 12);
        bad[3] ^= 1;
        assert!(
            off.verify(Trust::default(), idle(7), Bytes::from(bad))
                .await
                .passed()
        );
    }
}
