//! The wire protocol between the server, browser workers, native workers and
//! viewers: one WebSocket binary message per protocol message.
//!
//! Every message starts with two bytes, `[PROTOCOL_VERSION, tag]`, then
//! big-endian fixed-width fields:
//!
//! | tag    | message     | direction         | body                                              |
//! |--------|-------------|-------------------|---------------------------------------------------|
//! | `0x01` | `Hello`     | worker → server   | `slots:u16`                                       |
//! | `0x02` | `Result`    | worker → server   | `task:u32 start:u64 count:u32` + count×880 bytes  |
//! | `0x03` | `Input`     | viewer → server   | `a:i16 b:i16` (a push, in spin units)             |
//! | `0x04`–`0x08` | the peer relay's | viewer → server | see [`p2p`]                          |
//! | `0x10` | `Task`      | server → worker   | `task:u32 start:u64 count:u32 timeline:u32` + scene (32 bytes) |
//! | `0x20` | `Frames`    | server → viewer   | `start:u64 count:u32 timeline:u32 codec:u8` + payload |
//! | `0x21`–`0x23`, `0x05` | the peer relay's | server → viewer | see [`p2p`]                   |
//! | `0x24` | `Keyframe`  | server → viewer   | a version's change and the pushes acked, see [`steer`] |
//! | `0x30` | `Telemetry` | server → both     | fixed 80-byte body, see [`Telemetry`]             |
//! | `0x31` | `InputRefused` | server → viewer | `reason:u8`: a push not applied, see [`refusal`] |
//!
//! A `Frames` payload is `codec` 0 (nibble: count × 880 packed bytes), 1
//! (context: [`crate::codec`], about 90 bytes a frame) or 2 (primed: the
//! same coder starting at a trained prior, [`crate::codec::prior`]; what
//! servers send since protocol 6).
//! Frame numbers are absolute `u64`s; a task or batch covers the frames
//! `start .. start + count`. A task carries the [`Scene`] at its first frame
//! (pose and spin, [`crate::scene`]), so any worker renders any range with
//! no state of its own; tasks and batches name the timeline version their
//! frames belong to, so that when viewers steer the donut, frames of a
//! superseded timeline are told apart and replaced. The version byte comes first so a peer from
//! another release is told exactly that, not handed a confusing tag error.
//!
//! Decoding is zero-copy (frame payloads borrow the input) and defensive:
//! every length is checked before it is used, counts are capped by
//! [`MAX_TASK_FRAMES`] / [`MAX_BATCH_FRAMES`], packed frames are validated,
//! and a decoder only accepts the messages its direction may carry, so a
//! viewer-bound message sent by a worker is a clear error. Decoders return
//! [`DecodeError`] on any input and never panic.

use core::fmt;

use crate::codec::CodecError;
use crate::frame::{FrameError, PACKED_LEN, validate_frame};
use crate::scene::{Impulse, SCENE_LEN, Scene};

pub mod p2p;
pub mod refusal;
pub mod steer;
pub mod tunnel;

pub use p2p::{Assign, Digest, Fetch, Link, Peering, Proof, Report, Signal, SignalKind, Welcome};
pub use refusal::{InputRefused, Refusal};
pub use steer::Keyframe;

/// The protocol version every message starts with. Version 2 added the
/// scene and timeline version to `Task`, the timeline version to `Frames`
/// and the viewer's `Input`; version 3 the peer relay's messages ([`p2p`])
/// and its figures in `Telemetry`; version 4 the relay's `Proof` (a viewer
/// proves it holds a batch a peer delivered); version 5 `InputRefused` (a
/// push a cluster could not carry to its timeline, and why) and
/// `Keyframe` (a steering page's change and its pushes acked), so a page
/// of version 4 is told to reload instead of closing on an unknown tag;
/// version 6 the `Frames` codec 2, [`Codec::Primed`] (what servers send),
/// so a page of version 5 is told to reload rather than failing to decode
/// every batch.
pub const PROTOCOL_VERSION: u8 = 6;

/// The most frames one task (and so one result) may cover.
pub const MAX_TASK_FRAMES: u32 = 600;
/// The most frames one viewer batch may carry.
pub const MAX_BATCH_FRAMES: u32 = 600;
/// The most tasks a worker may ask to run at once.
pub const MAX_SLOTS: u16 = 64;

