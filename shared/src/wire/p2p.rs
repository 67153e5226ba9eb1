//! The peer relay's messages on the viewer socket (`/ws/viewer`): the
//! relay tree's assignments, WebRTC signalling, batch digests, the deadline
//! fallback and reports of a peer that relayed bad bytes.
//!
//! Viewers relay the broadcast to each other over WebRTC data channels
//! (see the server's `p2p` module for the tree). The server stays the
//! source of truth: it announces every batch to a peer-fed viewer by its
//! [`Digest`] (a BLAKE3 hash of the exact `Frames` message), and a viewer
//! plays or relays a batch only when its bytes hash to the announced
//! digest. The WebSocket is the relay of last resort: a batch that has not
//! come from the parent in time is asked for with [`Fetch`].
//!
//! Layout after `[PROTOCOL_VERSION, tag]`, big-endian:
//!
//! | tag | message | direction | body |
//! |---|---|---|---|
//! | `0x04` | [`Peering`] | viewer → server | `on:u8` (0 or 1) |
//! | `0x05` | [`Signal`] | both | `peer:u64 kind:u8` + text (UTF-8, ≤ [`MAX_SIGNAL_TEXT`]) |
//! | `0x06` | [`Link`] | viewer → server | `parent:u64 up:u8` |
//! | `0x07` | [`Fetch`] | viewer → server | `start:u64 timeline:u32` |
//! | `0x08` | [`Report`] | viewer → server | `peer:u64 start:u64 timeline:u32` |
//! | `0x09` | [`Proof`] | viewer → server | `start:u64 timeline:u32` + 16-byte tag (version 4) |
//! | `0x21` | [`Digest`] | server → viewer | `start:u64 count:u32 timeline:u32 len:u32` + 32-byte hash |
//! | `0x22` | [`Welcome`] | server → viewer | `id:u64` + ICE server URLs (UTF-8, ≤ [`MAX_ICE_TEXT`]) |
//! | `0x23` | [`Assign`] | server → viewer | `parent:u64 backup:u64` |
//!
//! Peer ids are the server's ids for viewer connections; [`SERVER`] (0)
//! names the server itself. In a `Signal` from a viewer, `peer` is whom it
//! is for; from the server, whom it is from. The server forwards a signal
//! only between a viewer and its assigned parent, so the socket is not a
//! general message bus between strangers.

use super::{BufferTooSmall, DecodeError, Reader, Writer, tag};

/// The peer id that names the server: a viewer whose parent is `SERVER` is
/// fed by its WebSocket.
pub const SERVER: u64 = 0;

/// Longest signalling text: an SDP offer or answer of one data channel is
/// well under 1 KiB in Chromium and Firefox, an ICE candidate line under
/// 256 bytes.
pub const MAX_SIGNAL_TEXT: usize = 4096;

/// Longest ICE server list in a [`Welcome`] (comma-separated URLs).
pub const MAX_ICE_TEXT: usize = 1024;

/// Length of a `Peering` message.
pub const PEERING_LEN: usize = super::PREFIX_LEN + 1;
/// Length of a `Signal` message before its text.
pub const SIGNAL_HEADER_LEN: usize = super::PREFIX_LEN + 9;
/// Length of a `Link` message.
pub const LINK_LEN: usize = super::PREFIX_LEN + 9;
/// Length of a `Fetch` message.
pub const FETCH_LEN: usize = super::PREFIX_LEN + 12;
/// Length of a `Report` message.
pub const REPORT_LEN: usize = super::PREFIX_LEN + 20;
/// Length of a `Proof` message.
pub const PROOF_LEN: usize = super::PREFIX_LEN + 12 + PROOF_TAG_LEN;
/// Bytes of a [`Proof`]'s tag.
pub const PROOF_TAG_LEN: usize = 16;
/// Length of a `Digest` message.
pub const DIGEST_LEN: usize = super::PREFIX_LEN + 20 + HASH_LEN;
/// Length of a `Welcome` message before its text.
pub const WELCOME_HEADER_LEN: usize = super::PREFIX_LEN + 8;
/// Length of an `Assign` message.
pub const ASSIGN_LEN: usize = super::PREFIX_LEN + 16;
/// Bytes of a batch hash (BLAKE3's default output).
pub const HASH_LEN: usize = 32;

/// The largest message a viewer may send (a `Signal` with the longest
/// text). Servers reject anything longer before reading it.
pub const MAX_FROM_VIEWER_LEN: usize = SIGNAL_HEADER_LEN + MAX_SIGNAL_TEXT;

