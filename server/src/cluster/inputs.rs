//! The cluster's input log: every viewer's push, on whichever node it
//! arrived, is appended to one term-independent stream, `{p}inputs`; the
//! node that leads reads it and folds the pushes into its timeline.
//!
//! # Why a log of its own (issue 23)
//!
//! Before, a push went into the leader's core directly (a viewer of the
//! leader) or up the leader's per-term tunnel stream (a follower's viewer).
//! A push the leader had taken but not yet committed *and* appended to the
//! timeline died with its term (the leader frozen past its lease, fenced,
//! killed), and a push sent while no node led was carried for three
//! seconds and dropped; either way it had been counted accepted. Now:
//!
//! - **Any node appends, any time** ([`append`]): the log belongs to no
//!   term, so a push is stored the moment Redis takes it, whether or not a
//!   node leads, and whichever node leads next reads it.
//! - **The leader's position in the log is in the timeline.** Each timeline
//!   entry carries `inputs`, the last log entry folded into its version or
//!   an earlier one ([`TimelineEntry::inputs`]). A new leader resumes from
//!   the stream's last entry (frame, version, scene *and* input position)
//!   and reads the log after it ([`lead`]). So a push is in the timeline
//!   exactly once: if the batch of the version that folded it reached the
//!   stream, its position did too; if not (the leader died or was fenced
//!   first), nobody saw that version (durability before visibility) and the
//!   next leader folds the push again.
//! - **Which version folds which pushes** ([`Folded`]): the reader hands
//!   the core a group of pushes only when no push is pending in the core,
//!   and every push comes through the reader, so the next commit folds
//!   exactly that group into the next version (or, when the group cancels
//!   out, into none). The mapping is noted *before* the pushes are handed
//!   over, so a batch of the new version never goes out with an older
//!   position (which would apply the group twice after a takeover).
//! - **Refused, visibly.** A push Redis cannot take within
//!   [`INPUT_CARRY`](super::node::INPUT_CARRY) is refused: the pushing
//!   viewer gets `InputRefused { Unreachable }` (`shared::wire::refusal`)
//!   and the page says so. The append script carries a deadline (Redis's
//!   `TIME`, a little before the node gives up) and a once-only key, so a
//!   command that timed out behind a frozen Redis and runs seconds later
//!   neither stores a push its viewer was told was refused nor stores a
//!   retried push twice. A node refuses only when it knows: Redis answered
//!   "too late", or every attempt failed without reaching Redis (refused
//!   connections); after an attempt that timed out (it may run later) it
//!   waits for Redis's answer to a retry, which the once-only key makes
//!   definitive. (The deadline assumes the node's and Redis's wall clocks
//!   agree within [`CLOCK_MARGIN`]; fencing does not.)
//!
//! Pushes stay rate-limited per viewer (`--input-rate`) before they reach
//! the log; the log is capped (`MAXLEN ~`) and expires an hour after its
//! last write.
//!
//! [`TimelineEntry::inputs`]: super::stream_log::TimelineEntry::inputs

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use donut_shared::scene::Impulse;
use redis::{RedisResult, Script, Value};
use tracing::{debug, warn};

use super::RedisLink;
use super::deps::NodeDeps;
use super::follow::ResumePoint;
use super::node::{Node, viewer_key};
use super::stream_log::{DecodeError, EntryId, ReadEvent, StreamReader, field, number};

/// Entries the log keeps (about).
pub const MAXLEN: usize = 10_000;

/// Seconds the log outlives its last write.
const EXPIRE_SECS: u64 = 3600;

/// How long the once-only key of a push lives: past the last retry a node
/// may make ([`INPUT_CARRY`](super::node::INPUT_CARRY) then
/// [`INPUT_UNSURE`](super::node::INPUT_UNSURE)), with 10 s to spare, so a
/// retry of a push that was stored always finds its key and is never told
/// "too late".
const ONCE_MS: u64 =
    (super::node::INPUT_CARRY.as_millis() + super::node::INPUT_UNSURE.as_millis() + 10_000) as u64;

/// How much earlier than the node gives up the append's deadline falls in
/// Redis's clock: the skew between the two wall clocks this tolerates.
pub const CLOCK_MARGIN: Duration = Duration::from_millis(500);

/// How often the reader looks whether the core committed the pushes it
/// handed over (a commit comes at most `--input-commit-ms` later).
const COMMIT_POLL: Duration = Duration::from_millis(2);

/// Pause before retrying a read that failed.
const RETRY: Duration = Duration::from_millis(100);

/// Most versions [`Folded`] remembers (batches of older versions are long
/// appended).
const FOLDED_KEPT: usize = 64;

/// Where a viewer's notices go (encoded `ToViewer` messages such as
/// `InputRefused`), written by its connection between batches.
pub type Notices = tokio::sync::mpsc::Sender<bytes::Bytes>;