/// Bytes before the body of every message: version and tag.
pub const PREFIX_LEN: usize = 2;
/// Length of a `Hello` message.
pub const HELLO_LEN: usize = PREFIX_LEN + 2;
/// Length of a `Task` message.
pub const TASK_LEN: usize = PREFIX_LEN + 20 + SCENE_LEN;
/// Length of an `Input` message.
pub const INPUT_LEN: usize = PREFIX_LEN + 4;
/// The largest push one `Input` may carry on either axis, in spin units
/// (2^-16 turns a frame): a quarter of [`crate::scene::MAX_SPIN_UNITS`].
pub const MAX_INPUT_UNITS: i16 = 1024;
/// Length of a `Result` message before its frames.
pub const RESULT_HEADER_LEN: usize = PREFIX_LEN + 16;
/// Length of a `Frames` message before its payload.
pub const FRAMES_HEADER_LEN: usize = PREFIX_LEN + 17;
/// Length of a `Telemetry` message.
pub const TELEMETRY_LEN: usize = PREFIX_LEN + 80;

/// The largest message a worker may send (a full-size `Result`). Servers
/// reject anything longer before reading it.
pub const MAX_WORKER_MESSAGE_LEN: usize = RESULT_HEADER_LEN + MAX_TASK_FRAMES as usize * PACKED_LEN;
/// The largest message a server may send to a viewer.
pub const MAX_VIEWER_MESSAGE_LEN: usize =
    FRAMES_HEADER_LEN + MAX_BATCH_FRAMES as usize * PACKED_LEN;

/// Message tags.
pub mod tag {
    /// Worker → server: capacity announcement.
    pub const HELLO: u8 = 0x01;
    /// Worker → server: rendered frames for a task.
    pub const RESULT: u8 = 0x02;
    /// Viewer → server: a push on the donut.
    pub const INPUT: u8 = 0x03;
    /// Server → worker: a range of frames to render.
    pub const TASK: u8 = 0x10;
    /// Server → viewer: a batch of frames to play.
    pub const FRAMES: u8 = 0x20;
    /// Server → worker and viewer: fleet statistics.
    pub const TELEMETRY: u8 = 0x30;
    /// Viewer → server: join or leave the relay tree.
    pub const PEERING: u8 = 0x04;
    /// Viewer ↔ server: WebRTC signalling for a peer.
    pub const SIGNAL: u8 = 0x05;
    /// Viewer → server: the data channel from the parent opened or was lost.
    pub const LINK: u8 = 0x06;
    /// Viewer → server: send a batch now (the deadline fallback).
    pub const FETCH: u8 = 0x07;
    /// Viewer → server: a peer relayed bytes that failed their digest.
    pub const REPORT: u8 = 0x08;
    /// Viewer → server: proof it holds a batch a peer delivered.
    pub const PROOF: u8 = 0x09;
    /// Server → viewer: a batch's digest, instead of the batch.
    pub const DIGEST: u8 = 0x21;
    /// Server → viewer: the viewer's peer id and the ICE servers.
    pub const WELCOME: u8 = 0x22;
    /// Server → viewer: the relay tree's parent and backup.
    pub const ASSIGN: u8 = 0x23;
    /// Server → viewer: one of its pushes was not applied, and why.
    pub const INPUT_REFUSED: u8 = 0x31;
    /// Server → steering viewer: a version's change, its pushes acked.
    pub const KEYFRAME: u8 = 0x24;

    /// Whether `t` is a tag of this protocol version.
    pub fn is_known(t: u8) -> bool {
        matches!(
            t,
            HELLO
                | RESULT
                | INPUT
                | PEERING
                | SIGNAL
                | LINK
                | FETCH
                | REPORT
                | PROOF
                | TASK
                | FRAMES
                | DIGEST
                | WELCOME
                | ASSIGN
                | KEYFRAME
                | TELEMETRY
                | INPUT_REFUSED
        )
    }
}

