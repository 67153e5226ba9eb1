//! A node's link to Redis: one shared, self-healing connection for short
//! commands, and dedicated connections for blocking reads.
//!
//! Why two kinds: the `redis` crate's [`ConnectionManager`] multiplexes every
//! command of the node over one TCP connection and reconnects by itself
//! after a Redis restart, which is what leases, heartbeats and bans want.
//! But Redis answers a connection's commands in order, so one
//! `XREAD BLOCK` on it would hold up every lease renewal behind it for the
//! whole block time. Blocking reads therefore get their own connection
//! ([`Link::dedicated`]), whose response timeout outlasts the block, and
//! whose owner reconnects it (and checks what it missed) after an error.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisResult};

use super::Keys;

/// How long a short command may take before it fails (and, for the lease,
/// counts as a failed renewal).
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest wait between the manager's reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A node's link to one Redis: the client, the shared connection and the
/// key names. Cheap to clone (every clone shares the connection).
#[derive(Clone)]
pub struct Link {
    client: Client,
    conn: ConnectionManager,
    keys: Keys,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("redis", &self.client.get_connection_info().addr())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Connects to `url` (`redis://HOST:PORT`) with keys under `prefix`.
    ///
    /// Errors: the URL does not parse, or Redis cannot be reached now (a
    /// node refuses to start rather than serve a cluster it is not in).
    /// Later outages are survived: the connection reconnects by itself.
    pub async fn connect(url: &str, prefix: &str) -> RedisResult<Self> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            conn,
            keys: Keys::new(prefix),
        })
    }

    /// The shared connection, for short commands (a clone: cheap, same
    /// socket). Each command fails after [`COMMAND_TIMEOUT`].
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A new connection of its own, for one blocking reader: `block` is the
    /// longest `BLOCK` it will send, and its replies may take that long
    /// plus [`COMMAND_TIMEOUT`]. It does not reconnect: after an error the
    /// owner drops it and asks for another.
    pub async fn dedicated(&self, block: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(block + COMMAND_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}
