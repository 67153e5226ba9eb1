//! The relay tree's decision time at 10,000 members (issue 24): how long
//! one operation of the sans-IO [`RelayTree`] takes (each runs under the
//! hub's one lock, so it is what every viewer's relay message waits on).
//!
//! `cargo bench -p donut-server --bench p2p_tree`
//!
//! Builds a tree of 10,000 members (`--p2p-fanout` 3, max 6, depth 3: the
//! defaults), each linked to its parent, then times, each over many
//! operations: a join (and the leave that undoes it), a leaf's link lost
//! and re-linked, a late fetch, a report (a stale one and a counted one),
//! and a tick.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use donut_server::p2p::tree::{RelayTree, TreeConfig};
use donut_shared::wire::p2p::SERVER;

const MEMBERS: u64 = 10_000;

fn tree(now: Instant) -> RelayTree {
    let mut t = RelayTree::new(TreeConfig::default(), true);
    for id in 1..=MEMBERS {
        t.join(id, now);
    }
    for id in 1..=MEMBERS {
        if let Some(p) = t.parent(id).filter(|&p| p != SERVER) {
            t.link(id, p, true, now);
        }
    }
    t
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let base = tree(t0);
    let counts = base.counts();
    println!("tree of {MEMBERS}: {counts:?}");
    let mut g = c.benchmark_group("p2p_tree_10k");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);

    let mut t = base.clone();
    let mut next = MEMBERS + 1;
    g.bench_function("join then leave", |b| {
        b.iter(|| {
            black_box(t.join(next, t0));
            black_box(t.leave(next));
            next += 1;
        });
    });

    let mut t = base.clone();
    let leaf = (1..=MEMBERS)
        .rev()
        .find(|&id| t.parent(id).is_some_and(|p| p != SERVER))
        .expect("a peer-fed leaf");
    g.bench_function("link up (a leaf)", |b| {
        b.iter(|| {
            let p = t.parent(leaf).unwrap_or(SERVER);
            black_box(t.link(leaf, p, true, t0));
        });
    });

    let mut t = base.clone();
    let mut clock = t0;
    g.bench_function("late fetch", |b| {
        b.iter(|| {
            clock += Duration::from_secs(2);
            black_box(t.late(leaf, clock));
        });
    });

    let mut t = base.clone();
    g.bench_function("stale report", |b| {
        b.iter(|| black_box(t.mismatch(leaf, 999_999, t0)));
    });

    let mut t = base.clone();
    let mut clock = t0;
    g.bench_function("tick", |b| {
        b.iter(|| {
            clock += Duration::from_secs(5);
            black_box(t.tick(clock));
        });
    });
    g.finish();

    // Counted reports move the reporter and quarantine the parent: timed
    // one by one over distinct reporters (a criterion loop would run out).
    let mut t = base.clone();
    let reporters: Vec<u64> = (1..=MEMBERS)
        .filter(|&id| t.parent(id).is_some_and(|p| p != SERVER))
        .take(200)
        .collect();
    let begun = Instant::now();
    for &r in &reporters {
        let p = t.parent(r).unwrap_or(SERVER);
        black_box(t.mismatch(r, p, t0));
    }
    let per = begun.elapsed() / reporters.len() as u32;
    println!(
        "p2p_tree_10k/counted report: {per:?} per report ({} reports)",
        reporters.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
