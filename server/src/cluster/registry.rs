//! The node registry: which nodes are alive, and their figures, for the
//! cluster-wide telemetry (workers, viewers and fleet frames/s summed).
//!
//! Each node writes its figures every [`BEAT_PERIOD`] into a hash
//! `{p}node:<id>` that expires after [`BEAT_TTL`] (four missed beats), and
//! its expiry time into the sorted set `{p}nodes`. Readers first drop the
//! set's members whose expiry has passed (`ZREMRANGEBYSCORE`), then read
//! the hashes of the rest: no `SCAN` over the keyspace, and a node that
//! died (no more beats) leaves the totals within `BEAT_TTL`.
//!
//! Times are Redis's own clock (`TIME` inside the scripts), so nodes whose
//! clocks disagree still agree on who is alive.

use std::collections::HashMap;
use std::time::Duration;

use redis::{RedisResult, Script};
use tokio::task::JoinHandle;

use super::RedisLink;
use super::lease::Role;

/// How often a node writes its heartbeat.
pub const BEAT_PERIOD: Duration = Duration::from_millis(500);

/// How long a heartbeat counts: four missed beats.
pub const BEAT_TTL: Duration = Duration::from_millis(2000);

/// What one node reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NodeFigures {
    /// Its role in the cluster.
    pub role: Role,
    /// Worker connections on the node.
    pub workers: u64,
    /// Viewer connections on the node.
    pub viewers: u64,
    /// Frames a second its workers render (a recent rate).
    pub fleet_fps: f64,
    /// Frames its workers delivered since it started.
    pub frames: u64,
}

/// One live node as read back from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// The node's id.
    pub id: String,
    /// What it last reported.
    pub figures: NodeFigures,
    /// When it last reported: Redis time, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// The cluster's figures: the sum over live nodes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClusterTotals {
    /// Live nodes.
    pub nodes: u64,
    /// Worker connections, all nodes.
    pub workers: u64,
    /// Viewer connections, all nodes.
    pub viewers: u64,
    /// Frames a second rendered, all nodes.
    pub fleet_fps: f64,
    /// Frames delivered, all nodes.
    pub frames: u64,
}

impl ClusterTotals {
    /// Sums `nodes`.
    pub fn sum(nodes: &[NodeStatus]) -> Self {
        nodes.iter().fold(Self::default(), |t, n| Self {
            nodes: t.nodes + 1,
            workers: t.workers + n.figures.workers,
            viewers: t.viewers + n.figures.viewers,
            fleet_fps: t.fleet_fps + n.figures.fleet_fps,
            frames: t.frames + n.figures.frames,
        })
    }
}

/// `HSET` the figures and `updated`, `PEXPIRE` the hash, `ZADD` the expiry.
const BEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'updated', string.format('%d', now), unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return now
";

/// Drops expired members of the node set and returns the others.
const LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Writes one heartbeat of node `id`, valid for `ttl`.
pub async fn beat(
    link: &RedisLink,
    id: &str,
    figures: &NodeFigures,
    ttl: Duration,
) -> RedisResult<()> {
    let (role, term) = match figures.role {
        Role::Follower => ("follower", 0),
        Role::Leader { term } => ("leader", term),
    };
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let _: i64 = Script::new(BEAT)
        .key(link.keys().node(id))
        .key(link.keys().nodes())
        .arg(id)
        .arg(ttl_ms)
        .arg(("role", role, "term", term))
        .arg(("workers", figures.workers, "viewers", figures.viewers))
        .arg(("fleet_fps", figures.fleet_fps, "frames", figures.frames))
        .invoke_async(&mut link.conn())
        .await?;
    Ok(())
}

/// Removes node `id` from the registry at once (a clean shutdown).
pub async fn leave(link: &RedisLink, id: &str) -> RedisResult<()> {
    redis::pipe()
        .atomic()
        .del(link.keys().node(id))
        .zrem(link.keys().nodes(), id)
        .exec_async(&mut link.conn())
        .await
}

