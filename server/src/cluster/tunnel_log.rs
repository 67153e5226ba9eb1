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

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use super::Link;
use super::stream_log::EntryId;

/// Entries kept per tunnel stream (about; Redis trims whole nodes).
pub const MAXLEN: usize = 10_000;

/// Seconds a tunnel stream outlives its last write.
const EXPIRE_SECS: u64 = 3600;

/// Longest `BLOCK` of one read.
const BLOCK: Duration = Duration::from_millis(1000);

/// Most entries taken per read.
const READ_COUNT: usize = 256;

/// Appends `msg` (under leader term `term`) to stream `key`.
pub async fn append(link: &Link, key: &str, term: u64, msg: &[u8]) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAXLEN)
        .arg("*")
        .arg("t")
        .arg(term)
        .arg("m")
        .arg(msg)
        .ignore();
    pipe.cmd("EXPIRE").arg(key).arg(EXPIRE_SECS).ignore();
    pipe.query_async(&mut link.conn()).await
}

/// Empties stream `key` (a node's own down stream, at start: its id is
/// new, but a restarted node may reuse one).
pub async fn clear(link: &Link, key: &str) -> RedisResult<()> {
    redis::cmd("DEL")
        .arg(key)
        .query_async(&mut link.conn())
        .await
}

/// One entry read: the term it was sent under and the message, or why it
/// is unreadable.
pub type Entry = (u64, Result<Bytes, &'static str>);

/// Reads one tunnel stream in order, on its own connection, across
/// reconnects.
#[derive(Debug)]
pub struct TunnelReader {
    link: Link,
    key: String,
    last: EntryId,
    conn: Option<MultiplexedConnection>,
    pending: VecDeque<Entry>,
}

impl TunnelReader {
    /// A reader of stream `key` from its first entry.
    pub fn new(link: Link, key: String) -> Self {
        Self {
            link,
            key,
            last: EntryId::ZERO,
            conn: None,
            pending: VecDeque::new(),
        }
    }

    /// The next entry, waiting as long as it takes. An error (Redis
    /// unreachable) is returned once per failed attempt; call again to
    /// retry from the same place. Cancel-safe.
    pub async fn next(&mut self) -> RedisResult<Entry> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Ok(entry);
            }
            if let Err(e) = self.read().await {
                self.conn = None;
                return Err(e);
            }
        }
    }

    async fn read(&mut self) -> RedisResult<()> {
        if self.conn.is_none() {
            self.conn = Some(self.link.dedicated(BLOCK).await?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| RedisError::from((ErrorKind::Client, "no tunnel connection")))?;
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&self.key)
            .arg(self.last)
            .query_async(conn)
            .await?;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            if let Ok(id) = entry.id.parse::<EntryId>() {
                self.last = id;
            }
            let term = entry.map.get("t").and_then(as_u64).unwrap_or(0);
            let msg = match entry.map.get("m") {
                Some(Value::BulkString(b)) => Ok(Bytes::copy_from_slice(b)),
                Some(_) => Err("message field is not bytes"),
                None => Err("no message field"),
            };
            self.pending.push_back((term, msg));
        }
        Ok(())
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}