/// How a `Frames` payload encodes its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// The frames' 880-byte nibble packings, concatenated.
    Nibble = 0,
    /// Context-modelled range coding of the whole batch ([`crate::codec`]),
    /// about 90 bytes a frame instead of 880.
    Context = 1,
    /// The context coder with its probabilities starting at a prior trained
    /// on rendered frames instead of ½ ([`crate::codec::prior`], protocol
    /// 6, issue 25): every batch still decodes on its own; short batches of
    /// a spinning donut cost about a fifth less. What servers send.
    Primed = 2,
}

impl Codec {
    /// Every codec, in wire order.
    pub const ALL: [Self; 3] = [Self::Nibble, Self::Context, Self::Primed];

    /// What a server sends unless configured otherwise.
    pub const DEFAULT: Self = Self::Primed;

    /// The codec's name where it is configured (the server's `--codec` and
    /// `DONUT_CODEC`): `"nibble"`, `"context"` or `"primed"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Nibble => "nibble",
            Self::Context => "context",
            Self::Primed => "primed",
        }
    }

    /// The codec whose [`name`](Self::name) is `name` (case-sensitive), or
    /// `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(Self::Nibble),
            1 => Ok(Self::Context),
            2 => Ok(Self::Primed),
            other => Err(DecodeError::UnknownCodec(other)),
        }
    }
}

/// Why bytes could not be decoded as a message. Its `Display` text is short
/// enough to be a WebSocket close reason (at most 123 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The message is empty.
    Empty,
    /// The message ends before its fixed fields do.
    Truncated {
        /// Bytes the message needs at least.
        needed: usize,
        /// Bytes it has.
        got: usize,
    },
    /// The peer speaks another protocol version.
    Version {
        /// The version byte received.
        got: u8,
    },
    /// The tag is not part of this protocol version.
    UnknownTag(u8),
    /// The tag is valid but not for this direction or endpoint.
    WrongDirection(u8),
    /// The message is longer than any valid message of its kind.
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A frame count is zero or above the cap.
    InvalidCount {
        /// The count received.
        count: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A `Hello` asked for zero slots or more than [`MAX_SLOTS`].
    InvalidSlots(u16),
    /// An `Input` pushes harder than [`MAX_INPUT_UNITS`] on an axis.
    InputOutOfRange {
        /// The push on rotation A.
        a: i16,
        /// The push on rotation B.
        b: i16,
    },
    /// A `Task`'s scene spins faster than any pushes could make it.
    InvalidScene,
    /// The frame payload does not have the length its count implies.
    LengthMismatch {
        /// Length implied by the header.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A packed frame contains an invalid symbol code.
    InvalidFrame {
        /// Index of the frame within the message.
        index: u32,
        /// What is wrong with it.
        error: FrameError,
    },
    /// The `Frames` codec byte is unknown.
    UnknownCodec(u8),
    /// A `Codec::Context` payload does not decode.
    Codec(CodecError),
    /// A text field is not what it must be (a node id's characters, a
    /// close reason's UTF-8).
    InvalidText,
    /// A one-byte enumerated field (a refusal's reason, a flag) holds a
    /// value this version does not define.
    InvalidValue {
        /// The field's name as the wire table spells it.
        field: &'static str,
        /// The byte received.
        value: u8,
    },
}

/// Whether a server's close (`code`, `reason`) refuses this client's
/// protocol version: 1002 with [`DecodeError::Version`]'s text. A page that
/// gets it was loaded before the server was upgraded and must be reloaded;
/// retrying would loop forever.
pub fn refuses_version(code: u16, reason: &str) -> bool {
    code == 1002 && reason.starts_with("protocol version ")
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty message"),
            Self::Truncated { needed, got } => {
                write!(f, "truncated message: {got} bytes, need {needed}")
            }
            Self::Version { got } => write!(
                f,
                "protocol version {got} unsupported, this server speaks {PROTOCOL_VERSION}"
            ),
            Self::UnknownTag(t) => write!(f, "unknown message tag 0x{t:02x}"),
            Self::WrongDirection(t) => {
                write!(f, "message tag 0x{t:02x} not allowed on this endpoint")
            }
            Self::TooLarge { len, max } => write!(f, "message of {len} bytes exceeds {max}"),
            Self::InvalidCount { count, max } => {
                write!(f, "frame count {count} outside 1..={max}")
            }
            Self::InvalidSlots(s) => write!(f, "slots {s} outside 1..={MAX_SLOTS}"),
            Self::InputOutOfRange { a, b } => {
                write!(f, "input ({a}, {b}) outside ±{MAX_INPUT_UNITS}")
            }
            Self::InvalidScene => write!(f, "scene spins beyond the limit"),
            Self::LengthMismatch { expected, got } => {
                write!(f, "frame payload is {got} bytes, header implies {expected}")
            }
            Self::InvalidFrame { index, error } => write!(f, "frame {index}: {error}"),
            Self::UnknownCodec(c) => write!(f, "unknown frame codec {c}"),
            Self::Codec(e) => write!(f, "{e}"),
            Self::InvalidText => write!(f, "invalid text field"),
            Self::InvalidValue { field, value } => {
                write!(f, "invalid {field} {value}: not defined in this version")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// The output buffer is too small for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the message needs.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer too small, need {} bytes", self.needed)
    }
}

impl core::error::Error for BufferTooSmall {}

/// Worker → server: how many tasks the worker runs at once. Optional; a
/// worker that never says hello gets one task at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Tasks the worker can have outstanding, 1..=[`MAX_SLOTS`].
    pub slots: u16,
}

