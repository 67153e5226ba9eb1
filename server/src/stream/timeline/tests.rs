//! Unit and property tests of [`Timeline`].

use proptest::prelude::*;

use super::*;

fn push(a: i32, b: i32) -> Impulse {
    Impulse { a, b }
}

#[test]
fn unsteered_timeline_is_the_idle_scene() {
    let t = Timeline::new(100);
    assert_eq!(t.version(), 0);
    for f in [100, 101, 5_000, u64::MAX / 3] {
        assert_eq!(t.scene_at(f), Scene::idle(f));
    }
}

#[test]
fn nothing_queued_or_cancelling_out_changes_nothing() {
    let mut t = Timeline::new(0);
    assert_eq!(t.commit(10), None);
    t.input(1, push(50, 0));
    t.input(2, push(-50, 0));
    assert_eq!(t.commit(10), None);
    assert_eq!(t.version(), 0);
    assert_eq!(t.keyframes().collect::<Vec<_>>(), vec![0]);
}

#[test]
fn one_commit_folds_every_viewer_into_one_change() {
    let mut t = Timeline::new(0);
    t.input(7, push(100, -20));
    t.input(3, push(5, 0));
    t.input(7, push(1, 0));
    let change = t.commit(40).expect("a change");
    assert_eq!(change.frame, 40);
    assert_eq!(change.version, 1);
    let mut expected = Scene::idle(40);
    expected.push(push(106, -20));
    assert_eq!(change.scene, expected);
    assert_eq!(t.scene_at(40), expected);
    // Before the change: untouched.
    assert_eq!(t.scene_at(39), Scene::idle(39));
    // After: the pushed scene stepped.
    let mut stepped = expected;
    stepped.step();
    stepped.step();
    assert_eq!(t.scene_at(42), stepped);
    assert!(!t.has_pending());
}

#[test]
fn one_viewer_and_the_crowd_are_clamped() {
    let mut t = Timeline::new(0);
    for _ in 0..50 {
        t.input(1, push(1024, -1024));
    }
    let one = t.commit(10).expect("a change");
    let mut expected = Scene::idle(10);
    expected.push(push(MAX_VIEWER_UNITS, -MAX_VIEWER_UNITS));
    assert_eq!(one.scene, expected);
    for v in 0..10 {
        t.input(v, push(1024, 1024));
    }
    let crowd = t.commit(20).expect("a change");
    let mut expected = t.clone();
    expected.keys.remove(&20);
    let mut s = expected.scene_at(20);
    s.push(push(MAX_TOTAL_UNITS, MAX_TOTAL_UNITS));
    assert_eq!(crowd.scene, s);
}

#[test]
fn a_change_never_lands_before_the_last_keyframe() {
    let mut t = Timeline::new(0);
    t.input(1, push(10, 0));
    t.commit(50);
    t.input(1, push(10, 0));
    let late = t.commit(30).expect("a change");
    assert_eq!(late.frame, 50);
    assert_eq!(late.version, 2);
    let mut s = Scene::idle(50);
    s.push(push(20, 0));
    assert_eq!(t.scene_at(50), s);
}

#[test]
fn next_keyframe_and_prune() {
    let mut t = Timeline::new(0);
    for at in [10, 20, 30] {
        t.input(1, push(5, 5));
        t.commit(at);
    }
    assert_eq!(t.next_keyframe_after(10), Some(20));
    assert_eq!(t.next_keyframe_after(9), Some(10));
    assert_eq!(t.next_keyframe_after(30), None);
    let before = t.scene_at(25);
    t.prune(25);
    assert_eq!(t.keyframes().collect::<Vec<_>>(), vec![20, 30]);
    assert_eq!(t.scene_at(25), before);
    t.prune(5);
    assert_eq!(t.keyframes().collect::<Vec<_>>(), vec![20, 30]);
}

proptest! {
    /// `scene_at` is the start scene stepped frame by frame with every
    /// committed push applied at its frame, and a change only affects
    /// frames at or after its frame.
    #[test]
    fn scene_at_matches_stepping_and_changes_only_the_future(
        start in 0u64..1_000_000,
        commits in proptest::collection::vec(
            (0u64..400, proptest::collection::vec((0u64..4, -1024i32..=1024, -1024i32..=1024), 0..4)),
            1..6,
        ),
        probe in 0u64..2_000,
    ) {
        let mut t = Timeline::new(start);
        let mut at = start;
        let mut applied: Vec<(u64, Impulse)> = Vec::new();
        for (gap, inputs) in &commits {
            at += gap;
            let before = t.clone();
            for &(v, a, b) in inputs {
                t.input(v, push(a, b));
            }
            if let Some(change) = t.commit(at) {
                prop_assert!(change.frame >= at);
                // Every frame before the change is unchanged, every frame at
                // or after it follows the pushed scene.
                for f in [start, change.frame.saturating_sub(1), change.frame.saturating_sub(37)] {
                    if f >= start && f < change.frame {
                        prop_assert_eq!(t.scene_at(f), before.scene_at(f));
                    }
                }
                let mut total = Impulse::default();
                let mut per: BTreeMap<u64, Impulse> = BTreeMap::new();
                for &(v, a, b) in inputs {
                    let e = per.entry(v).or_default();
                    e.a = (e.a + a).clamp(-MAX_VIEWER_UNITS, MAX_VIEWER_UNITS);
                    e.b = (e.b + b).clamp(-MAX_VIEWER_UNITS, MAX_VIEWER_UNITS);
                }
                for p in per.values() {
                    total.a += p.a;
                    total.b += p.b;
                }
                total.a = total.a.clamp(-MAX_TOTAL_UNITS, MAX_TOTAL_UNITS);
                total.b = total.b.clamp(-MAX_TOTAL_UNITS, MAX_TOTAL_UNITS);
                applied.push((change.frame, total));
            }
        }
        // Reference: step from the start one frame at a time.
        let end = t.last_keyframe() + probe;
        let mut scene = Scene::idle(start);
        let mut pushes = applied.iter().peekable();
        for f in start..=end {
            while let Some(&&(frame, p)) = pushes.peek() {
                if frame != f {
                    break;
                }
                scene.push(p);
                pushes.next();
            }
            if f == end || f % 97 == 0 || applied.iter().any(|&(k, _)| k == f) {
                prop_assert_eq!(t.scene_at(f), scene, "frame {}", f);
            }
            scene.step();
        }
        prop_assert_eq!(t.version() as usize, applied.len());
    }
}

#[test]
fn a_resumed_timeline_continues_the_scene_and_the_version() {
    let mut old = Timeline::new(0);
    old.input(1, Impulse { a: 300, b: -40 });
    let change = old.commit(10).expect("a change");
    let resumed = Timeline::resume(50, change.version, old.scene_at(50));
    for f in [50, 51, 90, 500] {
        assert_eq!(resumed.scene_at(f), old.scene_at(f), "frame {f}");
    }
    let mut resumed = resumed;
    resumed.input(2, Impulse { a: 1, b: 0 });
    let next = resumed.commit(60).expect("a change");
    assert_eq!(next.version, change.version + 1);
}