/// Viewer → server: this viewer takes part in the relay tree (`on`: it may
/// be fed by a peer and relay to others) or leaves it (served by the
/// server only, its address shown to no peer). A viewer that never sends
/// it is served by the server, exactly as without P2P.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peering {
    /// Join (true) or leave (false).
    pub on: bool,
}

/// What a [`Signal`] carries (the WebRTC offer/answer exchange, RFC 8829,
/// and trickled ICE candidates, RFC 8838).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SignalKind {
    /// An SDP offer (from the child, which opens the data channel).
    Offer = 1,
    /// The SDP answer (from the parent).
    Answer = 2,
    /// One ICE candidate line (`candidate:…`, RFC 8839 §5.1); an empty text
    /// ends the candidates.
    Candidate = 3,
}

/// WebRTC signalling between a viewer and its parent, through the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal<'a> {
    /// From a viewer: the peer it is for; from the server: the peer it
    /// came from.
    pub peer: u64,
    /// Offer, answer or candidate.
    pub kind: SignalKind,
    /// The SDP or the candidate line, UTF-8, at most [`MAX_SIGNAL_TEXT`]
    /// bytes.
    pub text: &'a str,
}

/// Viewer → server: the data channel from `parent` opened (`up`), so the
/// server may send this viewer digests instead of batches; or it closed or
/// failed (not `up`), so the server sends batches again and finds it
/// another parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The parent's peer id.
    pub parent: u64,
    /// Open (true) or lost (false).
    pub up: bool,
}

/// Viewer → server: the deadline fallback. The batch of `timeline` starting
/// at `start` was announced but has not come from the parent in time to be
/// played without a stall: send its `Frames` now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The batch's first frame.
    pub start: u64,
    /// Its timeline version.
    pub timeline: u32,
}

/// Viewer → server: `peer` relayed bytes for the batch (`start`,
/// `timeline`) that do not match its digest. The viewer has dropped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The peer that sent them.
    pub peer: u64,
    /// The batch's first frame.
    pub start: u64,
    /// Its timeline version.
    pub timeline: u32,
}

/// Viewer → server: this viewer holds the batch (`start`, `timeline`) a
/// peer delivered: `tag` is [`Proof::tag_of`] its own peer id and the
/// batch's exact bytes, which only a viewer that has them can compute. The
/// server counts as offloaded only the bytes of batches proven so (what
/// viewers merely claim, by `Link`, is counted apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The batch's first frame.
    pub start: u64,
    /// Its timeline version.
    pub timeline: u32,
    /// [`Proof::tag_of`] the prover's id and the batch.
    pub tag: [u8; PROOF_TAG_LEN],
}

/// Server → viewer: the batch `start .. start + count` of `timeline` is
/// `len` bytes whose BLAKE3 hash is `hash` (see [`batch_hash`]). A peer-fed
/// viewer gets this instead of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// First frame.
    pub start: u64,
    /// Number of frames, 1..=[`super::MAX_BATCH_FRAMES`].
    pub count: u32,
    /// The timeline version.
    pub timeline: u32,
    /// Length of the `Frames` message, 1..=[`super::MAX_VIEWER_MESSAGE_LEN`].
    pub len: u32,
    /// BLAKE3 of the whole `Frames` message.
    pub hash: [u8; HASH_LEN],
}

/// Server → viewer: the answer to `Peering { on: true }`: the viewer's
/// peer id and the ICE servers to use (comma-separated `stun:`/`turn:`
/// URLs; empty: none, host candidates only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// This viewer's peer id (never [`SERVER`]).
    pub id: u64,
    /// ICE server URLs, comma-separated, at most [`MAX_ICE_TEXT`] bytes.
    pub ice_servers: &'a str,
}

/// Server → viewer: take batches from `parent` ([`SERVER`]: from the
/// WebSocket); `backup` is who the server moves the viewer to if the parent
/// is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assign {
    /// The parent's peer id, or [`SERVER`].
    pub parent: u64,
    /// The backup parent's peer id, or [`SERVER`].
    pub backup: u64,
}

/// BLAKE3 of a `Frames` message: what a [`Digest`] announces.
pub fn batch_hash(msg: &[u8]) -> [u8; HASH_LEN] {
    *blake3::hash(msg).as_bytes()
}

/// The connection address of an ICE candidate line (`candidate:…` with or
/// without the `a=` prefix, RFC 8839 §5.1: foundation, component,
/// transport, priority, then the address), or `None` if the line is not a
/// candidate. It may be an IP address or an mDNS `.local` name.
pub fn candidate_address(line: &str) -> Option<&str> {
    let line = line.strip_prefix("a=").unwrap_or(line);
    let rest = line.strip_prefix("candidate:")?;
    rest.split_ascii_whitespace().nth(4)
}

