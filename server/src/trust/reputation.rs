//! Reputation: what the server remembers about an address.
//!
//! Judging connections is useless on the open web: a cheater that reconnects
//! after every forged batch would start clean each time. So strikes, the
//! trust that lowers the `sample` rate, bans and missed tasks belong to an
//! [`AddrKey`], the client's address under the configured [`BanScope`]:
//! the exact address, or for IPv6 its /64 (one subscriber's whole prefix,
//! which a single host can otherwise walk through at will).
//!
//! Rules:
//! - a strike resets the address's trust; `max_strikes` strikes ban it;
//! - each ban is longer than the last: `ban × 2^(bans so far)`, at most
//!   `max_ban`; a ban refuses new *worker* connections only (a viewer is
//!   harmless, and behind a NAT the cheater's neighbours may still watch);
//! - trust is a count of consecutive clean batches, capped (it never grows
//!   without bound, so no history buys a lower rate than the floor);
//! - missed tasks (expired without any answer) count in a row per address
//!   and reset when it delivers; a new connection starts with the address's
//!   count, so a zombie that reconnects is still on probation.
//!
//! Behind a NAT (a campus, a carrier-grade NAT, a household) every client
//! shares one key: one cheater gets all of them refused as workers. That is
//! the price of not being fooled by reconnects; `--trusted-proxies` at least
//! keeps a reverse proxy from merging *everyone*.
//!
//! Records are forgotten once quiet for [`FORGET_AFTER`] (or four times their
//! last ban, if longer), so the table stays bounded by recent offenders.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::ValueEnum;

use super::verifier::Trust;

/// How much of an address one record covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum BanScope {
    /// The exact address, IPv4 or IPv6.
    #[default]
    Address,
    /// IPv4 exact; IPv6 by its /64 prefix.
    #[value(name = "ipv6-64")]
    Ipv6Slash64,
}

/// An address as reputation sees it (see [`BanScope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of `ip` under `scope`. IPv4-mapped IPv6 addresses count as
    /// their IPv4 address.
    pub fn new(ip: IpAddr, scope: BanScope) -> Self {
        let ip = ip.to_canonical();
        match (ip, scope) {
            (IpAddr::V6(v6), BanScope::Ipv6Slash64) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(bits.into()))
            }
            _ => Self(ip),
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) if u128::from(v6) & ((1u128 << 64) - 1) == 0 => write!(f, "{v6}/64"),
            ip => write!(f, "{ip}"),
        }
    }
}

/// Tunables of [`Reputation`].
#[derive(Debug, Clone)]
pub struct ReputationConfig {
    /// How addresses are keyed.
    pub scope: BanScope,
    /// Strikes that ban an address.
    pub max_strikes: u32,
    /// The first ban; 0 disables bans.
    pub ban: Duration,
    /// The longest ban.
    pub max_ban: Duration,
    /// Clean batches at which trust stops growing.
    pub max_trust: u32,
}

/// What a strike led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strike {
    /// Strikes the address now has (0 after a ban, which clears them).
    pub strikes: u32,
    /// The ban it earned, if any.
    pub banned_for: Option<Duration>,
}

/// Records quiet for this long are forgotten (unless a ban is longer).
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Prune the table when it holds more records than this (and then only
/// once it has doubled since the last prune, so pruning stays amortised).
const PRUNE_ABOVE: usize = 4096;

/// Most records kept: past it, the oldest ones not banned now are evicted
/// (a flood of fresh addresses cannot grow the table without bound).
const MAX_RECORDS: usize = 1 << 18;

#[derive(Debug, Clone, Copy)]
struct Record {
    strikes: u32,
    clean_batches: u32,
    /// Bans served so far (how long the next one is).
    bans: u32,
    banned_until: Option<Instant>,
    last_ban: Duration,
    misses: u32,
    last_event: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            strikes: 0,
            clean_batches: 0,
            bans: 0,
            banned_until: None,
            last_ban: Duration::ZERO,
            misses: 0,
            last_event: now,
        }
    }

    fn forgettable(&self, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last_event);
        quiet > FORGET_AFTER.max(self.last_ban.saturating_mul(4))
            && self.banned_until.is_none_or(|until| until <= now)
    }
}

/// The table of records by address. Cheap to share (`Arc`), one short lock.
#[derive(Debug)]
pub struct Reputation {
    cfg: ReputationConfig,
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    map: HashMap<AddrKey, Record>,
    /// Size at which the next prune runs.
    prune_at: usize,
}