/// Server → worker: render frames `start .. start + count`, starting from
/// `scene` and stepping it one frame at a time ([`Scene::poses`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    /// Identifies the task; the result must echo it.
    pub task_id: u32,
    /// First absolute frame number.
    pub start: u64,
    /// Number of frames, 1..=[`MAX_TASK_FRAMES`].
    pub count: u32,
    /// The timeline version the range belongs to (0 until anyone steers).
    pub timeline: u32,
    /// The scene at frame `start`.
    pub scene: Scene,
}

/// Viewer → server: a push on the donut from a drag or the arrow keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Push on rotation A (a vertical drag), in spin units, within
    /// ±[`MAX_INPUT_UNITS`].
    pub a: i16,
    /// Push on rotation B (a horizontal drag), in spin units, within
    /// ±[`MAX_INPUT_UNITS`].
    pub b: i16,
}

/// Worker → server: the packed frames of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskResult<'a> {
    /// The task this answers.
    pub task_id: u32,
    /// First absolute frame number (must match the task).
    pub start: u64,
    /// Number of frames (must match the task).
    pub count: u32,
    /// `count` packed frames of [`PACKED_LEN`] bytes, all symbol codes valid.
    pub frames: &'a [u8],
}

/// Server → viewer: frames `start .. start + count` to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frames<'a> {
    /// First absolute frame number.
    pub start: u64,
    /// Number of frames, 1..=[`MAX_BATCH_FRAMES`].
    pub count: u32,
    /// The timeline version the frames belong to. A batch of a newer
    /// version replaces whatever a viewer holds from `start` on.
    pub timeline: u32,
    /// How `payload` encodes them.
    pub codec: Codec,
    /// The encoded frames.
    pub payload: &'a [u8],
}

/// Server → worker and viewer: live fleet statistics, sent every second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// The absolute frame the server's playback clock is showing now.
    pub head: u64,
    /// Playback rate in frames per second.
    pub fps: u16,
    /// Worker connections.
    pub workers: u32,
    /// Viewer connections.
    pub viewers: u32,
    /// Frames accepted from the fleet over the last second.
    pub fleet_fps: u32,
    /// Accepted frames ahead of the playback head.
    pub buffered_frames: u32,
    /// Result batches that passed verification.
    pub batches_verified: u64,
    /// Frames re-rendered natively to verify results.
    pub frames_checked: u64,
    /// Result batches rejected by verification.
    pub batches_rejected: u64,
    /// Worker connections cut off for cheating.
    pub workers_banned: u32,
    /// For a worker connection, the frames it contributed; zero for viewers.
    pub contributed: u64,
    /// Viewers fed by a peer over a data channel.
    pub peers_linked: u32,
    /// Of the batch bytes viewers received, the share peers delivered, in
    /// thousandths (the offload ratio; 0 without P2P).
    pub offload_permille: u16,
    /// Batches viewers fetched from the server because a peer was late.
    pub p2p_fallbacks: u64,
    /// Batches from peers whose bytes failed their digest.
    pub digest_mismatches: u32,
}

