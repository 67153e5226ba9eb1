//! Criterion benchmarks of the viewer codec: encoding one batch (done once
//! per broadcast by the server) and decoding it (done by every viewer),
//! from even odds (`Codec::Context`) and from the trained prior
//! (`Codec::Primed`, what servers send since protocol 6), also as the
//! hot timeline's 6-frame batches.
//!
//! `cargo bench -p donut-shared --bench codec`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use donut_shared::{PACKED_LEN, codec, render_packed};

fn batch(frames: u64) -> Vec<u8> {
    let mut packed = Vec::new();
    for n in 10_000..10_000 + frames {
        let mut p = [0u8; PACKED_LEN];
        render_packed(n, &mut p);
        packed.extend_from_slice(&p);
    }
    packed
}

fn codec_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    // One second of frames at 60 fps.
    let packed = batch(60);
    let mut encoded = Vec::new();
    codec::encode(&packed, &mut encoded).expect("valid frames");
    g.throughput(Throughput::Elements(60));
    g.bench_function("encode_60_frames", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(encoded.len() + 64);
            codec::encode(black_box(&packed), &mut out).expect("valid frames");
            out
        })
    });
    g.bench_function("decode_60_frames", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            codec::decode(black_box(&encoded), 60, |_, f| sum += u32::from(f[440]))
                .expect("own output");
            sum
        })
    });
    let mut primed = Vec::new();
    codec::encode_primed(&packed, &mut primed).expect("valid frames");
    g.bench_function("decode_60_frames_primed", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            codec::decode_primed(black_box(&primed), 60, |_, f| sum += u32::from(f[440]))
                .expect("own output");
            sum
        })
    });
    // Ten 6-frame batches: a second of a hot timeline's batches.
    let short: Vec<(Vec<u8>, Vec<u8>)> = packed
        .chunks(6 * PACKED_LEN)
        .map(|chunk| {
            let (mut plain, mut primed) = (Vec::new(), Vec::new());
            codec::encode(chunk, &mut plain).expect("valid frames");
            codec::encode_primed(chunk, &mut primed).expect("valid frames");
            (plain, primed)
        })
        .collect();
    g.bench_function("decode_10x6_frames", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for (plain, _) in &short {
                codec::decode(black_box(plain), 6, |_, f| sum += u32::from(f[440]))
                    .expect("own output");
            }
            sum
        })
    });
    g.bench_function("decode_10x6_frames_primed", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for (_, primed) in &short {
                codec::decode_primed(black_box(primed), 6, |_, f| sum += u32::from(f[440]))
                    .expect("own output");
            }
            sum
        })
    });
    g.finish();
}

criterion_group!(benches, codec_bench);
criterion_main!(benches);