/// Appends a push once, unless Redis's clock is past `deadline_ms` (a
/// retry of a push already stored gets its ID, whatever the time):
/// `KEYS[1]` the log, `KEYS[2]` the push's once-only key; `ARGV[1]` the
/// `MAXLEN`, `ARGV[2]` the log's expiry (s), `ARGV[3]` the deadline (Unix
/// ms), `ARGV[4]` the once-only key's life (ms), then field/value pairs.
/// Answers the entry's ID (the first append's, for a retry), or `{}` when
/// too late.
pub const APPEND: &str = r"
local done = redis.call('GET', KEYS[2])
if done then
  return done
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[3]) then
  return {}
end
local args = {KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
for i = 5, #ARGV do
  args[#args + 1] = ARGV[i]
end
local id = redis.call('XADD', unpack(args))
redis.call('SET', KEYS[2], id, 'PX', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return id
";

fn script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(APPEND))
}

/// One push in the log: the node and connection of the viewer that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPush {
    /// The node the viewer is connected to.
    pub node: String,
    /// The viewer's connection id there.
    pub viewer: u64,
    /// The push, in spin units.
    pub push: Impulse,
}

/// What [`append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// In the log under this ID.
    Id(EntryId),
    /// Refused by Redis: its clock was past the deadline (the push will
    /// never be stored).
    TooLate,
}

/// Current wall-clock time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Appends `push` from viewer `viewer` of node `node` to the log, once per
/// `once` (a name unique to this push: retries of it store it at most
/// once), unless Redis's clock is past `deadline_ms` (Unix ms).
///
/// # Errors
/// Redis unreachable or slow (the command may still run later: then its
/// deadline and once-only key decide).
pub async fn append(
    link: &RedisLink,
    once: &str,
    deadline_ms: u64,
    from: &LoggedPush,
) -> RedisResult<Stored> {
    let keys = link.keys();
    let mut invocation = script().prepare_invoke();
    invocation
        .key(keys.inputs())
        .key(keys.push_once(once))
        .arg(MAXLEN)
        .arg(EXPIRE_SECS)
        .arg(deadline_ms)
        .arg(ONCE_MS)
        .arg("n")
        .arg(&from.node)
        .arg("v")
        .arg(from.viewer)
        .arg("a")
        .arg(from.push.a)
        .arg("b")
        .arg(from.push.b);
    let reply: Value = invocation.invoke_async(&mut link.conn()).await?;
    let id = match &reply {
        Value::Array(a) if a.is_empty() => return Ok(Stored::TooLate),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    };
    id.map(Stored::Id).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected answer from the input append",
            format!("{reply:?}"),
        ))
    })
}

/// A signed decimal field that fits an `i32`.
fn signed(map: &HashMap<String, Value>, name: &'static str) -> Result<i32, DecodeError> {
    std::str::from_utf8(field(map, name)?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DecodeError::Garbled(name))
}

/// A log entry's fields: `n` node, `v` viewer, `a` and `b` the push (each
/// within the wire's bound: anything else is garbled).
pub fn parse(map: &HashMap<String, Value>) -> Result<LoggedPush, DecodeError> {
    let node = std::str::from_utf8(field(map, "n")?)
        .map_err(|_| DecodeError::Garbled("n"))?
        .to_owned();
    let bound = i32::from(donut_shared::wire::MAX_INPUT_UNITS);
    let within = |v: i32, name| {
        if (-bound..=bound).contains(&v) {
            Ok(v)
        } else {
            Err(DecodeError::Garbled(name))
        }
    };
    Ok(LoggedPush {
        node,
        viewer: number(map, "v")?,
        push: Impulse {
            a: within(signed(map, "a")?, "a")?,
            b: within(signed(map, "b")?, "b")?,
        },
    })
}

/// The newest entry's ID (`0-0` for an empty log).
pub async fn last_id(link: &RedisLink) -> RedisResult<EntryId> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(link.keys().inputs())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut link.conn())
        .await?;
    Ok(reply
        .ids
        .first()
        .and_then(|e| e.id.parse().ok())
        .unwrap_or(EntryId::ZERO))
}

/// Whether the log still holds entry `id` (`XRANGE id id`).
pub async fn holds(link: &RedisLink, id: EntryId) -> RedisResult<bool> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(link.keys().inputs())
        .arg(id)
        .arg(id)
        .query_async(&mut link.conn())
        .await?;
    Ok(!reply.ids.is_empty())
}

/// Which position in the log each timeline version folded (sans-IO; see
/// the module docs): the leader's appender asks it for the position a
/// batch carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    by_version: BTreeMap<u32, EntryId>,
}

impl Folded {
    /// Starts over at a takeover: `version` folded everything up to `at`.
    pub fn reset(&mut self, version: u32, at: EntryId) {
        self.by_version.clear();
        self.by_version.insert(version, at);
    }

    /// Notes that `version` folds everything up to `at` (never moving a
    /// version's position back).
    pub fn fold(&mut self, version: u32, at: EntryId) {
        let kept = self.by_version.entry(version).or_insert(at);
        *kept = (*kept).max(at);
        while self.by_version.len() > FOLDED_KEPT {
            self.by_version.pop_first();
        }
    }

