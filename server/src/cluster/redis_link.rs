//! A node's link to Redis: one shared, self-healing connection for short
//! commands, and dedicated connections for blocking reads; either to one
//! Redis (`redis://HOST:PORT`) or to whichever Redis a set of Redis
//! Sentinels names as the primary (`redis+sentinel://`).
//!
//! Why two kinds: the `redis` crate's [`ConnectionManager`] multiplexes every
//! command of the node over one TCP connection and reconnects by itself
//! after a Redis restart, which is what leases, heartbeats and bans want.
//! But Redis answers a connection's commands in order, so one
//! `XREAD BLOCK` on it would hold up every lease renewal behind it for the
//! whole block time. Blocking reads therefore get their own connection
//! ([`RedisLink::dedicated`]), whose response timeout outlasts the block, and
//! whose owner reconnects it (and checks what it missed) after an error.
//!
//! # Sentinel
//!
//! With `redis+sentinel://S1:P1,S2:P2,.../MASTER` the node asks the
//! Sentinels (the `redis` crate's [`Sentinel`], which also checks with
//! `ROLE` that the server named is a primary) for the primary of the
//! service `MASTER`, connects to it, and asks again every
//! [`RESOLVE_PERIOD`]. When the answer changes (a failover promoted a
//! replica), it connects to the new primary and swaps the shared
//! connection: every later command, and every dedicated connection opened
//! afterwards, goes to the new primary. Readers whose connection broke with
//! the old primary reconnect there and resume after their last ID (or
//! notice that ID is gone). The lease and the fencing term survive the
//! promotion as [`lease`](super::lease) explains: a replica may have lost
//! the last writes, but never the term of an entry any node read.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, RedisResult};
use tracing::{debug, warn};

use super::Keys;

/// How long a short command may take before it fails (and, for the lease,
/// counts as a failed renewal).
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a node behind Sentinels asks them which Redis is the primary:
/// after a promotion, the longest a node keeps writing to the old one.
pub const RESOLVE_PERIOD: Duration = Duration::from_millis(250);

/// How long one question to the Sentinels (and the `ROLE` check of the
/// primary they name) may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait between the manager's reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Where the cluster's Redis is: the `--cluster` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis: a URL the `redis` crate accepts (`redis://HOST:PORT`,
    /// `redis+unix://`, `unix://`).
    Direct(String),
    /// The primary of service `master` as Redis Sentinels name it
    /// (`redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`).
    Sentinel {
        /// The Sentinels' addresses, `HOST:PORT` (1 or more; 3 or more
        /// for a quorum that survives one's loss).
        sentinels: Vec<String>,
        /// The service (master) name the Sentinels monitor.
        master: String,
    },
}

/// The scheme of a Sentinel-resolved `--cluster` URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

impl Target {
    /// Parses a `--cluster` URL. Errors say what is expected.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Client::open(url)
                .map(|_| Self::Direct(url.to_owned()))
                .map_err(|e| {
                    format!(
                        "not a Redis URL ({e}); expected redis://HOST:PORT or \
                         {SENTINEL_SCHEME}HOST:PORT[,HOST:PORT...]/MASTER"
                    )
                });
        };
        let usage =
            || format!("{url:?}: expected {SENTINEL_SCHEME}HOST:PORT[,HOST:PORT...]/MASTER");
        let (hosts, master) = rest.split_once('/').ok_or_else(usage)?;
        let ok_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if master.is_empty() || master.len() > 64 || !master.chars().all(ok_name) {
            return Err(usage());
        }
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host.rsplit_once(':').ok_or_else(usage)?;
            if name.is_empty() || port.parse::<u16>().is_err() {
                return Err(usage());
            }
            Client::open(format!("redis://{host}")).map_err(|e| format!("{host:?}: {e}"))?;
            sentinels.push(host.to_owned());
        }
        if sentinels.is_empty() || sentinels.len() > 16 {
            return Err(usage());
        }
        Ok(Self::Sentinel {
            sentinels,
            master: master.to_owned(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Direct(url) => f.write_str(url),
            Self::Sentinel { sentinels, master } => {
                write!(f, "{SENTINEL_SCHEME}{}/{master}", sentinels.join(","))
            }
        }
    }
}

/// The Redis commands go to now.
struct Current {
    client: Client,
    conn: ConnectionManager,
}

struct Shared {
    current: RwLock<Current>,
    keys: Keys,
}

