//! Fuzzes `unpack`, `validate_packed` and `validate_frame`, which judge
//! untrusted packed frames: never a panic, `unpack` errs exactly when some
//! nibble is 14 or 15 and a successful unpack packs back to the same bytes,
//! and `validate_frame` errs exactly when a nibble is invalid or breaks the
//! layout (checked here against the rule written out, not the crate's table).
#![no_main]

use donut_shared::donut::DRAWN_COLS;
use donut_shared::frame::{validate_frame, validate_packed};
use donut_shared::{FRAME_LEN, PACKED_LEN, WIDTH, pack, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bad = data.iter().any(|&b| b >> 4 >= 14 || b & 0x0f >= 14);
    assert_eq!(validate_packed(data).is_err(), bad);

    let Some(head) = data.first_chunk::<PACKED_LEN>() else {
        return;
    };
    let bad = head.iter().any(|&b| b >> 4 >= 14 || b & 0x0f >= 14);
    let off_layout = (0..FRAME_LEN).any(|s| {
        let code = if s.is_multiple_of(2) { head[s / 2] >> 4 } else { head[s / 2] & 0x0f };
        let (row, col) = (s / WIDTH, s % WIDTH);
        if col == WIDTH - 1 {
            code != 13
        } else if row == 0 || !DRAWN_COLS.contains(&col) {
            code != 0
        } else {
            code > 12
        }
    });
    assert_eq!(validate_frame(head).is_err(), bad || off_layout);
    let mut frame = [0u8; FRAME_LEN];
    match unpack(head, &mut frame) {
        Ok(()) => {
            assert!(!bad, "unpack accepted an invalid nibble");
            let mut again = [0u8; PACKED_LEN];
            pack(&frame, &mut again).expect("an unpacked frame packs");
            assert_eq!(&again, head, "unpack then pack is not the identity");
        }
        Err(_) => assert!(bad, "unpack rejected a valid frame"),
    }
});
