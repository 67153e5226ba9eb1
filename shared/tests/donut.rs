//! The renderer's output: layout invariants and golden digests.

use donut_shared::digest::{fnv1a64, frame_digest};
use donut_shared::donut::FrameAngles;
use donut_shared::frame::ALPHABET;
use donut_shared::{FRAME_LEN, HEIGHT, PACKED_LEN, WIDTH, pack, render, render_packed, unpack};

/// Frames whose output is pinned: the start, a batch edge, large and
/// edge-of-range frame numbers.
const GOLDEN: &[(u64, u64, u64)] = &[
    // (frame, fnv1a64 of the 1760 ASCII bytes, frame_digest)
    (0, 0x624d0d21743afbd5, 0xe54fa15a11c57c61),
    (1, 0xca135af129a8304f, 0xe8fc339ea8347cab),
    (2, 0x2ddd450deee39420, 0xed5f7e84f777c6e0),
    (59, 0x335d0563e99c8a58, 0x71a13ea514b9852a),
    (60, 0x1f6daa99e0944b1d, 0x032031a895d666fd),
    (61, 0xf3bb23b4c4be2edf, 0x271637bd866167fd),
    (119, 0x6ba33a8debe006dc, 0x3bb9121530c97680),
    (120, 0x7f3fadc7daec85ff, 0x93f92eca2863f5cc),
    (1000, 0xf8d521f2165dab97, 0x3af545cd1aa45641),
    (1000000, 0xb581635a21243443, 0xb03984c02fdc8a3d),
    (4294967303, 0xd186384c1f44c66a, 0xa14ca54d3ee99ee4),
    (9007199254740992, 0xc2a977a1cc4444cb, 0xcb5d0c7a400e3719),
    (9007199254740993, 0xa7a039309371e50c, 0x33ddf55c6e8b8f15),
    (9223372036854775808, 0x61dbe01d614213b9, 0x19de57021a4c9f95),
    (18446744073709551614, 0x60fd335bacd18f77, 0xa658f01bb84c32e9),
    (18446744073709551615, 0xb03815f0c8dffac5, 0x543f68a0375d7e7a),
    (123456789012345, 0x79c443790259a132, 0x86c636cfa7506397),
];

fn rendered(frame: u64) -> [u8; FRAME_LEN] {
    let mut out = [0u8; FRAME_LEN];
    render(frame, &mut out);
    out
}

#[test]
fn golden_digests_pin_the_output() {
    let mut wrong = Vec::new();
    for &(frame, bytes, full) in GOLDEN {
        let got = (fnv1a64(&rendered(frame)), frame_digest(frame));
        if got != (bytes, full) {
            wrong.push(format!(
                "    ({frame}, 0x{:016x}, 0x{:016x}),",
                got.0, got.1
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "renderer output changed; if intended, the new table rows are:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_row_ends_in_a_newline_and_only_there() {
    for frame in [0, 1, 59, 60, 1_000_000, u64::MAX] {
        let f = rendered(frame);
        for (k, &b) in f.iter().enumerate() {
            let last_column = k % WIDTH == WIDTH - 1;
            assert_eq!(b == b'\n', last_column, "frame {frame} offset {k}");
            assert!(ALPHABET.contains(&b), "frame {frame} offset {k} byte {b}");
        }
        assert_eq!(f.len(), WIDTH * HEIGHT);
    }
}

#[test]
fn the_donut_is_drawn_and_centred() {
    for frame in [0, 7, 1_000, 1 << 40] {
        let f = rendered(frame);
        let lit = f.iter().filter(|b| !matches!(b, b' ' | b'\n')).count();
        assert!(lit > 400, "frame {frame} has only {lit} lit cells");
        // Row 0 is never drawn (donut.c requires y > 0).
        assert!(f[..WIDTH - 1].iter().all(|&b| b == b' '));
        // All twelve luminance levels show up across a few frames' worth of
        // surface; at least the brightest and darkest appear in each.
        assert!(f.contains(&b'@') && f.contains(&b'.'), "frame {frame}");
    }
}

#[test]
fn consecutive_frames_turn_smoothly_even_at_huge_frame_numbers() {
    // The fixed-point phase keeps every frame distinct and close to the last,
    // however large the frame number: no snapping back, no frozen frames.
    for base in [0u64, 1 << 32, 1 << 53, u64::MAX - 10] {
        for k in 0..5 {
            let a = rendered(base + k);
            let b = rendered(base + k + 1);
            let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert!(changed > 0, "frame {} equals the next", base + k);
            assert!(changed < 800, "frame {} jumps {changed} cells", base + k);
        }
    }
}

#[test]
fn frame_angles_follow_the_spec_at_small_frame_numbers() {
    for n in [0u64, 1, 2, 100, 10_000] {
        let angles = FrameAngles::for_frame(n);
        let a = 1.0 + 0.07 * n as f64;
        let b = 1.0 + 0.03 * n as f64;
        assert!((angles.sin_a - a.sin()).abs() < 1e-9, "frame {n}");
        assert!((angles.cos_a - a.cos()).abs() < 1e-9, "frame {n}");
        assert!((angles.sin_b - b.sin()).abs() < 1e-9, "frame {n}");
        assert!((angles.cos_b - b.cos()).abs() < 1e-9, "frame {n}");
    }
}

#[test]
fn render_packed_equals_pack_of_render() {
    for frame in [0, 59, 60, 1 << 33, u64::MAX] {
        let mut direct = [0u8; PACKED_LEN];
        render_packed(frame, &mut direct);
        let mut via_ascii = [0u8; PACKED_LEN];
        pack(&rendered(frame), &mut via_ascii).expect("rendered frames pack");
        assert_eq!(direct, via_ascii);
        let mut back = [0u8; FRAME_LEN];
        unpack(&direct, &mut back).expect("packed frames unpack");
        assert_eq!(back, rendered(frame));
    }
}
