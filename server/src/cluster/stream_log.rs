//! The shared timeline: committed batches in the Redis stream
//! `{p}timeline`, appended by the leader, read by every node.
//!
//! Each entry is one batch as viewers receive it, encoded once for the whole
//! cluster ([`TimelineEntry`]: the leader's term, the batch's frames and
//! scene, and `msg`, the exact encoded `Frames` bytes). IDs are Redis's own
//! (`XADD *`, time-ordered); `MAXLEN ~ N` keeps the stream about as long as
//! the frame ring, trimmed in whole internal nodes (the cheap kind).
//!
//! **Reading** ([`TimelineReader`]) is `XREAD BLOCK` from the last ID seen,
//! on a connection of its own (a blocking read would stall every other
//! command sharing a connection). After any error the reader reconnects
//! (backing off up to a second) and carries on from its last ID: a blink of
//! Redis loses nothing.
//!
//! **Lost data**: a Redis restart without persistence (the tests run
//! `--save ''`) empties the stream; `MAXLEN` trimming past a reader that
//! fell far behind drops entries it never read. Either way the ID it last
//! saw is gone, and IDs alone cannot show that (the new stream's IDs are
//! larger, from the clock), so each read is sent with
//! `XRANGE <last> <last>`: when the last ID is gone the reader reports
//! [`ReadEvent::Reset`] and restarts from the oldest entry there is. (A
//! trim landing exactly between that check and the read slips past it; the
//! consumer's own check that each batch starts where the last one ended is
//! the final word.)
//!
//! Decoding never panics: a missing or garbled field is a [`DecodeError`],
//! reported for that entry ([`ReadEvent::Garbled`]) without stopping the
//! reader.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::{ErrorKind, RedisError, RedisResult, Value};

use super::RedisLink;

/// Size of the scene-at-start field in bytes.
pub const SCENE_LEN: usize = 32;

/// One committed batch, as stored in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The term (fencing epoch) of the leader that committed it.
    pub term: u64,
    /// First absolute frame number of the batch.
    pub start: u64,
    /// Frames in the batch.
    pub count: u32,
    /// Timeline version (scene changes so far) at the batch's start.
    pub version: u32,
    /// The playback head when it was committed (absolute frame number).
    pub head: u64,
    /// The scene in force at `start`, encoded (32 bytes).
    pub scene: [u8; SCENE_LEN],
    /// The exact encoded `Frames` message viewers receive.
    pub msg: Bytes,
    /// The last entry of the cluster's input log (`{p}inputs`, see
    /// [`inputs`](super::inputs)) folded into this entry's version or an
    /// earlier one: where a new leader resumes reading pushes, so a push is
    /// applied once whichever node commits it. Field `inputs`, absent in
    /// entries of older releases (read as `0-0`).
    pub inputs: EntryId,
    /// The change of this entry's version, as its leader knew it: the
    /// first frame the version changed (absolute frame number) and the
    /// scene there (encoded, 32 bytes), what a steering page predicts from
    /// (`Keyframe`, issue 25). Fields `cf` and `cs`, both or neither;
    /// absent when the leader no longer knew it or in older releases.
    pub change: Option<(u64, [u8; SCENE_LEN])>,
}

