//! The cluster engine: several `donut serve` nodes sharing one timeline and
//! one pool of work through one Redis (`--cluster redis://HOST:PORT`).
//!
//! # The seam
//!
//! Without `--cluster` nothing here runs and no Redis is needed: the node is
//! today's single process. With it, exactly one node at a time is the
//! **leader** (chosen by a [`lease`] in Redis): it runs the `Core` for the
//! whole cluster and appends every committed batch to the shared
//! [`stream_log`]; the other nodes are edges that feed their viewers from
//! that log. Every node reports its figures to the [`registry`] and checks
//! the cluster-wide [`bans`]. The connection code does not know which it
//! runs on: it talks to the same interfaces, fed in-process or from here.
//!
//! # Why Redis, and why Streams
//!
//! An existing engine rather than a protocol between nodes of our own: one
//! process to start (Debian ships it), the best-kept Rust client (the
//! `redis` crate, whose `ConnectionManager` reconnects by itself), and the
//! primitives the design needs: keys with expiry (lease, heartbeats, bans),
//! a Lua script for compare-and-set, sorted sets (live nodes by expiry) and
//! **Streams**. Fan-out rides a stream, not pub/sub: pub/sub is
//! at-most-once (a node that blinks misses batches and cannot tell), while
//! a stream has offsets, so a reconnecting node resumes `XREAD` from the
//! last ID it saw and notices when that ID is gone (Socket.IO moved its
//! Redis adapter to Streams, and Centrifugo keeps history in Streams, for
//! this reason).
//!
//! # Keys (all under `--cluster-prefix`, `dd:` by default; see [`Keys`])
//!
//! | key | type | written by | role |
//! |---|---|---|---|
//! | `{p}leader` | string `<node>:<term>`, `PX` lease | the leader | who orders the timeline ([`lease`]) |
//! | `{p}term` | integer | a node acquiring the lease | the fencing epoch: strictly grows with each leader; every stream append checks it in Redis ([`fence`]) |
//! | `{p}timeline` | stream, `MAXLEN ~` ring | the leader | committed batches, encoded once ([`stream_log`]); each carries its position in `{p}inputs` |
//! | `{p}inputs` | stream, `MAXLEN ~` 10,000 | any node | every viewer's push, read by whichever node leads ([`inputs`]) |
//! | `{p}push:<node>:<nonce>:<seq>` | string, `PX` 30 s | any node | one push's once-only key (a retried append stores it once) |
//! | `{p}node:<id>` | hash, `PEXPIRE` | each node, every ~500 ms | its figures ([`registry`]) |
//! | `{p}nodes` | sorted set, score = expiry (ms) | each node | index of live nodes ([`registry`]) |
//! | `{p}ban:<addr>` | string, `PX` = ban length | the node that banned | cluster-wide bans ([`bans`]) |
//!
//! One Redis, not Redis Cluster: the lease scripts touch two keys at once,
//! which Redis Cluster would only allow under one hash tag. That Redis may
//! be a primary with replicas under Redis Sentinel
//! (`--cluster redis+sentinel://…`): the [`redis_link`] follows the primary
//! across failovers.

pub mod bans;
pub mod deps;
pub mod fence;
pub mod follow;
pub mod inputs;
pub mod keys;
pub mod lease;
pub mod node;
pub mod redis_link;
pub mod registry;
pub mod stream_log;
pub mod tunnel;
pub mod tunnel_log;

use std::time::Duration;

pub use keys::Keys;
pub use node::Node;
pub use redis_link::RedisLink;

/// What a node needs to join a cluster (derived from the flags in
/// `config::derive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis to share (`redis://HOST:PORT`, or
    /// `redis+sentinel://HOST:PORT,.../MASTER`: see [`redis_link::Target`]).
    pub url: String,
    /// Prefix of every key.
    pub prefix: String,
    /// This node's name.
    pub node_id: String,
    /// How long the leader's lease lasts without a renewal.
    pub lease: Duration,
}

/// Parses `--cluster`: a `redis://` (or `redis+unix://`, `unix://`) URL the
/// `redis` crate accepts, or `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`
/// (the primary Redis Sentinels name, see [`redis_link`]); returned
/// unchanged.
pub fn parse_redis_url(url: &str) -> Result<String, String> {
    redis_link::Target::parse(url).map(|_| url.to_owned())
}

/// 16 random hex digits: a node name unlikely to repeat across restarts.
pub fn random_node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Checks a node name: 1 to 64 of ASCII letters, digits, `-`, `_`, `.`.
/// Never `:`, which separates the node from the term in `{p}leader`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if (1..=64).contains(&id.len()) && id.chars().all(ok) {
        Ok(())
    } else {
        Err(format!(
            "--node-id {id:?}: use 1 to 64 of ASCII letters, digits, '-', '_', '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert!(check_node_id(&random_node_id()).is_ok());
        assert!(check_node_id("node-1.eu_west").is_ok());
        for bad in ["", "a:b", "a b", "é", &"x".repeat(65)] {
            assert!(check_node_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
