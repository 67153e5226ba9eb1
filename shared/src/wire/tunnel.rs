//! Messages between the nodes of a cluster: what a follower node sends the
//! leader (`Up`) and what the leader sends back (`Down`).
//!
//! In a cluster one node, the leader, schedules the whole fleet; a worker
//! whose socket is on another node is *tunnelled*: that node keeps the
//! socket and forwards each binary message the worker sends, unchanged,
//! and the leader answers the same way. Viewers' pushes on the donut travel
//! up too. The messages ride Redis streams (one field each), so the server
//! decodes them like any other untrusted bytes: anyone who can write to the
//! cluster's Redis can send them, and a bad one must not bring a node down.
//!
//! Layout, big-endian, after [`TUNNEL_VERSION`] and a tag:
//!
//! | message | body |
//! |---|---|
//! | `Up::Open` (0x01) | node, conn `u64`, client IP (16 bytes, IPv4 mapped) |
//! | `Up::Data` (0x02) | node, conn `u64`, the worker's message (≤ [`MAX_WORKER_MESSAGE_LEN`]) |
//! | `Up::Close` (0x03) | node, conn `u64` |
//! | `Up::Input` (0x04) | node, viewer `u64`, `a` `i16`, `b` `i16` (±[`MAX_INPUT_UNITS`]) |
//! | `Up::Rejected` (0x05) | node, conn `u64`, task id `u32`, frame `u64` |
//! | `Down::Data` (0x11) | conn `u64`, a message for the worker (≤ [`MAX_DOWN_DATA_LEN`]) |
//! | `Down::Close` (0x12) | conn `u64`, code `u16`, reason (UTF-8, ≤ 123 bytes) |
//!
//! "node" is a length byte and that many bytes of the node's id (1 to
//! [`MAX_NODE_ID_LEN`], ASCII letters, digits, `-` and `_`): down messages
//! go to the stream named after it.

use core::net::{IpAddr, Ipv6Addr};

use super::{DecodeError, MAX_INPUT_UNITS, MAX_WORKER_MESSAGE_LEN, Reader};

/// The first byte of every tunnel message; a node refuses another version
/// (nodes of one cluster run one release).
pub const TUNNEL_VERSION: u8 = 1;

/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Longest message the leader sends a tunnelled worker (tasks and
/// telemetry are far smaller).
pub const MAX_DOWN_DATA_LEN: usize = 4096;

/// Longest close reason (what fits a WebSocket close frame, RFC 6455 §5.5).
pub const MAX_REASON_LEN: usize = 123;

/// Longest tunnel message of either direction.
pub const MAX_TUNNEL_LEN: usize = 2 + 1 + MAX_NODE_ID_LEN + 8 + MAX_WORKER_MESSAGE_LEN;

mod tag {
    pub const OPEN: u8 = 0x01;
    pub const DATA: u8 = 0x02;
    pub const CLOSE: u8 = 0x03;
    pub const INPUT: u8 = 0x04;
    pub const REJECTED: u8 = 0x05;
    pub const DOWN_DATA: u8 = 0x11;
    pub const DOWN_CLOSE: u8 = 0x12;
}

/// A follower node to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up<'a> {
    /// A worker connected to `node` from `ip`; `conn` names it from now on.
    Open {
        /// The follower's id.
        node: &'a str,
        /// The connection, unique on that node.
        conn: u64,
        /// The worker's address (after trusted proxies).
        ip: IpAddr,
    },
    /// A binary message the worker sent, unchanged.
    Data {
        /// The follower's id.
        node: &'a str,
        /// The connection.
        conn: u64,
        /// The worker's message.
        msg: &'a [u8],
    },
    /// The worker's socket ended.
    Close {
        /// The follower's id.
        node: &'a str,
        /// The connection.
        conn: u64,
    },
    /// A viewer on `node` pushed the donut (an `Input` already checked
    /// and rate-limited there).
    Input {
        /// The follower's id.
        node: &'a str,
        /// The viewer, unique on that node.
        viewer: u64,
        /// Push on rotation A, spin units.
        a: i16,
        /// Push on rotation B, spin units.
        b: i16,
    },
    /// The worker's answer to `task_id` failed the native check on `node`
    /// (which holds its socket and checked it there): frame `frame` is
    /// wrong. The answer itself is not forwarded.
    Rejected {
        /// The follower's id.
        node: &'a str,
        /// The connection.
        conn: u64,
        /// The task answered.
        task_id: u32,
        /// The first wrong frame (absolute number).
        frame: u64,
    },
}

/// The leader to the follower holding a tunnelled worker's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down<'a> {
    /// Send the worker this binary message.
    Data {
        /// The connection.
        conn: u64,
        /// The message.
        msg: &'a [u8],
    },
    /// Close the worker's socket with this code and reason.
    Close {
        /// The connection.
        conn: u64,
        /// The WebSocket close code.
        code: u16,
        /// Why.
        reason: &'a str,
    },
}

