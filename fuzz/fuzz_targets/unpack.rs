//! Fuzzes `unpack` and `validate_packed`, which turn untrusted packed frames
//! back into ASCII: never a panic, an error exactly when some nibble is 14
//! or 15, and a successful unpack packs back to the same bytes.
#![no_main]

use donut_shared::frame::validate_packed;
use donut_shared::{FRAME_LEN, PACKED_LEN, pack, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bad = data.iter().any(|&b| b >> 4 >= 14 || b & 0x0f >= 14);
    assert_eq!(validate_packed(data).is_err(), bad);

    let Some(head) = data.first_chunk::<PACKED_LEN>() else {
        return;
    };
    let bad = head.iter().any(|&b| b >> 4 >= 14 || b & 0x0f >= 14);
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
