//! Fenced appends: every write to the timeline stream and the tunnel
//! streams is one Lua script that checks, inside Redis and atomically with
//! the `XADD`, that the lease is still held under the writer's term.
//!
//! The lease's term is the **fencing token**. A node's own belief that it
//! leads (its [`lease`](super::lease) clock) decides whether it *tries* to
//! write; Redis decides whether the write *happens*: a leader paused past
//! its lease (`SIGSTOP`, a VM migration, a long GC-like stall), a command
//! queued behind a frozen Redis and run seconds later, or a node that lost
//! a race it never heard of, all write with a term that no longer holds
//! `{p}leader`, and the script refuses them. So no entry of a term can land
//! after the first entry of the next term: once a new term holds the key,
//! the old one is refused for good (terms only grow, see
//! [`lease`](super::lease)).
//!
//! The shape is Centrifuge's Redis history script (check the stream's
//! epoch, then `XADD`, then `EXPIRE`, in one `EVALSHA`): one round trip,
//! no `WATCH`/`MULTI` retry loop, and Redis runs scripts one at a time, so
//! nothing can slip between the check and the append.
//!
//! The script takes the holder it expects as `node` and `term`; an empty
//! `node` accepts any node holding `term` (a follower writing to the
//! current leader's up stream: what matters is that the term it addresses
//! still leads). The answer is the new entry's ID, or the holder found
//! (`<node>:<term>`, or nothing) when refused.

use redis::{RedisResult, Script, Value};

use super::RedisLink;
use super::lease::parse_holder;
use super::stream_log::EntryId;

/// Check the lease, then `XADD` (`MAXLEN ~`), then `EXPIRE` (if > 0).
///
/// `KEYS[1]` the lease key, `KEYS[2]` the stream; `ARGV[1]` the node
/// expected to hold the lease (`""`: any), `ARGV[2]` its term, `ARGV[3]`
/// the `MAXLEN`, `ARGV[4]` seconds the stream outlives this write (0:
/// no expiry), then field/value pairs.
pub const APPEND: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then
  return {}
end
local node, term = string.match(held, '^(.*):(%d+)$')
if term ~= ARGV[2] or (ARGV[1] ~= '' and node ~= ARGV[1]) then
  return {held}
end
local args = {KEYS[2], 'MAXLEN', '~', ARGV[3], '*'}
for i = 5, #ARGV do
  args[#args + 1] = ARGV[i]
end
local id = redis.call('XADD', unpack(args))
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return id
";

/// Who a fenced append writes as: the holder of the lease it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The node expected to hold the lease; empty: any node.
    pub node: String,
    /// The term (fencing epoch) expected.
    pub term: u64,
}

impl Token {
    /// Writing as the leader `node` of `term`.
    pub fn leader(node: &str, term: u64) -> Self {
        Self {
            node: node.to_owned(),
            term,
        }
    }

    /// Writing to whichever node leads under `term`.
    pub fn term(term: u64) -> Self {
        Self {
            node: String::new(),
            term,
        }
    }
}

/// What a fenced append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended under this ID.
    Id(EntryId),
    /// Refused by Redis: the lease is not held under the token. `holder`
    /// is who holds it (`(node, term)`), if anyone does.
    Fenced {
        /// The lease's holder when the script ran.
        holder: Option<(String, u64)>,
    },
}

/// Reads the script's answer; `None` for an answer it never gives.
pub fn parse_appended(reply: &Value) -> Option<Appended> {
    match reply {
        Value::BulkString(id) => std::str::from_utf8(id).ok()?.parse().ok().map(Appended::Id),
        Value::SimpleString(id) => id.parse().ok().map(Appended::Id),
        Value::Array(held) => match held.as_slice() {
            [] => Some(Appended::Fenced { holder: None }),
            [Value::BulkString(v)] => Some(Appended::Fenced {
                holder: parse_holder(v).map(|(n, t)| (n.to_owned(), t)),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// The script, loaded once per process (`EVALSHA`, falling back to `EVAL`
/// after Redis forgot it, e.g. across a restart or a failover).
fn script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(APPEND))
}

/// Appends `fields` to stream `key` if the lease is held under `token`
/// (see the module docs). `maxlen`: entries kept (about); `expire_secs`:
/// how long the stream outlives this write (0: forever).
///
/// # Errors
/// Redis unreachable or the command timed out: the append may still run
/// later, and is then fenced like any other (it carries its token).
pub async fn append(
    link: &RedisLink,
    key: &str,
    token: &Token,
    maxlen: usize,
    expire_secs: u64,
    fields: &[(&str, &[u8])],
) -> RedisResult<Appended> {
    let mut invocation = script().prepare_invoke();
    invocation
        .key(link.keys().leader())
        .key(key)
        .arg(&token.node)
        .arg(token.term)
        .arg(maxlen)
        .arg(expire_secs);
    for (name, value) in fields {
        invocation.arg(*name).arg(*value);
    }
    let reply: Value = invocation.invoke_async(&mut link.conn()).await?;
    parse_appended(&reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected answer from the fenced append",
            format!("{reply:?}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_without_panicking() {
        assert_eq!(
            parse_appended(&Value::BulkString(b"1700000000000-3".to_vec())),
            Some(Appended::Id(EntryId {
                ms: 1_700_000_000_000,
                seq: 3
            }))
        );
        assert_eq!(
            parse_appended(&Value::Array(vec![])),
            Some(Appended::Fenced { holder: None })
        );
        assert_eq!(
            parse_appended(&Value::Array(vec![Value::BulkString(b"n2:7".to_vec())])),
            Some(Appended::Fenced {
                holder: Some(("n2".into(), 7))
            })
        );
        assert_eq!(
            parse_appended(&Value::Array(vec![Value::BulkString(b"junk".to_vec())])),
            Some(Appended::Fenced { holder: None })
        );
        for junk in [
            Value::Nil,
            Value::Int(0),
            Value::BulkString(b"not-an-id".to_vec()),
            Value::Array(vec![Value::Nil, Value::Nil]),
        ] {
            assert_eq!(parse_appended(&junk), None, "{junk:?}");
        }
    }
}