/// Why a stream entry is not what it should be (a [`TimelineEntry`], a
/// tunnel message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The field is absent.
    Missing(&'static str),
    /// The field is there but not of the expected form or range.
    Garbled(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(field) => write!(f, "stream entry without field {field:?}"),
            Self::Garbled(field) => write!(f, "stream entry with a garbled {field:?}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The raw bytes of a string-like field.
pub(super) fn field<'a>(
    map: &'a HashMap<String, Value>,
    name: &'static str,
) -> Result<&'a [u8], DecodeError> {
    match map.get(name) {
        None => Err(DecodeError::Missing(name)),
        Some(Value::BulkString(b)) => Ok(b),
        Some(Value::SimpleString(s)) => Ok(s.as_bytes()),
        Some(_) => Err(DecodeError::Garbled(name)),
    }
}

/// A decimal unsigned integer field that fits `T`.
pub(super) fn number<T: TryFrom<u64>>(
    map: &HashMap<String, Value>,
    name: &'static str,
) -> Result<T, DecodeError> {
    let garbled = DecodeError::Garbled(name);
    let n = match map.get(name) {
        Some(Value::Int(i)) => u64::try_from(*i).map_err(|_| garbled)?,
        _ => {
            let text = std::str::from_utf8(field(map, name)?).map_err(|_| garbled)?;
            text.parse::<u64>().map_err(|_| garbled)?
        }
    };
    T::try_from(n).map_err(|_| garbled)
}

impl TimelineEntry {
    /// The stream fields, in order: integers as decimal text (readable in
    /// `redis-cli`), `scene` and `msg` as raw bytes.
    pub fn to_fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let text = |n: u64| n.to_string().into_bytes();
        let mut fields = vec![
            ("term", text(self.term)),
            ("start", text(self.start)),
            ("count", text(u64::from(self.count))),
            ("version", text(u64::from(self.version))),
            ("head", text(self.head)),
            ("scene", self.scene.to_vec()),
            ("msg", self.msg.to_vec()),
            ("inputs", self.inputs.to_string().into_bytes()),
        ];
        if let Some((frame, scene)) = self.change {
            fields.push(("cf", text(frame)));
            fields.push(("cs", scene.to_vec()));
        }
        fields
    }

    /// Reads an entry's fields (as `XREAD` returns them); never panics.
    pub fn from_fields(map: &HashMap<String, Value>) -> Result<Self, DecodeError> {
        Ok(Self {
            term: number(map, "term")?,
            start: number(map, "start")?,
            count: number(map, "count")?,
            version: number(map, "version")?,
            head: number(map, "head")?,
            scene: field(map, "scene")?
                .try_into()
                .map_err(|_| DecodeError::Garbled("scene"))?,
            msg: Bytes::copy_from_slice(field(map, "msg")?),
            inputs: match map.get("inputs") {
                None => EntryId::ZERO,
                Some(_) => std::str::from_utf8(field(map, "inputs")?)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(DecodeError::Garbled("inputs"))?,
            },
            change: match (map.get("cf"), map.get("cs")) {
                (None, None) => None,
                _ => Some((
                    number(map, "cf")?,
                    field(map, "cs")?
                        .try_into()
                        .map_err(|_| DecodeError::Garbled("cs"))?,
                )),
            },
        })
    }
}

/// A stream entry ID, `<ms>-<seq>`; ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// `0-0`: before every entry (read from the oldest there is).
    pub const ZERO: Self = Self { ms: 0, seq: 0 };
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let garbled = DecodeError::Garbled("id");
        let (ms, seq) = s.split_once('-').ok_or(garbled)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| garbled)?,
            seq: seq.parse().map_err(|_| garbled)?,
        })
    }
}

impl redis::ToRedisArgs for EntryId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

fn parse_id(id: &str) -> RedisResult<EntryId> {
    id.parse()
        .map_err(|_| RedisError::from((ErrorKind::UnexpectedReturnType, "not a stream entry id")))
}

/// The timeline stream: append (the leader) and read (every node).
#[derive(Debug, Clone)]
pub struct TimelineLog {
    link: RedisLink,
    maxlen: usize,
}

impl TimelineLog {
    /// The stream of `link`, kept to about `maxlen` entries.
    pub fn new(link: RedisLink, maxlen: usize) -> Self {
        Self { link, maxlen }
    }

    /// Appends `entry` if the lease is held under `token`, through the
    /// [`fence`](super::fence) script: the entry's ID, or the refusal.
    ///
    /// # Errors
    /// Redis unreachable or slow (the append may still run later: it is
    /// then fenced like any other).
    pub async fn append_fenced(
        &self,
        token: &super::fence::Token,
        entry: &TimelineEntry,
    ) -> RedisResult<super::fence::Appended> {
        let fields = entry.to_fields();
        let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        super::fence::append(
            &self.link,
            &self.link.keys().timeline(),
            token,
            self.maxlen,
            0,
            &pairs,
        )
        .await
    }

    /// Appends `entry` with a bare `XADD {p}timeline MAXLEN ~ N * …`,
    /// unfenced: only for comparison in benchmarks and tests (every node
    /// writes through [`Self::append_fenced`]). Returns its ID.
    pub async fn append_unfenced(&self, entry: &TimelineEntry) -> RedisResult<EntryId> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.link.keys().timeline())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.maxlen)
            .arg("*");
        for (name, value) in entry.to_fields() {
            cmd.arg(name).arg(value);
        }
        let id: String = cmd.query_async(&mut self.link.conn()).await?;
        parse_id(&id)
    }

    /// The newest entry, if any (`XREVRANGE + - COUNT 1`): where a new
    /// leader picks up.
    pub async fn last(&self) -> RedisResult<Option<(EntryId, Result<TimelineEntry, DecodeError>)>> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.link.keys().timeline())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.link.conn())
            .await?;
        let Some(newest) = reply.ids.first() else {
            return Ok(None);
        };
        Ok(Some((
            parse_id(&newest.id)?,
            TimelineEntry::from_fields(&newest.map),
        )))
    }

    /// A reader of the entries after `after` ([`EntryId::ZERO`]: all).
    pub fn reader(&self, after: EntryId) -> TimelineReader {
        TimelineReader::new(self.link.clone(), after)
    }
}

