//! Criterion benchmarks of the per-frame hot paths: render, pack, unpack,
//! and the worker's render + pack.
//!
//! `cargo bench -p donut-shared --bench frame`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use donut_shared::{FRAME_LEN, PACKED_LEN, pack, render, render_packed, unpack};

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    let mut out = [0u8; FRAME_LEN];
    g.bench_function("render", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            render(black_box(n), &mut out);
        })
    });
    let mut packed = [0u8; PACKED_LEN];
    g.bench_function("render_packed", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            render_packed(black_box(n), &mut packed);
        })
    });
    render(12_345, &mut out);
    g.bench_function("pack", |b| b.iter(|| pack(black_box(&out), &mut packed)));
    let mut unpacked = [0u8; FRAME_LEN];
    g.bench_function("unpack", |b| {
        b.iter(|| unpack(black_box(&packed), &mut unpacked))
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