/// Messages a worker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromWorker<'a> {
    /// Capacity announcement.
    Hello(Hello),
    /// A finished task.
    Result(TaskResult<'a>),
}

/// Messages a viewer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromViewer<'a> {
    /// A push on the donut.
    Input(Input),
    /// Join or leave the relay tree.
    Peering(Peering),
    /// Signalling for a peer.
    Signal(Signal<'a>),
    /// The data channel from the parent opened or was lost.
    Link(Link),
    /// The deadline fallback: send this batch now.
    Fetch(Fetch),
    /// A peer relayed bytes that failed their digest.
    Report(Report),
    /// Proof that it holds a batch a peer delivered.
    Proof(Proof),
}

/// Messages a worker receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// Work to do.
    Task(Task),
    /// Fleet statistics, including this worker's contribution.
    Telemetry(Telemetry),
}

/// Messages a viewer receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToViewer<'a> {
    /// Frames to play.
    Frames(Frames<'a>),
    /// Fleet statistics.
    Telemetry(Telemetry),
    /// A batch's digest (its bytes come from the parent peer).
    Digest(Digest),
    /// The viewer's peer id and ICE servers.
    Welcome(Welcome<'a>),
    /// The relay tree's parent and backup.
    Assign(Assign),
    /// Signalling from a peer.
    Signal(Signal<'a>),
    /// One of its pushes was not applied, and why.
    InputRefused(InputRefused),
    /// A version's change and this viewer's pushes it folded in (sent
    /// only to a viewer that steers).
    Keyframe(Keyframe),
}

/// A bounds-checked big-endian reader over a message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        let got = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated {
            needed: end,
            got: self.buf.len(),
        })?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(got);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.bytes().map(u16::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        self.bytes().map(i16::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.bytes().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.bytes().map(u64::from_be_bytes)
    }
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    /// Fails unless the message ended exactly here.
    fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            _ => Err(DecodeError::TooLarge {
                len: self.buf.len(),
                max: self.pos,
            }),
        }
    }
}

/// A big-endian writer into a buffer already checked to be large enough.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts a message of `len` bytes with `tag`, or fails if `buf` is short.
    fn start(buf: &'a mut [u8], len: usize, tag: u8) -> Result<Self, BufferTooSmall> {
        if buf.len() < len {
            return Err(BufferTooSmall { needed: len });
        }
        let mut w = Self { buf, pos: 0 };
        w.put(&[PROTOCOL_VERSION, tag]);
        Ok(w)
    }
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.put(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }
    fn done(self) -> usize {
        self.pos
    }
}

/// A fixed-length message, encoded by `encode` into an array of exactly its
/// length (so encoding cannot fail).
fn fixed<const N: usize>(
    encode: impl FnOnce(&mut [u8]) -> Result<usize, BufferTooSmall>,
) -> [u8; N] {
    let mut out = [0u8; N];
    let _ = encode(&mut out);
    out
}

/// Reads the version and tag, checking the length cap first.
fn open(buf: &[u8], max: usize) -> Result<(u8, Reader<'_>), DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Empty);
    }
    if buf.len() > max {
        return Err(DecodeError::TooLarge {
            len: buf.len(),
            max,
        });
    }
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: version });
    }
    let t = r.u8()?;
    if !tag::is_known(t) {
        return Err(DecodeError::UnknownTag(t));
    }
    Ok((t, r))
}

fn check_count(count: u32, max: u32) -> Result<(), DecodeError> {
    if count == 0 || count > max {
        return Err(DecodeError::InvalidCount { count, max });
    }
    Ok(())
}

/// Checks that `frames` holds exactly `count` packed frames, each with a
/// frame's layout (see [`validate_frame`]).
fn check_packed_frames(frames: &[u8], count: u32) -> Result<(), DecodeError> {
    let expected = count as usize * PACKED_LEN;
    if frames.len() != expected {
        return Err(DecodeError::LengthMismatch {
            expected,
            got: frames.len(),
        });
    }
    for (index, frame) in frames.as_chunks::<PACKED_LEN>().0.iter().enumerate() {
        validate_frame(frame).map_err(|error| DecodeError::InvalidFrame {
            index: index as u32,
            error,
        })?;
    }
    Ok(())
}

