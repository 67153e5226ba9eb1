//! Bytes a watching viewer receives a frame while others steer, by batch
//! length and codec, on rendered frames (issue 25): what the crowd bench's
//! watcher bytes are made of, without a server.
//!
//! `cargo run --release -p donut-shared --example crowd_bytes [FRAMES]`
//!
//! The stream is the idle donut, or `n` steerers each pushing every 36 ms
//! (`a` ±40, turning back every 7 pushes, `b` 10..=14, as
//! `server/benches/steer.rs` `crowd` does), folded every 6 frames (the
//! 100 ms commit throttle at 60 fps) by the timeline's rules
//! (`donut_shared::steer`) and landing 2 frames later. It is cut into
//! batches of one length, each coded on its own; bytes include the 17-byte
//! `Frames` header. Idle viewers get 15-frame batches, a hot timeline's
//! ~6 (one a change). The frames differ from the prior's training set
//! (`codec::prior`): other frame numbers, 3,600 of them. "50 across" is
//! the crowd dragging the other way (`b` ±40, `a` 10..=14), a steering
//! the prior was not trained on.

use donut_shared::scene::{Impulse, Scene};
use donut_shared::wire::FRAMES_HEADER_LEN;
use donut_shared::{PACKED_LEN, codec, render_pose_packed, steer};

fn frames(n: usize, start: u64, total: usize, across: bool) -> Vec<u8> {
    let mut scene = Scene::idle(start);
    let mut out = Vec::with_capacity(total * PACKED_LEN);
    let mut pending = vec![Impulse::default(); n];
    let mut pushes = 0u64;
    let mut due: Option<(usize, Impulse)> = None;
    for f in 0..total {
        while n > 0 && pushes * 36 * 60 <= f as u64 * 1000 {
            let sign = if (pushes / 7).is_multiple_of(2) {
                1
            } else {
                -1
            };
            for (i, p) in pending.iter_mut().enumerate() {
                let (main, side) = (sign * 40, 10 + (i % 5) as i32);
                let push = match across {
                    false => Impulse { a: main, b: side },
                    true => Impulse { a: side, b: main },
                };
                *p = steer::add_viewer_push(*p, push);
            }
            pushes += 1;
        }
        if n > 0 && f % 6 == 0 {
            if let Some(change) = steer::fold(pending.iter().copied()) {
                due = Some((f + 2, change));
            }
            pending.iter_mut().for_each(|p| *p = Impulse::default());
        }
        if let Some((at, change)) = due
            && at == f
        {
            scene.push(change);
            due = None;
        }
        let mut p = [0u8; PACKED_LEN];
        render_pose_packed(scene.pose, &mut p);
        out.extend_from_slice(&p);
        scene.step();
    }
    out
}

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_600);
    println!("{total} frames a stream; bytes a frame with the header (lower is better)\n");
    println!("| steerers | batch (frames) | context | primed | primed / context |");
    println!("|---:|---:|---:|---:|---:|");
    for (n, across) in [(0usize, false), (5, false), (50, false), (50, true)] {
        let packed = frames(n, 5_000, total, across);
        let who = if across {
            format!("{n} across")
        } else {
            n.to_string()
        };
        for batch in [15usize, 6, 5] {
            let (mut plain, mut primed) = (0usize, 0usize);
            for chunk in packed.chunks(batch * PACKED_LEN) {
                let mut c = Vec::new();
                codec::encode(chunk, &mut c).expect("rendered frames are valid");
                plain += c.len() + FRAMES_HEADER_LEN;
                let mut c = Vec::new();
                codec::encode_primed(chunk, &mut c).expect("rendered frames are valid");
                primed += c.len() + FRAMES_HEADER_LEN;
            }
            let per = |b: usize| b as f64 / total as f64;
            println!(
                "| {who} | {batch} | {:.1} | {:.1} | {:.3} |",
                per(plain),
                per(primed),
                primed as f64 / plain as f64
            );
        }
    }
}