/// The live nodes and their last figures, by id. A node whose hash is
/// gone or unreadable is left out.
pub async fn live_nodes(link: &RedisLink) -> RedisResult<Vec<NodeStatus>> {
    let mut conn = link.conn();
    let ids: Vec<String> = Script::new(LIVE)
        .key(link.keys().nodes())
        .invoke_async(&mut conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hgetall(link.keys().node(id));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
    Ok(ids
        .into_iter()
        .zip(hashes)
        .filter_map(|(id, hash)| parse_status(id, &hash))
        .collect())
}

/// The sum of [`live_nodes`].
pub async fn cluster_totals(link: &RedisLink) -> RedisResult<ClusterTotals> {
    Ok(ClusterTotals::sum(&live_nodes(link).await?))
}

/// Reads a node hash; `None` if a field is missing or garbled.
pub fn parse_status(id: String, hash: &HashMap<String, String>) -> Option<NodeStatus> {
    let num = |field: &str| hash.get(field)?.parse::<u64>().ok();
    let role = match (hash.get("role")?.as_str(), num("term")?) {
        ("leader", term) => Role::Leader { term },
        ("follower", _) => Role::Follower,
        _ => return None,
    };
    let fleet_fps = hash.get("fleet_fps")?.parse::<f64>().ok()?;
    let figures = NodeFigures {
        role,
        workers: num("workers")?,
        viewers: num("viewers")?,
        fleet_fps: if fleet_fps.is_finite() {
            fleet_fps
        } else {
            0.0
        },
        frames: num("frames")?,
    };
    let updated_ms = num("updated")?;
    Some(NodeStatus {
        id,
        figures,
        updated_ms,
    })
}

/// A node's heartbeat, written every [`BEAT_PERIOD`] until dropped (then
/// the node drops out of the totals within [`BEAT_TTL`], as if it had died;
/// call [`leave`] to go at once).
#[derive(Debug)]
pub struct Heartbeat {
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating for node `id` with the figures `figures` gives each
    /// time. A failed write (Redis away) is retried at the next beat.
    pub fn start<F>(link: RedisLink, id: String, mut figures: F) -> Self
    where
        F: FnMut() -> NodeFigures + Send + 'static,
    {
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(BEAT_PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = beat(&link, &id, &figures(), BEAT_TTL).await {
                    tracing::debug!("cluster heartbeat of {id} failed: {e}");
                }
            }
        });
        Self { task }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const FULL: &[(&str, &str)] = &[
        ("role", "leader"),
        ("term", "4"),
        ("workers", "3"),
        ("viewers", "10"),
        ("fleet_fps", "61.5"),
        ("frames", "900"),
        ("updated", "1700000000000"),
    ];

    #[test]
    fn a_node_hash_reads_back_and_sums() {
        let a = parse_status("a".into(), &hash(FULL)).expect("a full hash parses");
        assert_eq!(a.figures.role, Role::Leader { term: 4 });
        let mut b = a.clone();
        b.figures.role = Role::Follower;
        let t = ClusterTotals::sum(&[a, b]);
        assert_eq!((t.nodes, t.workers, t.viewers, t.frames), (2, 6, 20, 1800));
        assert!((t.fleet_fps - 123.0).abs() < 1e-9);
    }

    #[test]
    fn a_garbled_or_partial_hash_is_left_out() {
        for drop in 0..FULL.len() {
            let partial: Vec<_> = FULL
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != drop)
                .map(|(_, kv)| *kv)
                .collect();
            assert_eq!(parse_status("x".into(), &hash(&partial)), None);
        }
        let mut bad = hash(FULL);
        bad.insert("workers".into(), "-1".into());
        assert_eq!(parse_status("x".into(), &bad), None);
        bad = hash(FULL);
        bad.insert("role".into(), "king".into());
        assert_eq!(parse_status("x".into(), &bad), None);
    }
}