/// The fixed fields shared by `Task` and `Result`.
fn range_fields(r: &mut Reader<'_>) -> Result<(u32, u64, u32), DecodeError> {
    let task_id = r.u32()?;
    let start = r.u64()?;
    let count = r.u32()?;
    check_count(count, MAX_TASK_FRAMES)?;
    Ok((task_id, start, count))
}

fn write_range(w: &mut Writer<'_>, task_id: u32, start: u64, count: u32) {
    w.u32(task_id);
    w.u64(start);
    w.u32(count);
}

impl Hello {
    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, HELLO_LEN, tag::HELLO)?;
        w.u16(self.slots);
        Ok(w.done())
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; HELLO_LEN] {
        fixed(|out| self.encode(out))
    }

    fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let slots = r.u16()?;
        r.finish()?;
        if slots == 0 || slots > MAX_SLOTS {
            return Err(DecodeError::InvalidSlots(slots));
        }
        Ok(Self { slots })
    }
}

impl Task {
    /// A task of the timeline nobody has steered: version 0, the idle scene
    /// of `start`.
    pub fn idle(task_id: u32, start: u64, count: u32) -> Self {
        Self {
            task_id,
            start,
            count,
            timeline: 0,
            scene: Scene::idle(start),
        }
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, TASK_LEN, tag::TASK)?;
        write_range(&mut w, self.task_id, self.start, self.count);
        w.u32(self.timeline);
        w.put(&self.scene.to_bytes());
        Ok(w.done())
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; TASK_LEN] {
        fixed(|out| self.encode(out))
    }

    fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let (task_id, start, count) = range_fields(&mut r)?;
        let timeline = r.u32()?;
        let scene =
            Scene::from_bytes(&r.bytes::<SCENE_LEN>()?).map_err(|_| DecodeError::InvalidScene)?;
        r.finish()?;
        Ok(Self {
            task_id,
            start,
            count,
            timeline,
            scene,
        })
    }

    /// The absolute frame numbers this task covers (saturating at `u64::MAX`).
    pub fn frames(&self) -> core::ops::Range<u64> {
        self.start..self.start.saturating_add(u64::from(self.count))
    }
}

impl Input {
    /// The push as a [`Impulse`] on the scene.
    pub fn impulse(&self) -> Impulse {
        Impulse {
            a: i32::from(self.a),
            b: i32::from(self.b),
        }
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, INPUT_LEN, tag::INPUT)?;
        w.i16(self.a);
        w.i16(self.b);
        Ok(w.done())
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; INPUT_LEN] {
        fixed(|out| self.encode(out))
    }

    fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let a = r.i16()?;
        let b = r.i16()?;
        r.finish()?;
        let within = |v: i16| (-MAX_INPUT_UNITS..=MAX_INPUT_UNITS).contains(&v);
        if !within(a) || !within(b) {
            return Err(DecodeError::InputOutOfRange { a, b });
        }
        Ok(Self { a, b })
    }
}

impl<'a> TaskResult<'a> {
    /// The header that precedes `count` packed frames in a `Result`, so a
    /// worker can render straight into the message buffer after it.
    pub fn header(task_id: u32, start: u64, count: u32) -> [u8; RESULT_HEADER_LEN] {
        let mut out = [0u8; RESULT_HEADER_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(&[PROTOCOL_VERSION, tag::RESULT]);
        write_range(&mut w, task_id, start, count);
        out
    }

    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        RESULT_HEADER_LEN + self.frames.len()
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, self.encoded_len(), tag::RESULT)?;
        write_range(&mut w, self.task_id, self.start, self.count);
        w.put(self.frames);
        Ok(w.done())
    }

    fn decode_body(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        let (task_id, start, count) = range_fields(&mut r)?;
        let frames = r.rest();
        check_packed_frames(frames, count)?;
        Ok(Self {
            task_id,
            start,
            count,
            frames,
        })
    }

    /// The packed frames, in order.
    pub fn packed_frames(&self) -> impl ExactSizeIterator<Item = &'a [u8; PACKED_LEN]> + 'a {
        self.frames.as_chunks::<PACKED_LEN>().0.iter()
    }
}

