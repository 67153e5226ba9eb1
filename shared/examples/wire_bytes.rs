//! Bytes a viewer receives per frame under each encoding we tried, on real
//! rendered frames.
//!
//! `cargo run --release -p donut-shared --example wire_bytes [FRAMES]`
//!
//! Encodings: nibble packing (what workers send, and the Go original's
//! format before compression); nibble packing + deflate level 6 per batch
//! (what the Go original puts on the wire with permessage-deflate); and the
//! context coder (`Codec::Context`, what our server broadcasts). Each batch
//! is compressed independently, as a viewer joining mid-stream needs.

use std::io::Write;

use donut_shared::{PACKED_LEN, codec, render_packed};
use flate2::{Compression, write::DeflateEncoder};

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(6_000);
    let first = 5_000;
    let mut packed = Vec::with_capacity(total as usize * PACKED_LEN);
    for n in first..first + total {
        let mut p = [0u8; PACKED_LEN];
        render_packed(n, &mut p);
        packed.extend_from_slice(&p);
    }
    println!("{total} frames from frame {first}; bytes per frame (lower is better)\n");
    println!("| batch (frames) | nibble | nibble + deflate-6 | context coder |");
    println!("|---:|---:|---:|---:|");
    for batch in [15usize, 30, 60, 240] {
        let (mut deflated, mut context) = (0usize, 0usize);
        for chunk in packed.chunks(batch * PACKED_LEN) {
            let mut z = DeflateEncoder::new(Vec::new(), Compression::new(6));
            z.write_all(chunk).expect("in-memory write");
            deflated += z.finish().expect("in-memory deflate").len();
            let mut c = Vec::new();
            codec::encode(chunk, &mut c).expect("rendered frames are valid");
            context += c.len();
        }
        let per = |b: usize| b as f64 / total as f64;
        println!(
            "| {batch} | {} | {:.1} | {:.1} |",
            PACKED_LEN,
            per(deflated),
            per(context)
        );
    }
}