fn flag(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::InvalidValue {
            field: "flag",
            value,
        }),
    }
}

fn text<'a>(r: &Reader<'a>, max: usize) -> Result<&'a str, DecodeError> {
    let rest = r.rest();
    if rest.len() > max {
        return Err(DecodeError::TooLarge {
            len: r.buf.len(),
            max: r.pos + max,
        });
    }
    core::str::from_utf8(rest).map_err(|_| DecodeError::InvalidText)
}

impl Peering {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; PEERING_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, PEERING_LEN, tag::PEERING)?;
            w.put(&[u8::from(self.on)]);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let on = flag(&mut r)?;
        r.finish()?;
        Ok(Self { on })
    }
}

impl SignalKind {
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::Offer),
            2 => Ok(Self::Answer),
            3 => Ok(Self::Candidate),
            value => Err(DecodeError::InvalidValue {
                field: "kind",
                value,
            }),
        }
    }
}

impl<'a> Signal<'a> {
    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        SIGNAL_HEADER_LEN + self.text.len()
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, self.encoded_len(), tag::SIGNAL)?;
        w.u64(self.peer);
        w.put(&[self.kind as u8]);
        w.put(self.text.as_bytes());
        Ok(w.done())
    }

    /// The same signal addressed to (or from) `peer`.
    pub fn with_peer(self, peer: u64) -> Self {
        Self { peer, ..self }
    }

    pub(super) fn decode_body(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        let peer = r.u64()?;
        let kind = SignalKind::from_byte(r.u8()?)?;
        let text = text(&r, MAX_SIGNAL_TEXT)?;
        Ok(Self { peer, kind, text })
    }
}

impl Link {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; LINK_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, LINK_LEN, tag::LINK)?;
            w.u64(self.parent);
            w.put(&[u8::from(self.up)]);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let parent = r.u64()?;
        let up = flag(&mut r)?;
        r.finish()?;
        Ok(Self { parent, up })
    }
}

impl Fetch {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; FETCH_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, FETCH_LEN, tag::FETCH)?;
            w.u64(self.start);
            w.u32(self.timeline);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.u64()?;
        let timeline = r.u32()?;
        r.finish()?;
        Ok(Self { start, timeline })
    }
}

impl Report {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; REPORT_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, REPORT_LEN, tag::REPORT)?;
            w.u64(self.peer);
            w.u64(self.start);
            w.u32(self.timeline);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let peer = r.u64()?;
        let start = r.u64()?;
        let timeline = r.u32()?;
        r.finish()?;
        Ok(Self {
            peer,
            start,
            timeline,
        })
    }
}

impl Proof {
    /// The proof that viewer `id` holds `msg`, the encoded `Frames`
    /// message of the batch (`start`, `timeline`).
    pub fn of(id: u64, start: u64, timeline: u32, msg: &[u8]) -> Self {
        Self {
            start,
            timeline,
            tag: Self::tag_of(id, msg),
        }
    }

    /// BLAKE3 in key-derivation mode (context `donut relay proof v4`) over
    /// `id` (big-endian) then `msg`, truncated to [`PROOF_TAG_LEN`] bytes:
    /// bound to the prover, so one viewer's proof is no other's.
    pub fn tag_of(id: u64, msg: &[u8]) -> [u8; PROOF_TAG_LEN] {
        let mut h = blake3::Hasher::new_derive_key("donut relay proof v4");
        h.update(&id.to_be_bytes());
        h.update(msg);
        let mut tag = [0u8; PROOF_TAG_LEN];
        tag.copy_from_slice(&h.finalize().as_bytes()[..PROOF_TAG_LEN]);
        tag
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, PROOF_LEN, tag::PROOF)?;
            w.u64(self.start);
            w.u32(self.timeline);
            w.put(&self.tag);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.u64()?;
        let timeline = r.u32()?;
        let tag = r.bytes::<PROOF_TAG_LEN>()?;
        r.finish()?;
        Ok(Self {
            start,
            timeline,
            tag,
        })
    }
}

impl Digest {
    /// The digest of `msg`, an encoded `Frames` message of the batch
    /// `start .. start + count` of `timeline`.
    pub fn of(start: u64, count: u32, timeline: u32, msg: &[u8]) -> Self {
        Self {
            start,
            count,
            timeline,
            len: msg.len() as u32,
            hash: batch_hash(msg),
        }
    }