impl<'a> Frames<'a> {
    /// The header that precedes the payload of a `Frames` message.
    pub fn header(start: u64, count: u32, timeline: u32, codec: Codec) -> [u8; FRAMES_HEADER_LEN] {
        let mut out = [0u8; FRAMES_HEADER_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(&[PROTOCOL_VERSION, tag::FRAMES]);
        w.u64(start);
        w.u32(count);
        w.u32(timeline);
        w.put(&[codec as u8]);
        out
    }

    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        FRAMES_HEADER_LEN + self.payload.len()
    }

    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, self.encoded_len(), tag::FRAMES)?;
        w.u64(self.start);
        w.u32(self.count);
        w.u32(self.timeline);
        w.put(&[self.codec as u8]);
        w.put(self.payload);
        Ok(w.done())
    }

    fn decode_body(mut r: Reader<'a>) -> Result<Self, DecodeError> {
        let start = r.u64()?;
        let count = r.u32()?;
        check_count(count, MAX_BATCH_FRAMES)?;
        let timeline = r.u32()?;
        let codec = Codec::from_byte(r.u8()?)?;
        let payload = r.rest();
        match codec {
            Codec::Nibble => check_packed_frames(payload, count)?,
            // Fully checked only when decoded (see `decode_frames`); the
            // length cap keeps a hostile payload's work bounded.
            Codec::Context | Codec::Primed => {
                let max = count as usize * PACKED_LEN;
                if payload.is_empty() || payload.len() > max {
                    return Err(DecodeError::LengthMismatch {
                        expected: max,
                        got: payload.len(),
                    });
                }
            }
        }
        Ok(Self {
            start,
            count,
            timeline,
            codec,
            payload,
        })
    }

    /// Decodes the batch, handing each frame's absolute number and packed
    /// bytes to `sink` in order. Every frame handed over is valid; on error
    /// the frames before it may already have been handed over.
    pub fn decode_frames(
        &self,
        mut sink: impl FnMut(u64, &[u8; PACKED_LEN]),
    ) -> Result<(), DecodeError> {
        let frame_no = |i: u32| self.start.saturating_add(u64::from(i));
        match self.codec {
            Codec::Nibble => {
                // Validated by `decode`.
                for (i, packed) in self.payload.as_chunks::<PACKED_LEN>().0.iter().enumerate() {
                    sink(frame_no(i as u32), packed);
                }
                Ok(())
            }
            Codec::Context => crate::codec::decode(self.payload, self.count, |i, packed| {
                sink(frame_no(i), packed)
            })
            .map_err(DecodeError::Codec),
            Codec::Primed => crate::codec::decode_primed(self.payload, self.count, |i, packed| {
                sink(frame_no(i), packed)
            })
            .map_err(DecodeError::Codec),
        }
    }
}

impl Telemetry {
    /// Encodes into `out`, returning the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer::start(out, TELEMETRY_LEN, tag::TELEMETRY)?;
        w.u64(self.head);
        w.u16(self.fps);
        w.u32(self.workers);
        w.u32(self.viewers);
        w.u32(self.fleet_fps);
        w.u32(self.buffered_frames);
        w.u64(self.batches_verified);
        w.u64(self.frames_checked);
        w.u64(self.batches_rejected);
        w.u32(self.workers_banned);
        w.u64(self.contributed);
        w.u32(self.peers_linked);
        w.u16(self.offload_permille);
        w.u64(self.p2p_fallbacks);
        w.u32(self.digest_mismatches);
        Ok(w.done())
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; TELEMETRY_LEN] {
        fixed(|out| self.encode(out))
    }

    fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let t = Self {
            head: r.u64()?,
            fps: r.u16()?,
            workers: r.u32()?,
            viewers: r.u32()?,
            fleet_fps: r.u32()?,
            buffered_frames: r.u32()?,
            batches_verified: r.u64()?,
            frames_checked: r.u64()?,
            batches_rejected: r.u64()?,
            workers_banned: r.u32()?,
            contributed: r.u64()?,
            peers_linked: r.u32()?,
            offload_permille: r.u16()?,
            p2p_fallbacks: r.u64()?,
            digest_mismatches: r.u32()?,
        };
        r.finish()?;
        Ok(t)
    }
}

