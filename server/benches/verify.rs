//! Cost of native verification: re-rendering and comparing frames.
//!
//! `cargo bench -p donut-server --bench verify`
//!
//! The per-frame figure times 60 is the cost of `full` verification at 60
//! fps; under `sample`, multiply by the checked fraction.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use donut_server::trust::verifier::check_positions;
use donut_shared::scene::Scene;
use donut_shared::{PACKED_LEN, render_packed};

fn batch(start: u64, count: u32) -> Vec<u8> {
    let mut out = vec![0u8; count as usize * PACKED_LEN];
    for (k, chunk) in out.as_chunks_mut::<PACKED_LEN>().0.iter_mut().enumerate() {
        render_packed(start + k as u64, chunk);
    }
    out
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let frames = batch(1_000_000, 60);
    let all: Vec<u32> = (0..60).collect();
    g.throughput(Throughput::Elements(60));
    g.bench_function("full_60_frame_batch", |b| {
        b.iter(|| {
            check_positions(
                black_box((1_000_000, Scene::idle(1_000_000))),
                black_box(&frames),
                &all,
            )
        })
    });
    let three = [7u32, 31, 52];
    g.throughput(Throughput::Elements(3));
    g.bench_function("sample_3_of_60", |b| {
        b.iter(|| {
            check_positions(
                black_box((1_000_000, Scene::idle(1_000_000))),
                black_box(&frames),
                &three,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
