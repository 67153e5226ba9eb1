//! Cluster-wide bans: a cheater banned by one node is refused by all.
//!
//! A ban is a key `{p}ban:<addr>` whose expiry is the ban's end; `<addr>`
//! is the [`AddrKey`]'s `Display` form (the address, or for IPv6 under the
//! `/64` scope the prefix, e.g. `2001:db8::/64`), so every node keys the
//! same client the same way as long as they share `--ban-scope`. Redis
//! forgets a ban by itself when it ends: no sweeping.
//!
//! Strikes and the growing ban length stay in each node's
//! [`Reputation`](crate::trust::reputation::Reputation) (they need the
//! node's own view of the address); only the verdict is shared. A ban
//! never shortens one already in force (`PEXPIRE … GT`), so two nodes
//! banning the same address for different lengths keep the longer.

use std::time::Duration;

use redis::RedisResult;

use super::RedisLink;
use crate::trust::reputation::AddrKey;

/// Bans `addr` on every node for `length` (at least 1 ms), keeping a
/// longer ban already in force.
pub async fn ban(link: &RedisLink, addr: &AddrKey, length: Duration) -> RedisResult<()> {
    let key = link.keys().ban(addr);
    let ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(ms)
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(ms)
        .arg("GT")
        .exec_async(&mut link.conn())
        .await
}

/// How much longer `addr` is banned, or `None` if it is not.
pub async fn banned(link: &RedisLink, addr: &AddrKey) -> RedisResult<Option<Duration>> {
    let ms: i64 = redis::cmd("PTTL")
        .arg(link.keys().ban(addr))
        .query_async(&mut link.conn())
        .await?;
    Ok(remaining(ms))
}

/// Reads a `PTTL` answer: -2 (no key) or 0 (ending now) is no ban; -1 (a
/// key without expiry, which no node writes) counts as banned for good.
pub fn remaining(pttl_ms: i64) -> Option<Duration> {
    match pttl_ms {
        -1 => Some(Duration::MAX),
        ms => u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis),
    }
}

/// Lifts a ban on `addr` at once (an operator's pardon).
pub async fn pardon(link: &RedisLink, addr: &AddrKey) -> RedisResult<()> {
    redis::cmd("DEL")
        .arg(link.keys().ban(addr))
        .exec_async(&mut link.conn())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pttl_answers_read_as_ban_lengths() {
        assert_eq!(remaining(-2), None);
        assert_eq!(remaining(-1), Some(Duration::MAX));
        assert_eq!(remaining(0), None);
        assert_eq!(remaining(1500), Some(Duration::from_millis(1500)));
        assert_eq!(remaining(-7), None);
    }
}