impl<'a> FromWorker<'a> {
    /// Decodes a message received from a worker.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (t, r) = open(buf, MAX_WORKER_MESSAGE_LEN)?;
        match t {
            tag::HELLO => Hello::decode_body(r).map(Self::Hello),
            tag::RESULT => TaskResult::decode_body(r).map(Self::Result),
            other => Err(DecodeError::WrongDirection(other)),
        }
    }
}

impl<'a> FromViewer<'a> {
    /// Decodes a message received from a viewer.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (t, r) = open(buf, p2p::MAX_FROM_VIEWER_LEN)?;
        match t {
            tag::INPUT => Input::decode_body(r).map(Self::Input),
            tag::PEERING => Peering::decode_body(r).map(Self::Peering),
            tag::SIGNAL => Signal::decode_body(r).map(Self::Signal),
            tag::LINK => Link::decode_body(r).map(Self::Link),
            tag::FETCH => Fetch::decode_body(r).map(Self::Fetch),
            tag::REPORT => Report::decode_body(r).map(Self::Report),
            tag::PROOF => Proof::decode_body(r).map(Self::Proof),
            other => Err(DecodeError::WrongDirection(other)),
        }
    }
}

#[cfg(feature = "alloc")]
impl FromViewer<'_> {
    /// The encoded message.
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        match self {
            Self::Input(m) => m.to_bytes().to_vec(),
            Self::Peering(m) => m.to_bytes().to_vec(),
            Self::Signal(m) => encode_vec(m.encoded_len(), |out| m.encode(out)),
            Self::Link(m) => m.to_bytes().to_vec(),
            Self::Fetch(m) => m.to_bytes().to_vec(),
            Self::Report(m) => m.to_bytes().to_vec(),
            Self::Proof(m) => m.to_bytes().to_vec(),
        }
    }
}

#[cfg(feature = "alloc")]
impl ToViewer<'_> {
    /// The encoded message.
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        match self {
            Self::Frames(m) => encode_vec(m.encoded_len(), |out| m.encode(out)),
            Self::Telemetry(m) => m.to_bytes().to_vec(),
            Self::Digest(m) => m.to_bytes().to_vec(),
            Self::Welcome(m) => encode_vec(m.encoded_len(), |out| m.encode(out)),
            Self::Assign(m) => m.to_bytes().to_vec(),
            Self::Signal(m) => encode_vec(m.encoded_len(), |out| m.encode(out)),
            Self::InputRefused(m) => m.to_bytes().to_vec(),
            Self::Keyframe(m) => m.to_bytes().to_vec(),
        }
    }
}

/// A message of `len` bytes encoded by `encode` into a vector of exactly
/// that length (so encoding cannot fail).
#[cfg(feature = "alloc")]
fn encode_vec(
    len: usize,
    encode: impl FnOnce(&mut [u8]) -> Result<usize, BufferTooSmall>,
) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![0u8; len];
    let _ = encode(&mut out);
    out
}

impl ToWorker {
    /// Decodes a message received by a worker.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (t, r) = open(buf, TELEMETRY_LEN.max(TASK_LEN))?;
        match t {
            tag::TASK => Task::decode_body(r).map(Self::Task),
            tag::TELEMETRY => Telemetry::decode_body(r).map(Self::Telemetry),
            other => Err(DecodeError::WrongDirection(other)),
        }
    }
}

impl<'a> ToViewer<'a> {
    /// Decodes a message received by a viewer.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (t, r) = open(buf, MAX_VIEWER_MESSAGE_LEN)?;
        match t {
            tag::FRAMES => Frames::decode_body(r).map(Self::Frames),
            tag::TELEMETRY => Telemetry::decode_body(r).map(Self::Telemetry),
            tag::DIGEST => Digest::decode_body(r).map(Self::Digest),
            tag::WELCOME => Welcome::decode_body(r).map(Self::Welcome),
            tag::ASSIGN => Assign::decode_body(r).map(Self::Assign),
            tag::SIGNAL => Signal::decode_body(r).map(Self::Signal),
            tag::INPUT_REFUSED => InputRefused::decode_body(r).map(Self::InputRefused),
            tag::KEYFRAME => Keyframe::decode_body(r).map(Self::Keyframe),
            other => Err(DecodeError::WrongDirection(other)),
        }
    }
}
