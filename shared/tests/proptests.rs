//! Property tests of everything in `donut-shared` that touches untrusted bytes:
//! frame packing and every wire decoder.
//!
//! Example tests pin what a few chosen inputs do; these properties say what
//! *every* input does. Decoders are fed arbitrary bytes, arbitrary bytes
//! behind a valid `[version, tag]` prefix and mutated valid messages, and must
//! answer `Ok` or `Err` without panicking, with an error whose text fits in a
//! WebSocket close frame. Whatever they accept must re-encode to the very same
//! bytes, so there is exactly one encoding of every message.
//!
//! Large frame payloads are filled from a seed by a tiny PRNG rather than
//! drawn byte by byte, which keeps full-size (600-frame) messages cheap and
//! the whole file to a few seconds.

use donut_shared::Pose;
use donut_shared::donut::DRAWN_COLS;
use donut_shared::frame::validate_frame;
use donut_shared::frame::{ALPHABET, FrameError};
use donut_shared::scene::{Impulse, MAX_SPIN, Scene, Spin};
use donut_shared::wire::p2p::MAX_FROM_VIEWER_LEN;
use donut_shared::wire::{
    BufferTooSmall, Codec, DecodeError, FRAMES_HEADER_LEN, Frames, FromViewer, FromWorker,
    HELLO_LEN, Hello, INPUT_LEN, Input, Keyframe, MAX_BATCH_FRAMES, MAX_INPUT_UNITS, MAX_SLOTS,
    MAX_TASK_FRAMES, MAX_VIEWER_MESSAGE_LEN, MAX_WORKER_MESSAGE_LEN, PROTOCOL_VERSION,
    RESULT_HEADER_LEN, TASK_LEN, TELEMETRY_LEN, Task, TaskResult, Telemetry, ToViewer, ToWorker,
    tag,
};
use donut_shared::{FRAME_LEN, PACKED_LEN, WIDTH, pack, unpack};
use proptest::prelude::*;

/// Longest text a WebSocket close reason may carry.
const MAX_CLOSE_REASON: usize = 123;

/// Every tag of the protocol.
const ALL_TAGS: [u8; 6] = [
    tag::HELLO,
    tag::RESULT,
    tag::INPUT,
    tag::TASK,
    tag::FRAMES,
    tag::TELEMETRY,
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A deterministic stream of packed frames (byte `i` is byte `i % 880` of
/// a frame) that have a frame's layout, with random glyphs where the donut
/// may draw, so `count` packed frames can be made from one seed.
fn valid_packed_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|i| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let k = i % PACKED_LEN;
            let hi = layout_code(2 * k, state as u8);
            let lo = layout_code(2 * k + 1, (state >> 8) as u8);
            (hi << 4) | lo
        })
        .collect()
}

/// Which codes the layout allows at `symbol` (row × 80 + column), written
/// out from the rule rather than from the crate's table.
fn layout_allows(symbol: usize, code: u8) -> bool {
    let (row, col) = (symbol / WIDTH, symbol % WIDTH);
    if col == WIDTH - 1 {
        code == 13
    } else if row == 0 || !DRAWN_COLS.contains(&col) {
        code == 0
    } else {
        code <= 12
    }
}

/// A code the layout allows at `symbol`, chosen by `pick`.
fn layout_code(symbol: usize, pick: u8) -> u8 {
    (0..14u8)
        .cycle()
        .skip(usize::from(pick % 14))
        .find(|&c| layout_allows(symbol, c))
        .unwrap_or(0)
}

/// Whether any nibble of `bytes` is 14 or 15.
fn has_invalid_nibble(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b >> 4 >= 14 || b & 0x0f >= 14)
}

/// The first invalid nibble of `bytes` as the error `unpack` must report.
fn first_invalid_code(bytes: &[u8]) -> Option<FrameError> {
    bytes.iter().enumerate().find_map(|(k, &b)| {
        [(0, b >> 4), (1, b & 0x0f)]
            .into_iter()
            .find(|&(_, code)| code >= 14)
            .map(|(half, code)| FrameError::InvalidCode {
                at: 2 * k + half,
                code,
            })
    })
}

