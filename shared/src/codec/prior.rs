//! The prior a [`Codec::Primed`](crate::wire::Codec::Primed) batch's
//! probabilities start from, instead of ½ (issue 25).
//!
//! Every batch is coded on its own (a joiner, a peer-fed viewer or one that
//! skipped ahead needs nothing older), so its adaptive probabilities start
//! afresh and spend the batch's first frames learning. While viewers steer
//! a batch is short (the hot window: ~6 frames, one batch a change, ten a
//! second) and a fast-spinning donut changes many cells a frame, so that
//! learning is most of what steering costs a watcher: the first frames of
//! every batch pay for contexts that every batch learns the same way.
//!
//! The prior is that learning done once: the probabilities after coding a
//! fixed training set (`train`) of rendered frames, 300 of the idle donut
//! and 300 of a crowd of 50 steering at the input rate limit (the
//! timeline's own folding rules, [`crate::steer`]), in 15-frame batches
//! through one model. Each is kept to 8 bits ([`PRIOR`], 5,052 bytes, the
//! escape's symbol tree included: a fast-spinning donut escapes often, and
//! leaving the tree at ½ kept only half the saving) and starts as if it
//! had seen [`PRIOR_SEEN`] decisions, so it still adapts fast to the batch
//! in hand. The frames are the same bytes on every target (ARCHITECTURE,
//! "Determinism") and the training is integer arithmetic, so every target
//! trains the same table; the unit
//! test `the_prior_is_its_training` checks [`PRIOR`] against `train`
//! (regenerate with `cargo run -p donut-shared --example codec_prior`).

use super::{
    DIRECTION_CONTEXTS, Model, PAIR_CONTEXTS, PROB_BITS, Prob, RUN_CONTEXTS, SAME_CONTEXTS,
};
#[cfg(feature = "alloc")]
pub use training::train;

/// How many decisions a primed probability counts as having seen: it moves
/// a quarter of the way at its next decision (see `Prob::adapt`).
pub const PRIOR_SEEN: u16 = 3;

/// Probabilities in the prior: every context.
pub const PRIOR_LEN: usize =
    SAME_CONTEXTS + 3 * PAIR_CONTEXTS + DIRECTION_CONTEXTS + RUN_CONTEXTS + 16 * PAIR_CONTEXTS;

/// The trained prior (see the module docs), the top 8 of each
/// probability's 12 bits, in the order of `Model::primed_probs`.
pub const PRIOR: [u8; PRIOR_LEN] = include!("prior_table.in");

impl Model {
    /// The probabilities the prior covers, in a fixed order: "same",
    /// "one step", "two steps", "blank", direction, quiet run, the
    /// escape's tree.
    #[cfg(feature = "alloc")]
    fn primed_probs(&mut self) -> impl Iterator<Item = &mut Prob> {
        self.same
            .iter_mut()
            .chain(self.one_step.iter_mut())
            .chain(self.two_steps.iter_mut())
            .chain(self.blank.iter_mut())
            .chain(self.direction.iter_mut())
            .chain(self.run.iter_mut())
            .chain(self.tree.iter_mut())
    }

    /// A model starting at the prior: a copy of [`PRIMED`], built at
    /// compile time, so a primed batch starts as cheaply as one at ½.
    pub(super) fn primed() -> Self {
        PRIMED
    }
}

