//! The tunnel streams: ordered byte messages between nodes, one stream per
//! direction and end (`{p}up:<term>` to a leader, `{p}down:<node>` to a
//! follower), each entry one [`shared::wire::tunnel`] message and the term
//! of the leader it belongs to.
//!
//! Streams rather than pub/sub for the same reason as the timeline: a
//! reader that blinks (a reconnect, a Redis failover) resumes after the
//! last ID it saw instead of losing messages silently; and a new leader's
//! up stream is its own (named by its term), so a follower may send to it
//! the moment it learns the term, before the leader has started reading,
//! and nothing sent to a deposed leader reaches the new one. Entries are
//! capped (`MAXLEN ~`) and the streams expire an hour after their last
//! write, so a dead node's or term's stream goes away by itself.
//!
//! [`shared::wire::tunnel`]: donut_shared::wire::tunnel

use std::collections::HashMap;

use bytes::Bytes;
use redis::{RedisResult, Value};

use super::RedisLink;
use super::fence::{self, Appended, Token};
use super::stream_log::{DecodeError, EntryId, ReadEvent, StreamReader, field, number};

/// Entries kept per tunnel stream (about; Redis trims whole nodes).
pub const MAXLEN: usize = 10_000;

/// Seconds a tunnel stream outlives its last write.
const EXPIRE_SECS: u64 = 3600;

/// Appends `msg` to stream `key` if the lease is held under `token` (the
/// leader writing down to a follower: its own node and term; a follower
/// writing up: any node under the term it addresses), through the
/// [`fence`] script. The entry carries the token's term.
///
/// # Errors
/// Redis unreachable or slow; or [`Fenced`] when Redis refused the write
/// because that term no longer leads.
pub async fn append(link: &RedisLink, key: &str, token: &Token, msg: &[u8]) -> RedisResult<()> {
    let term = token.term.to_string();
    let fields: [(&str, &[u8]); 2] = [("t", term.as_bytes()), ("m", msg)];
    match fence::append(link, key, token, MAXLEN, EXPIRE_SECS, &fields).await? {
        Appended::Id(_) => Ok(()),
        Appended::Fenced { .. } => Err(Fenced.into()),
    }
}

/// A tunnel write refused by Redis: its term no longer holds the lease.
#[derive(Debug, Clone, Copy)]
pub struct Fenced;

impl From<Fenced> for redis::RedisError {
    fn from(_: Fenced) -> Self {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "fenced: the term no longer holds the lease",
        ))
    }
}

/// Empties stream `key` (a node's own down stream, at start: its id is
/// new, but a restarted node may reuse one).
pub async fn clear(link: &RedisLink, key: &str) -> RedisResult<()> {
    redis::cmd("DEL")
        .arg(key)
        .query_async(&mut link.conn())
        .await
}

/// One entry read: the term it was sent under and the message, or why it
/// is unreadable.
pub type Entry = (u64, Result<Bytes, DecodeError>);

/// An entry's fields: `t`, the term, and `m`, the message.
fn parse(map: &HashMap<String, Value>) -> Result<(u64, Bytes), DecodeError> {
    Ok((number(map, "t")?, Bytes::copy_from_slice(field(map, "m")?)))
}

/// Reads one tunnel stream in order from its first entry, on its own
/// connection, across reconnects: the timeline's [`StreamReader`] over
/// the tunnel's fields.
#[derive(Debug)]
pub struct TunnelReader(StreamReader<(u64, Bytes)>);

impl TunnelReader {
    /// A reader of stream `key` from its first entry.
    pub fn new(link: RedisLink, key: String) -> Self {
        Self(StreamReader::of(link, key, EntryId::ZERO, parse))
    }

    /// The next entry, waiting as long as it takes. An error (Redis
    /// unreachable) is returned once per failed attempt; call again to
    /// retry from the same place. Cancel-safe. A stream that lost its
    /// entries (Redis lost its data) is read again from its start.
    pub async fn next(&mut self) -> RedisResult<Entry> {
        loop {
            match self.0.next().await? {
                ReadEvent::Entry { entry, .. } => return Ok((entry.0, Ok(entry.1))),
                ReadEvent::Garbled { error, .. } => return Ok((0, Err(error))),
                ReadEvent::Reset { .. } => {}
            }
        }
    }
}