    /// The position a batch of `version` carries: that of the newest
    /// version at or before it (`0-0` if none is known).
    pub fn at(&self, version: u32) -> EntryId {
        self.by_version
            .range(..=version)
            .next_back()
            .map_or(EntryId::ZERO, |(_, at)| *at)
    }
}

/// As leader from `from` (the timeline's resume point): reads the log
/// after `from.inputs` and folds each group of pushes into the core's
/// timeline, noting which version folds which position, until aborted
/// (the term ended).
pub async fn lead(node: Arc<Node>, deps: Arc<NodeDeps>, from: ResumePoint) {
    node.folded(|f| f.reset(from.version, from.inputs));
    let link = node.link().clone();
    // Pushes stored before this term began are carried over to it.
    let carried_until = match last_id(&link).await {
        Ok(id) => id,
        Err(_) => from.inputs,
    };
    let mut reader = StreamReader::of(link.clone(), link.keys().inputs(), from.inputs, parse);
    let mut cursor = from.inputs;
    loop {
        let first = match reader.next().await {
            Ok(event) => event,
            Err(e) => {
                debug!("input log read failed (retrying): {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut group = Vec::new();
        let mut end = cursor;
        let mut next = Some(first);
        while let Some(event) = next {
            match event {
                ReadEvent::Entry { id, entry } if id > cursor => {
                    end = end.max(id);
                    group.push((id, entry));
                }
                ReadEvent::Entry { .. } => {}
                ReadEvent::Garbled { id, error } => {
                    warn!(%id, "garbled input log entry skipped: {error:?}");
                    end = end.max(id);
                }
                ReadEvent::Reset { last_seen } => {
                    warn!(%last_seen, "the input log lost entries (Redis lost its data?): reading it again");
                }
            }
            next = reader.buffered();
        }
        if end <= cursor {
            continue;
        }
        let before = deps.core.timeline().version();
        // Noted first: the commit may come (and its batch be appended)
        // before this task runs again.
        node.folded(|f| f.fold(before.wrapping_add(1), end));
        // The whole group under one lock: a commit between two of its
        // pushes would fold part of it under a version noted with `end`,
        // and a takeover before the next version would lose the rest.
        deps.core.input_many(
            group
                .iter()
                .map(|(_, p)| (viewer_key(&p.node, p.viewer), p.push)),
        );
        for (id, _) in &group {
            deps.stats.cluster_inputs_taken.inc();
            if *id <= carried_until {
                deps.stats.cluster_inputs_carried.inc();
            }
        }
        cursor = end;
        if group.is_empty() {
            node.folded(|f| f.fold(before, end));
            continue;
        }
        loop {
            let timeline = deps.core.timeline();
            if !timeline.has_pending() {
                if timeline.version() == before {
                    // The group cancelled out: no version folds it, the
                    // current one carries its position on.
                    node.folded(|f| f.fold(before, end));
                }
                break;
            }
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EntryId {
        EntryId { ms: n, seq: 0 }
    }

    #[test]
    fn a_batch_carries_the_position_of_its_version() {
        let mut f = Folded::default();
        f.reset(3, id(10));
        assert_eq!(f.at(3), id(10));
        // A group noted for version 4 before it commits: batches of 3
        // still carry 10, batches of 4 (and later) carry 20.
        f.fold(4, id(20));
        assert_eq!(f.at(3), id(10));
        assert_eq!(f.at(4), id(20));
        assert_eq!(f.at(9), id(20));
        // The next group cancelled out: still version 4, position 30.
        f.fold(5, id(30));
        f.fold(4, id(30));
        assert_eq!(f.at(4), id(30));
        // Never back.
        f.fold(4, id(25));
        assert_eq!(f.at(4), id(30));
        // Before anything known: the log's start.
        assert_eq!(f.at(2), EntryId::ZERO);
        for v in 0..200 {
            f.fold(10 + v, id(100 + u64::from(v)));
        }
        assert!(f.by_version.len() <= FOLDED_KEPT);
        assert_eq!(f.at(209), id(299));
    }

    #[test]
    fn log_entries_parse_and_out_of_range_pushes_are_garbled() {
        let map = |a: &str| -> HashMap<String, Value> {
            [("n", "n1"), ("v", "7"), ("a", a), ("b", "-1024")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::BulkString(v.as_bytes().to_vec())))
                .collect()
        };
        assert_eq!(
            parse(&map("300")),
            Ok(LoggedPush {
                node: "n1".into(),
                viewer: 7,
                push: Impulse { a: 300, b: -1024 }
            })
        );
        assert_eq!(parse(&map("1025")), Err(DecodeError::Garbled("a")));
        assert_eq!(parse(&map("x")), Err(DecodeError::Garbled("a")));
        let mut m = map("1");
        m.remove("v");
        assert_eq!(parse(&m), Err(DecodeError::Missing("v")));
    }
}