/// The model at the prior, built from [`PRIOR`] at compile time.
const PRIMED: Model = {
    let mut model = Model {
        same: [Prob::NEW; SAME_CONTEXTS],
        one_step: [Prob::NEW; PAIR_CONTEXTS],
        two_steps: [Prob::NEW; PAIR_CONTEXTS],
        direction: [Prob::NEW; DIRECTION_CONTEXTS],
        blank: [Prob::NEW; PAIR_CONTEXTS],
        tree: [Prob::NEW; PAIR_CONTEXTS * 16],
        run: [Prob::NEW; RUN_CONTEXTS],
    };
    // The order of `Model::primed_probs`.
    let mut k = 0;
    let mut i = 0;
    while i < SAME_CONTEXTS {
        model.same[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < PAIR_CONTEXTS {
        model.one_step[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < PAIR_CONTEXTS {
        model.two_steps[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < PAIR_CONTEXTS {
        model.blank[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < DIRECTION_CONTEXTS {
        model.direction[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < RUN_CONTEXTS {
        model.run[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    i = 0;
    while i < PAIR_CONTEXTS * 16 {
        model.tree[i] = primed_prob(PRIOR[k]);
        (i, k) = (i + 1, k + 1);
    }
    assert!(k == PRIOR_LEN);
    model
};

/// A probability of the prior: the top 8 bits `p` of its 12, the middle
/// of what they stand for (within 8..4088), as having seen [`PRIOR_SEEN`]
/// decisions.
const fn primed_prob(p: u8) -> Prob {
    let p12 = ((p as u16) << (PROB_BITS - 8)) | (1 << (PROB_BITS - 9));
    Prob((p12 << 4) | PRIOR_SEEN)
}

/// The training (needs the `alloc` feature's frame unpacking: the unit
/// test and the `codec_prior` example have it; a viewer only reads
/// [`PRIOR`]).
#[cfg(feature = "alloc")]
mod training {
    use super::super::{BitCoder, CodecError, FRAME_LEN, blank_frame, code_frame};
    use super::{Model, PRIOR_LEN, PROB_BITS, Prob};
    use crate::scene::{Impulse, Scene};
    use crate::{PACKED_LEN, steer};

    /// A coder that codes nothing: it only lets the model learn.
    struct Trainer;

    impl BitCoder for Trainer {
        fn code(
            &mut self,
            prob: &mut Prob,
            bit: impl FnOnce() -> bool,
        ) -> Result<bool, CodecError> {
            let bit = bit();
            prob.adapt(bit);
            Ok(bit)
        }
    }

    /// Steerers in the training set's crowd.
    const CROWD: usize = 50;

    /// Frames of the training set, in each half (idle, then steered).
    const HALF: u64 = 300;

    /// Training batches' length in frames.
    const BATCH: u64 = 15;

    /// The training set's frame `k` (0..2 × [`HALF`]), stepping `scene`: the
    /// idle donut from frame 900,000, then from frame 1,900,000 a crowd of
    /// [`CROWD`] viewers each pushing every 36 ms (`a` ±40, turning back every
    /// 7 pushes; `b` 10..=14), folded every 6 frames (100 ms at 60 fps) by
    /// the timeline's rules and landing 2 frames later.
    struct Training {
        scene: Scene,
        k: u64,
        pending: [Impulse; CROWD],
        pushes: u64,
        due: Option<(u64, Impulse)>,
    }

    impl Training {
        fn new() -> Self {
            Self {
                scene: Scene::idle(900_000),
                k: 0,
                pending: [Impulse::default(); CROWD],
                pushes: 0,
                due: None,
            }
        }

        /// The next frame's packed bytes, or `None` past the set.
        fn next(&mut self, out: &mut [u8; PACKED_LEN]) -> Option<()> {
            if self.k >= 2 * HALF {
                return None;
            }
            if self.k == HALF {
                self.scene = Scene::idle(1_900_000);
            }
            if self.k >= HALF {
                let f = self.k - HALF;
                // Push `p` happens at 36p ms; frame f shows at f/60 s.
                while self.pushes * 36 * 60 <= f * 1000 {
                    let sign = if (self.pushes / 7).is_multiple_of(2) {
                        1
                    } else {
                        -1
                    };
                    for (i, p) in self.pending.iter_mut().enumerate() {
                        let push = Impulse {
                            a: sign * 40,
                            b: 10 + (i % 5) as i32,
                        };
                        *p = steer::add_viewer_push(*p, push);
                    }
                    self.pushes += 1;
                }
                if f.is_multiple_of(6) {
                    if let Some(change) = steer::fold(self.pending.iter().copied()) {
                        self.due = Some((f + 2, change));
                    }
                    self.pending = [Impulse::default(); CROWD];
                }
                if let Some((at, change)) = self.due
                    && at == f
                {
                    self.scene.push(change);
                    self.due = None;
                }
            }
            crate::render_pose_packed(self.scene.pose, out);
            self.scene.step();
            self.k += 1;
            Some(())
        }
    }

    /// Trains the prior from scratch (see the module docs): what
    /// [`PRIOR`](super::PRIOR) must equal. About 600 renders: milliseconds natively.
    pub fn train() -> [u8; PRIOR_LEN] {
        let mut model = Model::new();
        let mut set = Training::new();
        let mut packed = [0u8; PACKED_LEN];
        let mut prev = blank_frame();
        let mut cur = [0u8; FRAME_LEN];
        let mut index = 0u64;
        while set.next(&mut packed).is_some() {
            crate::frame::unpack_codes(&packed, &mut cur);
            if index.is_multiple_of(BATCH) {
                prev = blank_frame();
            }
            // The trainer never fails.
            let _ = code_frame(
                &mut Trainer,
                &mut model,
                &mut prev,
                &mut cur,
                index.is_multiple_of(BATCH),
            );
            prev = cur;
            index += 1;
        }
        let mut out = [0u8; PRIOR_LEN];
        for (o, prob) in out.iter_mut().zip(model.primed_probs()) {
            *o = (prob.get() >> (PROB_BITS - 8)) as u8;
        }
        out
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_primed_model_holds_the_prior_in_the_training_order() {
        let mut model = Model::primed();
        let mut n = 0;
        for (prob, &p) in model.primed_probs().zip(PRIOR.iter()) {
            assert_eq!(prob.0, primed_prob(p).0, "probability {n}");
            n += 1;
        }
        assert_eq!(n, PRIOR_LEN);
    }
}