fn node_id<'a>(r: &mut Reader<'a>) -> Result<&'a str, DecodeError> {
    let len = usize::from(r.u8()?);
    let end = r.pos + len;
    let bytes = r.buf.get(r.pos..end).ok_or(DecodeError::Truncated {
        needed: end,
        got: r.buf.len(),
    })?;
    r.pos = end;
    if !valid_node_id(bytes) {
        return Err(DecodeError::InvalidText);
    }
    core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidText)
}

/// Whether `id` is a valid node id: 1 to [`MAX_NODE_ID_LEN`] bytes of ASCII
/// letters, digits, `-` and `_`.
pub fn valid_node_id(id: &[u8]) -> bool {
    (1..=MAX_NODE_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// Opens a tunnel message: version, size cap, tag.
fn open(buf: &[u8]) -> Result<(u8, Reader<'_>), DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Empty);
    }
    if buf.len() > MAX_TUNNEL_LEN {
        return Err(DecodeError::TooLarge {
            len: buf.len(),
            max: MAX_TUNNEL_LEN,
        });
    }
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != TUNNEL_VERSION {
        return Err(DecodeError::Version { got: version });
    }
    let t = r.u8()?;
    Ok((t, r))
}

impl<'a> Up<'a> {
    /// Decodes an up message. Never panics; fails on anything but exactly
    /// one valid message.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (t, mut r) = open(buf)?;
        if !matches!(
            t,
            tag::OPEN | tag::DATA | tag::CLOSE | tag::INPUT | tag::REJECTED
        ) {
            return Err(DecodeError::UnknownTag(t));
        }
        let node = node_id(&mut r)?;
        let conn = r.u64()?;
        let msg = match t {
            tag::OPEN => {
                let ip = Ipv6Addr::from(r.bytes::<16>()?);
                let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
                Self::Open { node, conn, ip }
            }
            tag::DATA => {
                let msg = r.rest();
                r.pos = buf.len();
                if msg.len() > MAX_WORKER_MESSAGE_LEN {
                    return Err(DecodeError::TooLarge {
                        len: msg.len(),
                        max: MAX_WORKER_MESSAGE_LEN,
                    });
                }
                Self::Data { node, conn, msg }
            }
            tag::CLOSE => Self::Close { node, conn },
            tag::REJECTED => Self::Rejected {
                node,
                conn,
                task_id: r.u32()?,
                frame: r.u64()?,
            },
            _ => {
                let (a, b) = (r.i16()?, r.i16()?);
                if a.unsigned_abs() > MAX_INPUT_UNITS.unsigned_abs()
                    || b.unsigned_abs() > MAX_INPUT_UNITS.unsigned_abs()
                {
                    return Err(DecodeError::InputOutOfRange { a, b });
                }
                Self::Input {
                    node,
                    viewer: conn,
                    a,
                    b,
                }
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// The node it came from.
    pub fn node(&self) -> &'a str {
        match *self {
            Self::Open { node, .. }
            | Self::Data { node, .. }
            | Self::Close { node, .. }
            | Self::Input { node, .. }
            | Self::Rejected { node, .. } => node,
        }
    }

    /// Encodes it. `node` must be a valid node id and a `Data` message at
    /// most [`MAX_WORKER_MESSAGE_LEN`] bytes, or the leader will refuse it.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        let (t, node, conn) = match *self {
            Self::Open { node, conn, .. } => (tag::OPEN, node, conn),
            Self::Data { node, conn, .. } => (tag::DATA, node, conn),
            Self::Close { node, conn } => (tag::CLOSE, node, conn),
            Self::Input { node, viewer, .. } => (tag::INPUT, node, viewer),
            Self::Rejected { node, conn, .. } => (tag::REJECTED, node, conn),
        };
        let mut out = alloc::vec::Vec::with_capacity(64);
        out.extend_from_slice(&[TUNNEL_VERSION, t]);
        let id = node.as_bytes();
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&conn.to_be_bytes());
        match *self {
            Self::Open { ip, .. } => {
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                out.extend_from_slice(&v6.octets());
            }
            Self::Data { msg, .. } => out.extend_from_slice(msg),
            Self::Close { .. } => {}
            Self::Input { a, b, .. } => {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
            }
            Self::Rejected { task_id, frame, .. } => {
                out.extend_from_slice(&task_id.to_be_bytes());
                out.extend_from_slice(&frame.to_be_bytes());
            }
        }
        out
    }
}

impl<'a> Down<'a> {
    /// Decodes a down message. Never panics; fails on anything but exactly
    /// one valid message.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (t, mut r) = open(buf)?;
        let conn = match t {
            tag::DOWN_DATA | tag::DOWN_CLOSE => r.u64()?,
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let rest = r.rest();
        if t == tag::DOWN_DATA {
            if rest.len() > MAX_DOWN_DATA_LEN {
                return Err(DecodeError::TooLarge {
                    len: rest.len(),
                    max: MAX_DOWN_DATA_LEN,
                });
            }
            return Ok(Self::Data { conn, msg: rest });
        }
        let code = r.u16()?;
        let text = r.rest();
        if text.len() > MAX_REASON_LEN {
            return Err(DecodeError::TooLarge {
                len: text.len(),
                max: MAX_REASON_LEN,
            });
        }
        let reason = core::str::from_utf8(text).map_err(|_| DecodeError::InvalidText)?;
        Ok(Self::Close { conn, code, reason })
    }