/// What [`StreamReader::next`] yields (a timeline entry by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEvent<T = TimelineEntry> {
    /// The next entry, in stream order.
    Entry {
        /// Its ID.
        id: EntryId,
        /// Its contents.
        entry: T,
    },
    /// The next entry, unreadable (skipped; the reader goes on after it).
    Garbled {
        /// Its ID.
        id: EntryId,
        /// What is wrong with it.
        error: DecodeError,
    },
    /// Entries after `last_seen` were lost (Redis lost its data, or trimmed
    /// past this reader); reading restarts from the oldest entry left.
    Reset {
        /// The last ID this reader had read.
        last_seen: EntryId,
    },
}

/// Longest `BLOCK` of one read.
const BLOCK: Duration = Duration::from_millis(1000);

/// Most entries taken per read.
const READ_COUNT: usize = 64;

/// Longest wait before reconnecting after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Reads the timeline in order from a last-seen ID, on its own connection,
/// across reconnects (see the [module docs](self)).
pub type TimelineReader = StreamReader<TimelineEntry>;

/// Reads one stream in order from a last-seen ID, on its own connection,
/// across reconnects, noticing when that ID is gone (see the
/// [module docs](self)); each entry's fields are decoded into a `T`. The
/// timeline's reader, and the tunnels' (`tunnel_log`).
#[derive(Debug)]
pub struct StreamReader<T> {
    link: RedisLink,
    key: String,
    parse: fn(&HashMap<String, Value>) -> Result<T, DecodeError>,
    last: EntryId,
    conn: Option<MultiplexedConnection>,
    pending: VecDeque<(String, HashMap<String, Value>)>,
    reset: Option<EntryId>,
    failures: u32,
}

impl TimelineReader {
    /// A reader of the timeline's entries after `after` on `link`'s Redis.
    pub fn new(link: RedisLink, after: EntryId) -> Self {
        let key = link.keys().timeline();
        StreamReader::of(link, key, after, TimelineEntry::from_fields)
    }
}

impl<T> StreamReader<T> {
    /// A reader of stream `key`'s entries after `after`, decoding each
    /// entry's fields with `parse`.
    pub fn of(
        link: RedisLink,
        key: String,
        after: EntryId,
        parse: fn(&HashMap<String, Value>) -> Result<T, DecodeError>,
    ) -> Self {
        Self {
            link,
            key,
            parse,
            last: after,
            conn: None,
            pending: VecDeque::new(),
            reset: None,
            failures: 0,
        }
    }

    /// The ID of the last entry yielded (or the starting point).
    pub fn last_id(&self) -> EntryId {
        self.last
    }

    /// The next event, waiting for one as long as it takes. An error (Redis
    /// unreachable) is returned once per failed attempt; call again to
    /// retry, after a backoff, from the same place. Cancel-safe: nothing is
    /// consumed until it is returned.
    pub async fn next(&mut self) -> RedisResult<ReadEvent<T>> {
        loop {
            if let Some(event) = self.pop() {
                return Ok(event);
            }
            if let Err(e) = self.read().await {
                self.conn = None;
                self.failures = self.failures.saturating_add(1);
                return Err(e);
            }
            self.failures = 0;
        }
    }

    /// The next event already read, without waiting (`None`: the next
    /// one needs a read).
    pub fn buffered(&mut self) -> Option<ReadEvent<T>> {
        self.pop()
    }

    /// The next buffered event, if any.
    fn pop(&mut self) -> Option<ReadEvent<T>> {
        if let Some(last_seen) = self.reset.take() {
            return Some(ReadEvent::Reset { last_seen });
        }
        let (raw_id, map) = self.pending.pop_front()?;
        let Ok(id) = raw_id.parse::<EntryId>() else {
            // Redis never sends such an ID; skip it rather than stall.
            return self.pop();
        };
        self.last = id;
        Some(match (self.parse)(&map) {
            Ok(entry) => ReadEvent::Entry { id, entry },
            Err(error) => ReadEvent::Garbled { id, error },
        })
    }