    /// Whether `msg` is exactly the batch this digest announces.
    pub fn matches(&self, msg: &[u8]) -> bool {
        msg.len() == self.len as usize && batch_hash(msg) == self.hash
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; DIGEST_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, DIGEST_LEN, tag::DIGEST)?;
            w.u64(self.start);
            w.u32(self.count);
            w.u32(self.timeline);
            w.u32(self.len);
            w.put(&self.hash);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.u64()?;
        let count = r.u32()?;
        super::check_count(count, super::MAX_BATCH_FRAMES)?;
        let timeline = r.u32()?;
        let len = r.u32()?;
        let max = super::MAX_VIEWER_MESSAGE_LEN;
        if len == 0 || len as usize > max {
            return Err(DecodeError::TooLarge {
                len: len as usize,
                max,
            });
        }
        let hash = r.bytes::<HASH_LEN>()?;
        r.finish()?;
        Ok(Self {
            start,
            count,
            timeline,
            len,
            hash,
        })
    }
}

impl<'a> Welcome<'a> {
    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        WELCOME_HEADER_LEN + self.ice_servers.len()
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, self.encoded_len(), tag::WELCOME)?;
        w.u64(self.id);
        w.put(self.ice_servers.as_bytes());
        Ok(w.done())
    }

    pub(super) fn decode_body(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        let id = r.u64()?;
        let ice_servers = text(&r, MAX_ICE_TEXT)?;
        Ok(Self { id, ice_servers })
    }

    /// The ICE server URLs, in order (none if the list is empty).
    pub fn ice_server_urls(&self) -> impl Iterator<Item = &'a str> {
        self.ice_servers
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