impl Records {
    fn prune(&mut self, now: Instant) {
        self.map.retain(|_, r| !r.forgettable(now));
        if self.map.len() > MAX_RECORDS {
            let mut ages: Vec<(Instant, AddrKey)> = self
                .map
                .iter()
                .filter(|(_, r)| r.banned_until.is_none_or(|u| u <= now))
                .map(|(k, r)| (r.last_event, *k))
                .collect();
            ages.sort_unstable_by_key(|&(t, _)| t);
            let excess = self.map.len() - MAX_RECORDS * 3 / 4;
            for (_, k) in ages.into_iter().take(excess) {
                self.map.remove(&k);
            }
        }
        self.prune_at = (self.map.len() * 2).max(PRUNE_ABOVE);
    }
}

impl Reputation {
    /// An empty table.
    pub fn new(cfg: ReputationConfig) -> Self {
        Self {
            cfg,
            records: Mutex::new(Records {
                map: HashMap::new(),
                prune_at: PRUNE_ABOVE,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // Every update is a few field writes that cannot panic half way.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key of `ip` under the configured scope.
    pub fn key(&self, ip: IpAddr) -> AddrKey {
        AddrKey::new(ip, self.cfg.scope)
    }

    fn with<T>(&self, key: AddrKey, now: Instant, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut records = self.lock();
        if records.map.len() >= records.prune_at && !records.map.contains_key(&key) {
            records.prune(now);
        }
        let record = records.map.entry(key).or_insert_with(|| Record::new(now));
        f(record)
    }

    /// How long `key` is still banned, if it is.
    pub fn banned(&self, key: AddrKey, now: Instant) -> Option<Duration> {
        let records = self.lock();
        let until = records.map.get(&key)?.banned_until?;
        (until > now).then(|| until - now)
    }

    /// The address's record for the `sample` rate.
    pub fn trust(&self, key: AddrKey) -> Trust {
        let records = self.lock();
        Trust {
            clean_batches: records.map.get(&key).map_or(0, |r| r.clean_batches),
        }
    }

    /// A batch from `key` passed its check.
    pub fn clean(&self, key: AddrKey, now: Instant) {
        let cap = self.cfg.max_trust;
        self.with(key, now, |r| {
            r.clean_batches = r.clean_batches.saturating_add(1).min(cap);
        });
    }

    /// Strikes that cut an address off ([`ReputationConfig::max_strikes`],
    /// at least 1).
    pub fn max_strikes(&self) -> u32 {
        self.cfg.max_strikes.max(1)
    }

    /// A violation by `key`: trust is gone, and at `max_strikes` the
    /// address is banned (longer each time).
    pub fn strike(&self, key: AddrKey, now: Instant) -> Strike {
        let max_strikes = self.max_strikes();
        self.with(key, now, |r| {
            r.last_event = now;
            r.clean_batches = 0;
            r.strikes += 1;
            if r.strikes < max_strikes {
                return Strike {
                    strikes: r.strikes,
                    banned_for: None,
                };
            }
            let strikes = r.strikes;
            Strike {
                strikes,
                banned_for: self.ban_record(r, now),
            }
        })
    }

    /// Bans `key` now, whatever its strikes (a flood).
    pub fn ban(&self, key: AddrKey, now: Instant) -> Option<Duration> {
        self.with(key, now, |r| {
            r.last_event = now;
            r.clean_batches = 0;
            self.ban_record(r, now)
        })
    }

    fn ban_record(&self, r: &mut Record, now: Instant) -> Option<Duration> {
        r.strikes = 0;
        if self.cfg.ban.is_zero() {
            return None;
        }
        let factor = 1u32.checked_shl(r.bans).unwrap_or(u32::MAX);
        let ban = self.cfg.ban.saturating_mul(factor).min(self.cfg.max_ban);
        r.bans = r.bans.saturating_add(1);
        r.banned_until = now.checked_add(ban);
        r.last_ban = ban;
        Some(ban)
    }

    /// A task given to `key` expired without an answer; returns the
    /// address's misses in a row.
    pub fn missed(&self, key: AddrKey, now: Instant) -> u32 {
        self.with(key, now, |r| {
            r.last_event = now;
            r.misses = r.misses.saturating_add(1);
            r.misses
        })
    }

    /// `key` answered a task: its misses are forgiven.
    pub fn delivered(&self, key: AddrKey) {
        if let Some(r) = self.lock().map.get_mut(&key) {
            r.misses = 0;
        }
    }

    /// The address's misses in a row.
    pub fn misses(&self, key: AddrKey) -> u32 {
        self.lock().map.get(&key).map_or(0, |r| r.misses)
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep() -> Reputation {
        Reputation::new(ReputationConfig {
            scope: BanScope::Address,
            max_strikes: 3,
            ban: Duration::from_secs(60),
            max_ban: Duration::from_secs(300),
            max_trust: 20,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn strikes_and_trust_survive_reconnects_and_bans_escalate() {
        let r = rep();
        let now = Instant::now();
        let k = r.key(ip("10.0.0.1"));
        for _ in 0..50 {
            r.clean(k, now);
        }
        assert_eq!(r.trust(k).clean_batches, 20, "trust is capped");
        assert_eq!(r.strike(k, now).banned_for, None);
        assert_eq!(r.trust(k).clean_batches, 0, "a strike resets trust");
        // Same address, "new connection": the strike is still there.
        assert_eq!(r.strike(k, now).strikes, 2);
        let first = r.strike(k, now).banned_for;
        assert_eq!(first, Some(Duration::from_secs(60)));
        assert!(r.banned(k, now + Duration::from_secs(59)).is_some());
        assert!(r.banned(k, now + Duration::from_secs(61)).is_none());
        let later = now + Duration::from_secs(61);
        r.strike(k, later);
        r.strike(k, later);
        assert_eq!(
            r.strike(k, later).banned_for,
            Some(Duration::from_secs(120))
        );
        let later = later + Duration::from_secs(121);
        assert_eq!(r.ban(k, later), Some(Duration::from_secs(240)));
        let later = later + Duration::from_secs(241);
        assert_eq!(r.ban(k, later), Some(Duration::from_secs(300)), "capped");
        assert!(r.banned(r.key(ip("10.0.0.2")), later).is_none());
    }

    #[test]
    fn ipv6_scope_covers_the_slash_64() {
        let exact = AddrKey::new(ip("2001:db8::1"), BanScope::Address);
        assert_ne!(exact, AddrKey::new(ip("2001:db8::2"), BanScope::Address));
        let a = AddrKey::new(ip("2001:db8:0:7::1"), BanScope::Ipv6Slash64);
        let b = AddrKey::new(ip("2001:db8:0:7:ffff::9"), BanScope::Ipv6Slash64);
        let c = AddrKey::new(ip("2001:db8:0:8::1"), BanScope::Ipv6Slash64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:0:7::/64");
        // IPv4 stays exact, mapped or not.
        let v4 = AddrKey::new(ip("192.0.2.7"), BanScope::Ipv6Slash64);
        assert_eq!(
            v4,
            AddrKey::new(ip("::ffff:192.0.2.7"), BanScope::Ipv6Slash64)
        );
        assert_ne!(v4, AddrKey::new(ip("192.0.2.8"), BanScope::Ipv6Slash64));
    }

    #[test]
    fn misses_count_in_a_row_until_delivery() {
        let r = rep();
        let now = Instant::now();
        let k = r.key(ip("10.0.0.9"));
        assert_eq!(r.missed(k, now), 1);
        assert_eq!(r.missed(k, now), 2);
        assert_eq!(r.misses(k), 2);
        r.delivered(k);
        assert_eq!(r.misses(k), 0);
    }

    #[test]
    fn quiet_records_are_forgotten_when_the_table_grows() {
        let r = rep();
        let t0 = Instant::now();
        for n in 0..=PRUNE_ABOVE as u32 {
            r.clean(r.key(IpAddr::V4(n.into())), t0);
        }
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        for n in 0..=2 * PRUNE_ABOVE as u32 {
            r.clean(r.key(IpAddr::V4((n + 1_000_000).into())), later);
        }
        // The quiet ones went at the next (amortised) prune.
        assert_eq!(r.trust(r.key(IpAddr::V4(0.into()))).clean_batches, 0);
        assert!(r.len() <= 2 * PRUNE_ABOVE + 1, "{}", r.len());
    }

    #[test]
    fn bans_can_be_disabled() {
        let r = Reputation::new(ReputationConfig {
            ban: Duration::ZERO,
            ..rep().cfg
        });
        let k = r.key(ip("10.0.0.3"));
        let now = Instant::now();
        r.strike(k, now);
        r.strike(k, now);
        assert_eq!(r.strike(k, now).banned_for, None);
        assert!(r.banned(k, now).is_none());
    }
}