impl Shared {
    fn current(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A node's link to the cluster's Redis: the client, the shared connection
/// and the key names. Cheap to clone (every clone shares the connection,
/// and follows the primary when it moves).
#[derive(Clone)]
pub struct RedisLink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("redis", &self.primary())
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

/// How many times a manager behind Sentinels retries connecting before the
/// commands waiting on it fail. A command in flight when the primary dies
/// waits for the manager's reconnection (the crate's default of 6 retries
/// is about 3.5 s of backoff against a dead port), and it was taken from
/// the old manager: it must fail quickly, so that its retry takes the new
/// primary's. The next command tries to reconnect again anyway.
const SENTINEL_RECONNECT_RETRIES: usize = 1;

/// The shared, reconnecting connection to `client`'s Redis; `retries`:
/// reconnection attempts per failure (`None`: the crate's default).
async fn manager(client: &Client, retries: Option<usize>) -> RedisResult<ConnectionManager> {
    let mut config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_max_delay(MAX_RECONNECT_DELAY);
    if let Some(retries) = retries {
        config = config.set_number_of_retries(retries);
    }
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// Asks the Sentinels for the primary of `master` (checked with `ROLE`).
async fn resolve(sentinel: &mut Sentinel, master: &str) -> RedisResult<Client> {
    tokio::time::timeout(RESOLVE_TIMEOUT, sentinel.async_master_for(master, None))
        .await
        .map_err(|_| {
            RedisError::from((
                ErrorKind::Io,
                "the Sentinels did not name a primary in time",
            ))
        })?
}

impl RedisLink {
    /// Connects to `url` (see [`Target::parse`]) with keys under `prefix`.
    ///
    /// Errors: the URL does not parse, or Redis (or, behind Sentinels, any
    /// primary) cannot be reached now (a node refuses to start rather than
    /// serve a cluster it is not in). Later outages are survived: the
    /// connection reconnects by itself, and behind Sentinels follows the
    /// primary to wherever a failover moves it.
    pub async fn connect(url: &str, prefix: &str) -> RedisResult<Self> {
        let target = Target::parse(url)
            .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "--cluster", e)))?;
        match target {
            Target::Direct(url) => {
                let client = Client::open(url)?;
                let conn = manager(&client, None).await?;
                Ok(Self::new(client, conn, prefix))
            }
            Target::Sentinel { sentinels, master } => {
                let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
                let mut sentinel = Sentinel::build(urls)?;
                let client = resolve(&mut sentinel, &master).await?;
                let conn = manager(&client, Some(SENTINEL_RECONNECT_RETRIES)).await?;
                let link = Self::new(client, conn, prefix);
                tokio::spawn(follow_primary(
                    Arc::downgrade(&link.shared),
                    sentinel,
                    master,
                ));
                Ok(link)
            }
        }
    }

    fn new(client: Client, conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Current { client, conn }),
                keys: Keys::new(prefix),
            }),
        }
    }

    /// The address commands go to now (`HOST:PORT`).
    pub fn primary(&self) -> String {
        self.shared
            .current()
            .client
            .get_connection_info()
            .addr()
            .to_string()
    }

    /// The shared connection, for short commands (a clone: cheap, same
    /// socket). Each command fails after [`COMMAND_TIMEOUT`].
    pub fn conn(&self) -> ConnectionManager {
        self.shared.current().conn.clone()
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// A new connection of its own, for one blocking reader: `block` is the
    /// longest `BLOCK` it will send, and its replies may take that long
    /// plus [`COMMAND_TIMEOUT`]. It does not reconnect: after an error the
    /// owner drops it and asks for another (which goes to the primary of
    /// that moment).
    pub async fn dedicated(&self, block: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(block + COMMAND_TIMEOUT));
        let client = self.shared.current().client.clone();
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Behind Sentinels: every [`RESOLVE_PERIOD`], asks which Redis is the
/// primary, and moves the link there when it changed. Ends when the last
/// [`RedisLink`] is dropped.
async fn follow_primary(shared: Weak<Shared>, mut sentinel: Sentinel, master: String) {
    let mut tick = tokio::time::interval(RESOLVE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.strong_count() == 0 {
            return;
        }
        let client = match resolve(&mut sentinel, &master).await {
            Ok(client) => client,
            Err(e) => {
                debug!(
                    master,
                    "no primary from the Sentinels (keeping the current one): {e}"
                );
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let to = client.get_connection_info().addr().to_string();
        let from = shared
            .current()
            .client
            .get_connection_info()
            .addr()
            .to_string();
        if to == from {
            continue;
        }
        match manager(&client, Some(SENTINEL_RECONNECT_RETRIES)).await {
            Ok(conn) => {
                *shared
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Current { client, conn };
                warn!(master, %from, %to, "the Redis primary moved (Sentinel failover): following it");
            }
            Err(e) => warn!(master, %to, "the new Redis primary is unreachable (retrying): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379"),
            Ok(Target::Direct("redis://127.0.0.1:6379".into()))
        );
        let t = Target::parse("redis+sentinel://127.0.0.1:26379,[::1]:26380,s3:26381/donut")
            .expect("a Sentinel URL");
        assert_eq!(
            t,
            Target::Sentinel {
                sentinels: vec![
                    "127.0.0.1:26379".into(),
                    "[::1]:26380".into(),
                    "s3:26381".into()
                ],
                master: "donut".into(),
            }
        );
        assert_eq!(
            t.to_string(),
            "redis+sentinel://127.0.0.1:26379,[::1]:26380,s3:26381/donut"
        );
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel:///donut",
            "redis+sentinel://127.0.0.1/donut",
            "redis+sentinel://127.0.0.1:99999/donut",
            "redis+sentinel://127.0.0.1:26379,/donut",
            "redis+sentinel://127.0.0.1:26379/a b",
            "http://127.0.0.1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