    /// The connection, (re)connecting after a backoff if there is none.
    async fn connection(&mut self) -> RedisResult<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            if self.failures > 0 {
                let backoff = Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(5));
                tokio::time::sleep(backoff.min(MAX_BACKOFF)).await;
            }
            self.conn = Some(self.link.dedicated(BLOCK).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| RedisError::from((ErrorKind::Client, "no timeline connection")))
    }

    /// One blocking read: checks the last ID is still there, then takes up
    /// to [`READ_COUNT`] entries after it.
    async fn read(&mut self) -> RedisResult<()> {
        let key = self.key.clone();
        let last = self.last;
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE").arg(&key).arg(last).arg(last);
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&key)
            .arg(last);
        let conn = self.connection().await?;
        let (held, reply): (StreamRangeReply, Option<StreamReadReply>) =
            pipe.query_async(conn).await?;
        if last != EntryId::ZERO && held.ids.is_empty() {
            self.reset = Some(last);
            self.last = EntryId::ZERO;
            return Ok(());
        }
        let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        self.pending
            .extend(entries.map(|entry| (entry.id, entry.map)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(start: u64) -> TimelineEntry {
        TimelineEntry {
            term: 3,
            start,
            count: 30,
            version: 2,
            head: start.saturating_sub(60),
            scene: [7; SCENE_LEN],
            msg: Bytes::from_static(b"\x02frames"),
            inputs: EntryId {
                ms: 1_700_000_000_000,
                seq: 4,
            },
            change: Some((start.saturating_sub(7), [9; SCENE_LEN])),
        }
    }

    /// The fields as `XREAD` gives them back (RESP2 bulk strings).
    fn as_read(e: &TimelineEntry) -> HashMap<String, Value> {
        e.to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::BulkString(v)))
            .collect()
    }

    #[test]
    fn an_entry_round_trips_through_its_fields() {
        let e = entry(600);
        assert_eq!(TimelineEntry::from_fields(&as_read(&e)), Ok(e));
    }

    #[test]
    fn missing_and_garbled_fields_are_errors() {
        let e = entry(600);
        let mut map = as_read(&e);
        map.remove("head");
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Missing("head"))
        );
        map = as_read(&e);
        map.insert("scene".into(), Value::BulkString(vec![0; 31]));
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Garbled("scene"))
        );
        map = as_read(&e);
        map.insert("count".into(), Value::BulkString(b"4294967296".to_vec()));
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Garbled("count"))
        );
        map = as_read(&e);
        map.insert("inputs".into(), Value::BulkString(b"12".to_vec()));
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Garbled("inputs"))
        );
        // An entry of an older release: no input cursor.
        map.remove("inputs");
        assert_eq!(
            TimelineEntry::from_fields(&map).map(|e| e.inputs),
            Ok(EntryId::ZERO)
        );
        // The version's change: both fields or neither (older releases, a
        // leader that no longer knew it).
        map = as_read(&e);
        map.remove("cs");
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Missing("cs"))
        );
        map.remove("cf");
        assert_eq!(TimelineEntry::from_fields(&map).map(|e| e.change), Ok(None));
        map = as_read(&e);
        map.insert("cs".into(), Value::BulkString(vec![1; 33]));
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Garbled("cs"))
        );
        map = as_read(&e);
        map.insert("term".into(), Value::Int(-1));
        assert_eq!(
            TimelineEntry::from_fields(&map),
            Err(DecodeError::Garbled("term"))
        );
    }

    #[test]
    fn ids_parse_print_and_order_as_redis_does() {
        let id: EntryId = "1700000000000-12".parse().expect("a valid id");
        assert_eq!(
            id,
            EntryId {
                ms: 1_700_000_000_000,
                seq: 12
            }
        );
        assert_eq!(id.to_string(), "1700000000000-12");
        assert!(EntryId { ms: 5, seq: 0 } > EntryId { ms: 4, seq: 99 });
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-1-1",
            "18446744073709551616-0",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad:?} parsed");
        }
    }

    const NAMES: [&str; 11] = [
        "term", "start", "count", "version", "head", "scene", "msg", "inputs", "cf", "cs", "x",
    ];

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Nil),
            Just(Value::Okay),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::BulkString),
            "[0-9]{0,21}".prop_map(|s| Value::BulkString(s.into_bytes())),
            "[ -~]{0,12}".prop_map(Value::SimpleString),
            any::<f64>().prop_map(Value::Double),
            proptest::collection::vec(any::<i64>().prop_map(Value::Int), 0..3)
                .prop_map(Value::Array),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_field_maps_never_panic(
            map in proptest::collection::hash_map(
                prop_oneof![proptest::sample::select(&NAMES[..]).prop_map(str::to_owned), ".{0,8}"],
                any_value(),
                0..10,
            )
        ) {
            let _ = TimelineEntry::from_fields(&map);
        }

        #[test]
        fn arbitrary_ids_never_panic(s in ".{0,30}") {
            let _ = s.parse::<EntryId>();
        }

        #[test]
        fn every_entry_round_trips(
            term in any::<u64>(), start in any::<u64>(), count in any::<u32>(),
            version in any::<u32>(), head in any::<u64>(), scene in any::<[u8; SCENE_LEN]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
            (ms, seq) in (any::<u64>(), any::<u64>()),
            change in proptest::option::of((any::<u64>(), any::<[u8; SCENE_LEN]>())),
        ) {
            let inputs = EntryId { ms, seq };
            let e = TimelineEntry { term, start, count, version, head, scene, msg: msg.into(), inputs, change };
            prop_assert_eq!(TimelineEntry::from_fields(&as_read(&e)), Ok(e));
        }
    }
}