impl Assign {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; ASSIGN_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, ASSIGN_LEN, tag::ASSIGN)?;
            w.u64(self.parent);
            w.u64(self.backup);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let parent = r.u64()?;
        let backup = r.u64()?;
        r.finish()?;
        Ok(Self { parent, backup })
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate alloc;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::wire::{FromViewer, ToViewer};
    use proptest::prelude::*;

    fn signal_bytes(s: &Signal<'_>) -> Vec<u8> {
        let mut out = vec![0u8; s.encoded_len()];
        let n = s.encode(&mut out).expect("sized");
        out.truncate(n);
        out
    }

    #[test]
    fn candidate_addresses_are_the_fifth_field() {
        let line = "candidate:842163049 1 udp 1677729535 127.0.0.1 53219 typ host generation 0";
        assert_eq!(candidate_address(line), Some("127.0.0.1"));
        assert_eq!(
            candidate_address(&alloc::format!("a={line}")),
            Some("127.0.0.1")
        );
        assert_eq!(
            candidate_address("candidate:1 1 udp 2122260223 0b7a1c.local 5000 typ host"),
            Some("0b7a1c.local")
        );
        assert_eq!(candidate_address("candidate:1 1 udp"), None);
        assert_eq!(candidate_address("not a candidate"), None);
        assert_eq!(candidate_address(""), None);
    }

    #[test]
    fn a_digest_matches_only_its_own_bytes() {
        let msg = b"\x03\x20some frames";
        let d = Digest::of(10, 5, 2, msg);
        assert!(d.matches(msg));
        let mut bad = msg.to_vec();
        bad[4] ^= 1;
        assert!(!d.matches(&bad));
        assert!(!d.matches(&msg[..msg.len() - 1]));
    }

    #[test]
    fn signals_over_the_cap_and_bad_utf8_are_refused() {
        let long = "x".repeat(MAX_SIGNAL_TEXT + 1);
        let s = Signal {
            peer: 1,
            kind: SignalKind::Offer,
            text: &long,
        };
        assert!(FromViewer::decode(&signal_bytes(&s)).is_err());
        let mut bad = signal_bytes(&Signal { text: "ab", ..s });
        let n = bad.len();
        bad[n - 1] = 0xff;
        assert_eq!(FromViewer::decode(&bad), Err(DecodeError::InvalidText));
        let mut kind = signal_bytes(&Signal { text: "", ..s });
        kind[SIGNAL_HEADER_LEN - 1] = 9;
        assert_eq!(
            FromViewer::decode(&kind),
            Err(DecodeError::InvalidValue {
                field: "kind",
                value: 9
            })
        );
    }

    #[test]
    fn each_message_decodes_only_in_its_direction() {
        let digest = Digest::of(1, 1, 0, b"x").to_bytes();
        assert!(matches!(
            FromViewer::decode(&digest),
            Err(DecodeError::WrongDirection(_))
        ));
        let fetch = Fetch {
            start: 1,
            timeline: 0,
        }
        .to_bytes();
        assert!(matches!(
            ToViewer::decode(&fetch),
            Err(DecodeError::WrongDirection(_))
        ));
    }

    /// The fuzzer's seeds (`fuzz/seeds/{from,to}_viewer`, written by
    /// `fuzz/seeds/make_seeds.py`) for the relay messages and batches are
    /// valid messages, so the fuzzer starts from inside every one.
    #[test]
    fn the_fuzz_seeds_decode() {
        let from: [&[u8]; 10] = [
            include_bytes!("../../../fuzz/seeds/from_viewer/fetch"),
            include_bytes!("../../../fuzz/seeds/from_viewer/proof"),
            include_bytes!("../../../fuzz/seeds/from_viewer/link_down"),
            include_bytes!("../../../fuzz/seeds/from_viewer/link_up"),
            include_bytes!("../../../fuzz/seeds/from_viewer/peering_off"),
            include_bytes!("../../../fuzz/seeds/from_viewer/peering_on"),
            include_bytes!("../../../fuzz/seeds/from_viewer/report"),
            include_bytes!("../../../fuzz/seeds/from_viewer/signal_candidate"),
            include_bytes!("../../../fuzz/seeds/from_viewer/signal_end"),
            include_bytes!("../../../fuzz/seeds/from_viewer/signal_offer"),
        ];
        for seed in from {
            let msg = FromViewer::decode(seed).expect("a valid viewer message");
            assert_eq!(msg.to_vec(), seed);
        }
        let to: [&[u8]; 8] = [
            include_bytes!("../../../fuzz/seeds/to_viewer/frames1"),
            include_bytes!("../../../fuzz/seeds/to_viewer/frames2"),
            include_bytes!("../../../fuzz/seeds/to_viewer/assign"),
            include_bytes!("../../../fuzz/seeds/to_viewer/digest"),
            include_bytes!("../../../fuzz/seeds/to_viewer/signal_answer"),
            include_bytes!("../../../fuzz/seeds/to_viewer/signal_candidate"),
            include_bytes!("../../../fuzz/seeds/to_viewer/welcome"),
            include_bytes!("../../../fuzz/seeds/to_viewer/welcome_bare"),
        ];
        for seed in to {
            let msg = ToViewer::decode(seed).expect("a valid server message");
            assert_eq!(msg.to_vec(), seed);
        }
    }

    fn kind() -> impl Strategy<Value = SignalKind> {
        prop_oneof![
            Just(SignalKind::Offer),
            Just(SignalKind::Answer),
            Just(SignalKind::Candidate)
        ]
    }

    proptest! {
        #[test]
        fn viewer_messages_round_trip(
            on: bool, peer: u64, start: u64, timeline: u32, up: bool,
            kind in kind(), text in "\\PC{0,300}",
        ) {
            let proof = Proof { start, timeline, tag: [timeline as u8; PROOF_TAG_LEN] };
            let cases: [(Vec<u8>, FromViewer<'_>); 6] = [
                (proof.to_bytes().to_vec(), FromViewer::Proof(proof)),
                (Peering { on }.to_bytes().to_vec(), FromViewer::Peering(Peering { on })),
                (Link { parent: peer, up }.to_bytes().to_vec(), FromViewer::Link(Link { parent: peer, up })),
                (Fetch { start, timeline }.to_bytes().to_vec(), FromViewer::Fetch(Fetch { start, timeline })),
                (Report { peer, start, timeline }.to_bytes().to_vec(), FromViewer::Report(Report { peer, start, timeline })),
                (signal_bytes(&Signal { peer, kind, text: &text }), FromViewer::Signal(Signal { peer, kind, text: &text })),
            ];
            for (bytes, msg) in &cases {
                prop_assert_eq!(FromViewer::decode(bytes), Ok(*msg));
            }
        }

        #[test]
        fn server_messages_round_trip(
            id: u64, backup: u64, start: u64, count in 1u32..=600, timeline: u32,
            len in 1u32..=1000, hash: [u8; 32], ice in "[a-z:.,0-9]{0,200}",
        ) {
            let d = Digest { start, count, timeline, len, hash };
            let bytes = d.to_bytes();
            prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Digest(d)));
            let a = Assign { parent: id, backup };
            let bytes = a.to_bytes();
            prop_assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Assign(a)));
            let w = Welcome { id, ice_servers: &ice };
            let mut out = vec![0u8; w.encoded_len()];
            let n = w.encode(&mut out).expect("sized");
            prop_assert_eq!(ToViewer::decode(&out[..n]), Ok(ToViewer::Welcome(w)));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), t in 0x03u8..0x24) {
            let mut msg = vec![crate::wire::PROTOCOL_VERSION, t];
            msg.extend_from_slice(&bytes);
            let _ = FromViewer::decode(&msg);
            let _ = ToViewer::decode(&msg);
        }
    }
}