/// Checks the contract every decoder error must keep.
fn check_error(e: &DecodeError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.is_empty());
    prop_assert!(
        text.len() <= MAX_CLOSE_REASON,
        "close reason of {} bytes: {text}",
        text.len()
    );
    Ok(())
}

/// Re-encodes a decoded worker message.
fn encode_from_worker(m: &FromWorker<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_WORKER_MESSAGE_LEN];
    let n = match m {
        FromWorker::Hello(h) => h.encode(&mut out),
        FromWorker::Result(r) => r.encode(&mut out),
    }
    .expect("a decoded message fits the largest buffer");
    out.truncate(n);
    out
}

/// Re-encodes a decoded message for a worker.
fn encode_to_worker(m: &ToWorker) -> Vec<u8> {
    match m {
        ToWorker::Task(t) => t.to_bytes().to_vec(),
        ToWorker::Telemetry(t) => t.to_bytes().to_vec(),
    }
}

/// Re-encodes a decoded message for a viewer.
fn encode_to_viewer(m: &ToViewer<'_>) -> Vec<u8> {
    m.to_vec()
}

/// Runs all three decoders on `bytes`: none may panic, every error must be a
/// valid close reason, and anything accepted must re-encode byte for byte.
fn decode_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    match FromWorker::decode(bytes) {
        Ok(m) => prop_assert_eq!(encode_from_worker(&m), bytes),
        Err(e) => check_error(&e)?,
    }
    match ToWorker::decode(bytes) {
        Ok(m) => prop_assert_eq!(encode_to_worker(&m), bytes),
        Err(e) => check_error(&e)?,
    }
    match ToViewer::decode(bytes) {
        Ok(m) => prop_assert_eq!(encode_to_viewer(&m), bytes),
        Err(e) => check_error(&e)?,
    }
    match FromViewer::decode(bytes) {
        Ok(m) => prop_assert_eq!(m.to_vec(), bytes),
        Err(e) => check_error(&e)?,
    }
    Ok(())
}

/// Any scene a task may carry: any pose, any spin pushes can reach.
fn any_scene() -> impl Strategy<Value = Scene> {
    (
        any::<u64>(),
        any::<u64>(),
        -MAX_SPIN..=MAX_SPIN,
        -MAX_SPIN..=MAX_SPIN,
    )
        .prop_map(|(a, b, sa, sb)| Scene {
            pose: Pose { a, b },
            spin: Spin { a: sa, b: sb },
        })
}

fn any_telemetry() -> impl Strategy<Value = Telemetry> {
    (
        (any::<u64>(), any::<u16>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<u32>(), any::<u64>()),
    )
        .prop_map(
            |(
                (head, fps, workers, viewers),
                (fleet_fps, buffered_frames, batches_verified, frames_checked),
                (batches_rejected, workers_banned, contributed),
            )| Telemetry {
                head,
                fps,
                workers,
                viewers,
                fleet_fps,
                buffered_frames,
                batches_verified,
                frames_checked,
                batches_rejected,
                workers_banned,
                contributed,
                peers_linked: workers_banned.rotate_left(7),
                offload_permille: fps.rotate_left(3),
                p2p_fallbacks: contributed.rotate_left(9),
                digest_mismatches: viewers.rotate_left(5),
            },
        )
}

/// A frame count within `1..=max`, biased towards both ends.
fn count_within(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![Just(1u32), Just(max), 1..=max]
}

/// A frame count outside `1..=max`.
fn count_outside(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(max + 1), (max + 1)..=u32::MAX]
}