    /// Encodes it; a reason longer than [`MAX_REASON_LEN`] bytes is cut at
    /// a character boundary.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(16);
        match *self {
            Self::Data { conn, msg } => {
                out.extend_from_slice(&[TUNNEL_VERSION, tag::DOWN_DATA]);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(msg);
            }
            Self::Close { conn, code, reason } => {
                out.extend_from_slice(&[TUNNEL_VERSION, tag::DOWN_CLOSE]);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                let mut end = reason.len().min(MAX_REASON_LEN);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&reason.as_bytes()[..end]);
            }
        }
        out
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;
    use proptest::prelude::*;

    fn node() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,64}"
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = Up::decode(&bytes);
            let _ = Down::decode(&bytes);
        }

        #[test]
        fn up_messages_round_trip(
            node in node(),
            conn in any::<u64>(),
            ip in ip(),
            msg in prop::collection::vec(any::<u8>(), 0..300),
            a in -1024i16..=1024,
            b in -1024i16..=1024,
        ) {
            let node = node.as_str();
            let msg = msg.as_slice();
            for m in [
                Up::Open { node, conn, ip },
                Up::Data { node, conn, msg },
                Up::Close { node, conn },
                Up::Input { node, viewer: conn, a, b },
                Up::Rejected { node, conn, task_id: conn as u32, frame: conn ^ 7 },
            ] {
                let bytes = m.to_vec();
                let back = Up::decode(&bytes);
                // An IPv4-mapped IPv6 address comes back as the IPv4 one.
                let want = match m {
                    Up::Open { ip: IpAddr::V6(v6), .. } => Up::Open {
                        node,
                        conn,
                        ip: v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    },
                    other => other,
                };
                prop_assert_eq!(back, Ok(want));
            }
        }

        #[test]
        fn down_messages_round_trip(
            conn in any::<u64>(),
            msg in prop::collection::vec(any::<u8>(), 0..300),
            code in any::<u16>(),
            reason in ".{0,40}",
        ) {
            let data = Down::Data { conn, msg: &msg };
            let bytes = data.to_vec();
            prop_assert_eq!(Down::decode(&bytes), Ok(data));
            let close = Down::Close { conn, code, reason: &reason };
            let bytes = close.to_vec();
            match Down::decode(&bytes) {
                Ok(Down::Close { conn: c, code: k, reason: r }) => {
                    prop_assert_eq!((c, k), (conn, code));
                    prop_assert!(reason.starts_with(r));
                    prop_assert!(r.len() <= MAX_REASON_LEN);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    #[test]
    fn bad_node_ids_and_inputs_are_refused() {
        let good = Up::Close {
            node: "n1",
            conn: 7,
        }
        .to_vec();
        let mut bad = good.clone();
        bad[3] = b' ';
        assert_eq!(Up::decode(&bad), Err(DecodeError::InvalidText));
        let mut empty_id = good.clone();
        empty_id[2] = 0;
        assert!(Up::decode(&empty_id).is_err());
        let input = Up::Input {
            node: "n1",
            viewer: 1,
            a: 1025,
            b: 0,
        }
        .to_vec();
        assert_eq!(
            Up::decode(&input),
            Err(DecodeError::InputOutOfRange { a: 1025, b: 0 })
        );
        let mut versioned = good;
        versioned[0] = 9;
        assert_eq!(Up::decode(&versioned), Err(DecodeError::Version { got: 9 }));
    }

    /// The fuzzer's seeds (`fuzz/seeds/tunnel`, written by
    /// `fuzz/seeds/make_seeds.py`) are valid messages.
    #[test]
    fn the_fuzz_seeds_decode() {
        let up: [&[u8]; 5] = [
            include_bytes!("../../../fuzz/seeds/tunnel/up_open"),
            include_bytes!("../../../fuzz/seeds/tunnel/up_data"),
            include_bytes!("../../../fuzz/seeds/tunnel/up_close"),
            include_bytes!("../../../fuzz/seeds/tunnel/up_input"),
            include_bytes!("../../../fuzz/seeds/tunnel/up_rejected"),
        ];
        for bytes in up {
            let m = Up::decode(bytes).expect("a valid up seed");
            assert_eq!(m.node(), "n1");
            assert_eq!(m.to_vec(), bytes);
        }
        let down: [&[u8]; 2] = [
            include_bytes!("../../../fuzz/seeds/tunnel/down_data"),
            include_bytes!("../../../fuzz/seeds/tunnel/down_close"),
        ];
        for bytes in down {
            assert_eq!(
                Down::decode(bytes).expect("a valid down seed").to_vec(),
                bytes
            );
        }
    }
}