/// Bytes behind a valid `[version, tag]` prefix: the tag is usually one of
/// the protocol's, the body arbitrary.
fn prefixed_bytes(max_body: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => proptest::sample::select(ALL_TAGS.to_vec()), 1 => any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..max_body),
    )
        .prop_map(|(t, body)| {
            let mut bytes = vec![PROTOCOL_VERSION, t];
            bytes.extend(body);
            bytes
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn validate_frame_errs_exactly_where_the_layout_is_broken(
        seed in any::<u64>(),
        injected in proptest::collection::vec((0..FRAME_LEN, 0..16u8), 0..4),
    ) {
        let mut packed = [0u8; PACKED_LEN];
        packed.copy_from_slice(&valid_packed_bytes(seed, PACKED_LEN));
        prop_assert_eq!(validate_frame(&packed), Ok(()));
        for &(at, code) in &injected {
            let b = &mut packed[at / 2];
            *b = if at.is_multiple_of(2) { (code << 4) | (*b & 0x0f) } else { (*b & 0xf0) | code };
        }
        let codes = (0..FRAME_LEN).map(|s| {
            let b = packed[s / 2];
            if s.is_multiple_of(2) { b >> 4 } else { b & 0x0f }
        });
        let expected = first_invalid_code(&packed).or_else(|| {
            codes
                .enumerate()
                .find(|&(s, c)| !layout_allows(s, c))
                .map(|(at, code)| FrameError::Layout { at, code })
        });
        match expected {
            None => prop_assert_eq!(validate_frame(&packed), Ok(())),
            Some(e) => prop_assert_eq!(validate_frame(&packed), Err(e)),
        }
    }

    #[test]
    fn any_frame_of_alphabet_symbols_round_trips(
        codes in proptest::collection::vec(0..ALPHABET.len(), FRAME_LEN),
    ) {
        let mut frame = [0u8; FRAME_LEN];
        for (b, &c) in frame.iter_mut().zip(&codes) {
            *b = ALPHABET[c];
        }
        let mut packed = [0u8; PACKED_LEN];
        pack(&frame, &mut packed).expect("alphabet symbols pack");
        prop_assert!(!has_invalid_nibble(&packed));
        let mut back = [0u8; FRAME_LEN];
        unpack(&packed, &mut back).expect("packed frames unpack");
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn pack_rejects_the_first_byte_outside_the_alphabet(
        codes in proptest::collection::vec(0..ALPHABET.len(), FRAME_LEN),
        at in 0..FRAME_LEN,
        byte in any::<u8>().prop_filter("not a symbol", |b| !ALPHABET.contains(b)),
    ) {
        let mut frame = [0u8; FRAME_LEN];
        for (b, &c) in frame.iter_mut().zip(&codes) {
            *b = ALPHABET[c];
        }
        frame[at] = byte;
        let mut packed = [0u8; PACKED_LEN];
        prop_assert_eq!(
            pack(&frame, &mut packed),
            Err(FrameError::InvalidSymbol { at, byte })
        );
    }

    #[test]
    fn unpack_of_any_880_bytes_errs_exactly_on_nibbles_14_and_15(
        seed in any::<u64>(),
        raw in proptest::collection::vec(any::<u8>(), PACKED_LEN),
        // 0: all valid; 1: a few bad bytes injected; 2: fully arbitrary.
        mode in 0..3u8,
        injected in proptest::collection::vec((0..PACKED_LEN, any::<u8>()), 1..4),
    ) {
        let mut packed = [0u8; PACKED_LEN];
        match mode {
            0 | 1 => packed.copy_from_slice(&valid_packed_bytes(seed, PACKED_LEN)),
            _ => packed.copy_from_slice(&raw),
        }
        if mode == 1 {
            for &(at, byte) in &injected {
                packed[at] = byte;
            }
        }
        let mut out = [0u8; FRAME_LEN];
        let result = unpack(&packed, &mut out);
        match first_invalid_code(&packed) {
            None => {
                prop_assert_eq!(result, Ok(()));
                prop_assert!(out.iter().all(|b| ALPHABET.contains(b)));
                let mut again = [0u8; PACKED_LEN];
                pack(&out, &mut again).expect("unpacked frames pack");
                prop_assert_eq!(again, packed);
            }
            Some(expected) => prop_assert_eq!(result, Err(expected)),
        }
    }

    #[test]
    fn hello_round_trips(slots in 1..=MAX_SLOTS) {
        let mut buf = [0u8; HELLO_LEN];
        let n = Hello { slots }.encode(&mut buf).expect("fits");
        prop_assert_eq!(n, HELLO_LEN);
        prop_assert_eq!(FromWorker::decode(&buf), Ok(FromWorker::Hello(Hello { slots })));
        prop_assert_eq!(Hello { slots }.to_bytes(), buf);
    }

    #[test]
    fn task_round_trips(
        task_id in any::<u32>(),
        start in any::<u64>(),
        count in count_within(MAX_TASK_FRAMES),
        timeline in any::<u32>(),
        scene in any_scene(),
    ) {
        let task = Task { task_id, start, count, timeline, scene };
        let bytes = task.to_bytes();
        let mut buf = [0u8; TASK_LEN];
        prop_assert_eq!(task.encode(&mut buf), Ok(TASK_LEN));
        prop_assert_eq!(buf, bytes);
        prop_assert_eq!(ToWorker::decode(&bytes), Ok(ToWorker::Task(task)));
        prop_assert_eq!(task.frames().start, start);
        prop_assert!(task.frames().end >= start);
    }

    #[test]
    fn task_result_round_trips(
        task_id in any::<u32>(),
        start in any::<u64>(),
        count in count_within(MAX_TASK_FRAMES),
        seed in any::<u64>(),
    ) {
        let frames = valid_packed_bytes(seed, count as usize * PACKED_LEN);
        let result = TaskResult { task_id, start, count, frames: &frames };
        let mut bytes = TaskResult::header(task_id, start, count).to_vec();
        bytes.extend_from_slice(&frames);
        prop_assert_eq!(result.encoded_len(), bytes.len());
        let mut buf = vec![0u8; result.encoded_len()];
        prop_assert_eq!(result.encode(&mut buf), Ok(bytes.len()));
        prop_assert_eq!(&buf, &bytes);
        let decoded = FromWorker::decode(&bytes);
        prop_assert_eq!(decoded, Ok(FromWorker::Result(result)));
        if let Ok(FromWorker::Result(r)) = decoded {
            prop_assert_eq!(r.packed_frames().len(), count as usize);
            for (k, f) in r.packed_frames().enumerate() {
                prop_assert_eq!(&f[..], &frames[k * PACKED_LEN..(k + 1) * PACKED_LEN]);
            }
        }
    }

    #[test]
    fn frames_round_trip(
        start in any::<u64>(),
        count in count_within(MAX_BATCH_FRAMES),
        timeline in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let payload = valid_packed_bytes(seed, count as usize * PACKED_LEN);
        let frames = Frames { start, count, timeline, codec: Codec::Nibble, payload: &payload };
        let mut bytes = Frames::header(start, count, timeline, Codec::Nibble).to_vec();
        bytes.extend_from_slice(&payload);
        prop_assert_eq!(frames.encoded_len(), bytes.len());
        let mut buf = vec![0u8; frames.encoded_len()];
        prop_assert_eq!(frames.encode(&mut buf), Ok(bytes.len()));
        prop_assert_eq!(&buf, &bytes);
        prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Frames(frames)));
    }

    #[test]
    fn input_round_trips_within_the_cap(
        a in -MAX_INPUT_UNITS..=MAX_INPUT_UNITS,
        b in -MAX_INPUT_UNITS..=MAX_INPUT_UNITS,
    ) {
        let input = Input { a, b };
        let bytes = input.to_bytes();
        let mut buf = [0u8; INPUT_LEN];
        prop_assert_eq!(input.encode(&mut buf), Ok(INPUT_LEN));
        prop_assert_eq!(buf, bytes);
        prop_assert_eq!(FromViewer::decode(&bytes), Ok(FromViewer::Input(input)));
        prop_assert_eq!(FromWorker::decode(&bytes), Err(DecodeError::WrongDirection(tag::INPUT)));
        prop_assert_eq!(input.impulse(), Impulse { a: i32::from(a), b: i32::from(b) });
    }

    #[test]
    fn input_beyond_the_cap_is_refused(
        a in any::<i16>(),
        b in any::<i16>().prop_filter("beyond the cap", |b| b.unsigned_abs() > MAX_INPUT_UNITS as u16),
        swap in any::<bool>(),
    ) {
        let (a, b) = if swap { (b, a) } else { (a, b) };
        let bytes = Input { a, b }.to_bytes();
        prop_assert_eq!(FromViewer::decode(&bytes), Err(DecodeError::InputOutOfRange { a, b }));
    }

    #[test]
    fn a_task_spinning_beyond_the_limit_is_refused(
        task_id in any::<u32>(),
        start in any::<u64>(),
        over in (MAX_SPIN + 1)..=i64::MAX,
        negative in any::<bool>(),
    ) {
        let mut task = Task::idle(task_id, start, 1);
        task.scene.spin.b = if negative { -over } else { over };
        prop_assert_eq!(ToWorker::decode(&task.to_bytes()), Err(DecodeError::InvalidScene));
    }

    #[test]
    fn keyframes_round_trip_to_viewers_only(
        frame in any::<u64>(),
        timeline in any::<u32>(),
        acked in any::<u32>(),
        scene in any_scene(),
    ) {
        let k = Keyframe { frame, timeline, acked, scene };
        let bytes = k.to_bytes();
        prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Keyframe(k)));
        prop_assert_eq!(ToViewer::Keyframe(k).to_vec(), bytes.to_vec());
        prop_assert_eq!(FromViewer::decode(&bytes), Err(DecodeError::WrongDirection(tag::KEYFRAME)));
        prop_assert_eq!(ToWorker::decode(&bytes), Err(DecodeError::WrongDirection(tag::KEYFRAME)));
    }

    #[test]
    fn telemetry_round_trips_to_workers_and_viewers(t in any_telemetry()) {
        let bytes = t.to_bytes();
        let mut buf = [0u8; TELEMETRY_LEN];
        prop_assert_eq!(t.encode(&mut buf), Ok(TELEMETRY_LEN));
        prop_assert_eq!(buf, bytes);
        prop_assert_eq!(ToWorker::decode(&bytes), Ok(ToWorker::Telemetry(t)));
        prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Telemetry(t)));
        prop_assert_eq!(FromWorker::decode(&bytes), Err(DecodeError::WrongDirection(tag::TELEMETRY)));
    }

    #[test]
    fn input_refusals_round_trip_and_unknown_reasons_are_refused(byte in any::<u8>()) {
        use donut_shared::wire::{InputRefused, Refusal};
        let bytes = [PROTOCOL_VERSION, tag::INPUT_REFUSED, byte];
        match Refusal::ALL.into_iter().find(|r| *r as u8 == byte) {
            Some(reason) => {
                let m = InputRefused { reason };
                prop_assert_eq!(m.to_bytes(), bytes);
                prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::InputRefused(m)));
            }
            None => prop_assert_eq!(
                ToViewer::decode(&bytes),
                Err(DecodeError::InvalidValue { field: "reason", value: byte })
            ),
        }
        prop_assert_eq!(ToWorker::decode(&bytes), Err(DecodeError::WrongDirection(tag::INPUT_REFUSED)));
        prop_assert_eq!(FromViewer::decode(&bytes), Err(DecodeError::WrongDirection(tag::INPUT_REFUSED)));
    }

    #[test]
    fn encoding_into_a_short_buffer_fails_cleanly(
        len in 0..TELEMETRY_LEN,
        t in any_telemetry(),
        task_id in any::<u32>(),
        start in any::<u64>(),
        slots in 1..=MAX_SLOTS,
    ) {
        let mut buf = vec![0u8; len];
        let needed = |n| if len < n { Err(BufferTooSmall { needed: n }) } else { Ok(n) };
        prop_assert_eq!(t.encode(&mut buf), needed(TELEMETRY_LEN));
        prop_assert_eq!(Task::idle(task_id, start, 1).encode(&mut buf), needed(TASK_LEN));
        prop_assert_eq!(Input::default().encode(&mut buf), needed(INPUT_LEN));
        prop_assert_eq!(Hello { slots }.encode(&mut buf), needed(HELLO_LEN));
        let frame = [0u8; PACKED_LEN];
        let r = TaskResult { task_id, start, count: 1, frames: &frame };
        prop_assert_eq!(r.encode(&mut buf), Err(BufferTooSmall { needed: RESULT_HEADER_LEN + PACKED_LEN }));
        let f = Frames { start, count: 1, timeline: 0, codec: Codec::Nibble, payload: &frame };
        prop_assert_eq!(f.encode(&mut buf), Err(BufferTooSmall { needed: FRAMES_HEADER_LEN + PACKED_LEN }));
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes)?;
    }

    #[test]
    fn decoders_never_panic_behind_a_valid_prefix(bytes in prefixed_bytes(2048)) {
        decode_all(&bytes)?;
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_messages(
        which in 0..6u8,
        count in 1..4u32,
        seed in any::<u64>(),
        t in any_telemetry(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        extra in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let frames = valid_packed_bytes(seed, count as usize * PACKED_LEN);
        let mut bytes = match which {
            0 => Hello { slots: (seed % 64) as u16 + 1 }.to_bytes().to_vec(),
            1 => Task::idle(t.workers, t.head, count).to_bytes().to_vec(),
            2 => {
                let mut b = TaskResult::header(t.workers, t.head, count).to_vec();
                b.extend_from_slice(&frames);
                b
            }
            3 => {
                let mut b = Frames::header(t.head, count, t.viewers, Codec::Nibble).to_vec();
                b.extend_from_slice(&frames);
                b
            }
            4 => Input { a: t.fps as i16 % MAX_INPUT_UNITS, b: -(t.workers as i16 % MAX_INPUT_UNITS) }.to_bytes().to_vec(),
            _ => t.to_bytes().to_vec(),
        };
        decode_all(&bytes)?;
        for (at, byte) in &edits {
            let k = at.index(bytes.len());
            bytes[k] = *byte;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes.extend_from_slice(&extra);
        decode_all(&bytes)?;
    }

    #[test]
    fn wrong_direction_tags_are_named_as_such(
        body in proptest::collection::vec(any::<u8>(), 0..(TELEMETRY_LEN - 2)),
    ) {
        let msg = |t: u8| {
            let mut b = vec![PROTOCOL_VERSION, t];
            b.extend_from_slice(&body);
            b
        };
        for t in [tag::INPUT, tag::TASK, tag::FRAMES, tag::TELEMETRY] {
            let m = msg(t);
            prop_assert_eq!(FromWorker::decode(&m), Err(DecodeError::WrongDirection(t)));
        }
        for t in [tag::HELLO, tag::RESULT, tag::INPUT, tag::FRAMES] {
            prop_assert_eq!(ToWorker::decode(&msg(t)), Err(DecodeError::WrongDirection(t)));
        }
        for t in [tag::HELLO, tag::RESULT, tag::INPUT, tag::TASK] {
            let m = msg(t);
            prop_assert_eq!(ToViewer::decode(&m), Err(DecodeError::WrongDirection(t)));
        }
        // A viewer's messages are small: anything longer than the longest
        // signal is refused by length before its tag is looked at.
        for t in [tag::HELLO, tag::RESULT, tag::TASK, tag::FRAMES, tag::TELEMETRY, tag::DIGEST] {
            let m = msg(t);
            let want = if m.len() > MAX_FROM_VIEWER_LEN {
                Err(DecodeError::TooLarge { len: m.len(), max: MAX_FROM_VIEWER_LEN })
            } else {
                Err(DecodeError::WrongDirection(t))
            };
            prop_assert_eq!(FromViewer::decode(&m), want);
        }
    }

    #[test]
    fn unknown_tags_and_versions_are_rejected(
        t in any::<u8>().prop_filter("unknown tag", |t| !tag::is_known(*t)),
        version in any::<u8>().prop_filter("other version", |v| *v != PROTOCOL_VERSION),
        body in proptest::collection::vec(any::<u8>(), 0..(TELEMETRY_LEN - 2)),
    ) {
        let mut unknown = vec![PROTOCOL_VERSION, t];
        unknown.extend_from_slice(&body);
        prop_assert_eq!(FromWorker::decode(&unknown), Err(DecodeError::UnknownTag(t)));
        prop_assert_eq!(ToWorker::decode(&unknown), Err(DecodeError::UnknownTag(t)));
        prop_assert_eq!(ToViewer::decode(&unknown), Err(DecodeError::UnknownTag(t)));
        prop_assert_eq!(FromViewer::decode(&unknown), Err(DecodeError::UnknownTag(t)));
        let mut other = vec![version];
        other.extend_from_slice(&body);
        prop_assert_eq!(FromWorker::decode(&other), Err(DecodeError::Version { got: version }));
        prop_assert_eq!(ToWorker::decode(&other), Err(DecodeError::Version { got: version }));
        prop_assert_eq!(ToViewer::decode(&other), Err(DecodeError::Version { got: version }));
        prop_assert_eq!(FromViewer::decode(&other), Err(DecodeError::Version { got: version }));
    }

    #[test]
    fn over_cap_counts_are_rejected(
        task_id in any::<u32>(),
        start in any::<u64>(),
        task_count in count_outside(MAX_TASK_FRAMES),
        batch_count in count_outside(MAX_BATCH_FRAMES),
        slots in prop_oneof![Just(0u16), (MAX_SLOTS + 1)..=u16::MAX],
        seed in any::<u64>(),
        frames in 0..3usize,
    ) {
        let task = Task::idle(task_id, start, task_count).to_bytes();
        prop_assert_eq!(
            ToWorker::decode(&task),
            Err(DecodeError::InvalidCount { count: task_count, max: MAX_TASK_FRAMES })
        );
        // The count is refused before the frames are looked at, whatever follows.
        let mut result = TaskResult::header(task_id, start, task_count).to_vec();
        result.extend_from_slice(&valid_packed_bytes(seed, frames * PACKED_LEN));
        prop_assert_eq!(
            FromWorker::decode(&result),
            Err(DecodeError::InvalidCount { count: task_count, max: MAX_TASK_FRAMES })
        );
        let mut batch = Frames::header(start, batch_count, 0, Codec::Nibble).to_vec();
        batch.extend_from_slice(&valid_packed_bytes(seed, frames * PACKED_LEN));
        prop_assert_eq!(
            ToViewer::decode(&batch),
            Err(DecodeError::InvalidCount { count: batch_count, max: MAX_BATCH_FRAMES })
        );
        let hello = Hello { slots }.to_bytes();
        prop_assert_eq!(FromWorker::decode(&hello), Err(DecodeError::InvalidSlots(slots)));
    }

    #[test]
    fn payloads_must_match_their_count_and_hold_valid_frames(
        task_id in any::<u32>(),
        start in any::<u64>(),
        count in 1..5u32,
        // Whole frames too many or too few, on top of a partial frame.
        sent in 0..3usize,
        more in any::<bool>(),
        tail in 1..PACKED_LEN,
        seed in any::<u64>(),
        bad_at in 0..PACKED_LEN,
        bad_byte in 0xe0u8..=0xff,
    ) {
        let count_len = count as usize * PACKED_LEN;
        // A payload length that differs from count × 880.
        let len = if more {
            count_len + sent * PACKED_LEN + tail
        } else {
            count_len.saturating_sub(sent * PACKED_LEN + tail)
        };
        let payload = valid_packed_bytes(seed, len);
        let mut result = TaskResult::header(task_id, start, count).to_vec();
        result.extend_from_slice(&payload);
        prop_assert_eq!(
            FromWorker::decode(&result),
            Err(DecodeError::LengthMismatch { expected: count_len, got: len })
        );
        let mut batch = Frames::header(start, count, 0, Codec::Nibble).to_vec();
        batch.extend_from_slice(&payload);
        prop_assert_eq!(
            ToViewer::decode(&batch),
            Err(DecodeError::LengthMismatch { expected: count_len, got: len })
        );

        // Right length, one bad nibble in the last frame.
        let mut frames = valid_packed_bytes(seed, count_len);
        let index = count - 1;
        frames[index as usize * PACKED_LEN + bad_at] = bad_byte;
        let error = FrameError::InvalidCode { at: 2 * bad_at, code: bad_byte >> 4 };
        let mut result = TaskResult::header(task_id, start, count).to_vec();
        result.extend_from_slice(&frames);
        prop_assert_eq!(
            FromWorker::decode(&result),
            Err(DecodeError::InvalidFrame { index, error })
        );
        let mut batch = Frames::header(start, count, 0, Codec::Nibble).to_vec();
        batch.extend_from_slice(&frames);
        prop_assert_eq!(ToViewer::decode(&batch), Err(DecodeError::InvalidFrame { index, error }));
    }

    #[test]
    fn oversized_messages_are_refused_before_they_are_read(
        extra in 1..2048usize,
        t in any::<u8>(),
    ) {
        let worker = vec![PROTOCOL_VERSION; MAX_WORKER_MESSAGE_LEN + extra];
        prop_assert_eq!(
            FromWorker::decode(&worker),
            Err(DecodeError::TooLarge { len: worker.len(), max: MAX_WORKER_MESSAGE_LEN })
        );
        let viewer = vec![t; MAX_VIEWER_MESSAGE_LEN + extra];
        prop_assert_eq!(
            ToViewer::decode(&viewer),
            Err(DecodeError::TooLarge { len: viewer.len(), max: MAX_VIEWER_MESSAGE_LEN })
        );
        let to_worker = vec![t; TELEMETRY_LEN.max(TASK_LEN) + extra];
        prop_assert_eq!(
            ToWorker::decode(&to_worker),
            Err(DecodeError::TooLarge { len: to_worker.len(), max: TELEMETRY_LEN.max(TASK_LEN) })
        );
    }
}

#[test]
fn the_empty_message_is_an_error_everywhere() {
    assert_eq!(FromWorker::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(ToWorker::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(ToViewer::decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn a_version_refusal_is_recognised_from_the_servers_own_close_text() {
    use donut_shared::wire::refuses_version;
    let refusal = DecodeError::Version {
        got: PROTOCOL_VERSION + 1,
    }
    .to_string();
    assert!(refuses_version(1002, &refusal), "{refusal}");
    assert!(!refuses_version(1008, &refusal));
    assert!(!refuses_version(1002, "truncated message: 3 bytes, need 4"));
}

/// Each codec's configuration name maps back to it; other names to none.
#[test]
fn codec_names_round_trip() {
    for codec in Codec::ALL {
        assert_eq!(Codec::from_name(codec.name()), Some(codec));
    }
    assert_eq!(Codec::ALL.map(Codec::name), ["nibble", "context", "primed"]);
    assert_eq!(Codec::from_name("Context"), None);
    assert_eq!(Codec::from_name(""), None);
}

// The scene viewers steer (shared::scene): stepping, clamping, encoding.
proptest! {
    #[test]
    fn advance_is_repeated_step(scene in any_scene(), frames in 0u64..1_000) {
        let mut stepped = scene;
        for _ in 0..frames {
            stepped.step();
        }
        let mut advanced = scene;
        advanced.advance(frames);
        prop_assert_eq!(stepped, advanced);
    }

    #[test]
    fn advance_composes(scene in any_scene(), x in 0u64..1_000, y in any::<u32>()) {
        let mut once = scene;
        once.advance(x + u64::from(y));
        let mut twice = scene;
        twice.advance(x);
        twice.advance(u64::from(y));
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn spin_stays_in_range(scene in any_scene(), pushes in proptest::collection::vec((any::<i32>(), any::<i32>(), 0u64..50), 0..20)) {
        let mut scene = scene;
        for (a, b, gap) in pushes {
            scene.push(Impulse { a, b });
            scene.advance(gap);
            prop_assert!(scene.spin.a.abs() <= MAX_SPIN && scene.spin.b.abs() <= MAX_SPIN);
        }
    }

    #[test]
    fn any_pose_renders_a_well_formed_frame(a in any::<u64>(), b in any::<u64>()) {
        let mut packed = [0u8; PACKED_LEN];
        donut_shared::render_pose_packed(Pose { a, b }, &mut packed);
        prop_assert_eq!(validate_frame(&packed), Ok(()));
    }

    #[test]
    fn bytes_round_trip(scene in any_scene()) {
        prop_assert_eq!(Scene::from_bytes(&scene.to_bytes()), Ok(scene));
    }
}
