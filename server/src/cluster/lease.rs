//! The leader lease: which node orders the timeline, and since when.
//!
//! One key, `{p}leader = <node>:<term>` with a `PX` expiry of `ttl`. A node
//! that finds it absent takes it; the leader extends it every `ttl / 3`
//! with a compare-and-`PEXPIRE`; if the leader dies the key expires and the
//! next follower poll (every `ttl / 3`) takes it: a dead leader is replaced
//! within about `ttl + ttl / 3`.
//!
//! **The term** (`INCR {p}term`) is the fencing epoch: each acquisition gets
//! a larger one, so anything a deposed leader still writes (tagged with its
//! term) can be told from the new leader's. Acquiring is one Lua script
//! (`GET`, `INCR`, `SET PX`), not `SET NX` with a placeholder then `INCR`:
//! atomic, so the key never holds a value without its term, and no term is
//! burned by a node that loses the race. The script also takes the highest
//! term the node has seen: after Redis lost its data (a restart without
//! persistence resets `{p}term` to nothing) the next term still exceeds
//! every term already written to the timeline. The script itself also
//! reads the term of the timeline's last entry, so a lost counter alone
//! (eviction, `DEL`, a Sentinel promoting a replica that missed the last
//! acquisition) cannot send terms back below any term in the stream.
//!
//! The term is enforced where it matters, in Redis: every append goes
//! through the [`fence`](super::fence) script, which refuses a write whose
//! term no longer holds this key. A node's own belief that it leads (below,
//! on the boot clock [`Instant`], which counts through suspends) only
//! decides whether it tries. Acquiring counts a request once: a node that
//! finds the lease already its own under a term above the highest it knows
//! (an earlier request of its own that timed out, then ran) gets that term
//! back, not a new one.
//!
//! **Stepping down safely**: the lease counts from when the request was
//! *sent* (Redis set the expiry later than that), minus a margin of
//! `ttl / 10` for clock rates. A renewal that fails, or has no answer by
//! then, makes the node a follower at that instant: it never believes it
//! leads past the moment another node could take over. A renewal answered
//! "not yours" deposes it at once.
//!
//! [`LeasePolicy`] is the decision logic alone (times in, steps out, no
//! I/O), unit-tested with a fake clock; [`Lease`] drives it against Redis
//! and publishes the [`Role`] on a `watch` channel for the rest of the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::{RedisResult, Script, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The lease's clock: `CLOCK_BOOTTIME` on Linux, which (unlike
/// `CLOCK_MONOTONIC`, behind `std::time::Instant` and Tokio's) keeps
/// counting while the machine is suspended. A leader whose host slept
/// through its lease must find the lease over when it wakes, not resume
/// believing it still holds it. Elsewhere `CLOCK_MONOTONIC`. The belief
/// only decides whether the node *tries* to lead: Redis's fencing script
/// ([`super::fence`]) decides whether a write lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// Now, on the boot clock.
    pub fn now() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id exists
        // on every kernel this builds for (Linux 2.6.39+ for BOOTTIME).
        let r = unsafe { libc::clock_gettime(CLOCK, &raw mut ts) };
        if r != 0 {
            return Self(Duration::ZERO);
        }
        Self(Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        ))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self - d`, if that is not before the clock's start.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        self.0.checked_sub(d).map(Self)
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

impl std::ops::Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d))
    }
}

impl std::ops::Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

use super::RedisLink;

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// Not the leader: an edge that relays the timeline.
    #[default]
    Follower,
    /// The leader, under fencing epoch `term` (1 or more).
    Leader {
        /// The epoch of this leadership.
        term: u64,
    },
}

/// What an acquire attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is ours under `term`.
    Won {
        /// The new fencing epoch.
        term: u64,
    },
    /// Another node holds it, under `term` (`None` if its value is not
    /// `<node>:<term>`, which no node of ours writes).
    HeldBy {
        /// The holder's term.
        term: Option<u64>,
    },
}

/// The next Redis call the policy wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try to take the lease, with the highest term seen so far.
    Acquire {
        /// The new term must exceed this.
        floor: u64,
    },
    /// Extend our lease under `term`.
    Renew {
        /// Our current term.
        term: u64,
    },
}

/// The lease's decisions, without I/O: the driver asks [`Self::step`] and
/// [`Self::due`], makes the call by [`Self::call_deadline`], and reports the
/// answer (`None` for an error or no answer in time).
#[derive(Debug, Clone)]
pub struct LeasePolicy {
    ttl: Duration,
    role: Role,
    /// Until when we may act as leader (meaningful while leader).
    valid_until: Instant,
    floor: u64,
    due: Instant,
}

impl LeasePolicy {
    /// A follower about to try for a lease of `ttl`.
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Self {
            ttl,
            role: Role::Follower,
            valid_until: now,
            floor: 0,
            due: now,
        }
    }

    /// Time between calls: renewals, and a follower's polls.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// How much of a lease is kept back for clock rates.
    fn margin(&self) -> Duration {
        self.ttl / 10
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The highest term seen (ours or another holder's).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Notes a term seen elsewhere (e.g. in the timeline).
    pub fn observe_term(&mut self, term: u64) {
        self.floor = self.floor.max(term);
    }

    /// When the next call should start.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// What the next call is.
    pub fn step(&self) -> Step {
        match self.role {
            Role::Follower => Step::Acquire { floor: self.floor },
            Role::Leader { term } => Step::Renew { term },
        }
    }

    /// When a call sent at `sent` must be given up: a leader's never
    /// later than its lease.
    pub fn call_deadline(&self, sent: Instant) -> Instant {
        let end = sent + self.period();
        match self.role {
            Role::Follower => end,
            Role::Leader { .. } => end.min(self.valid_until),
        }
    }

    /// Steps down if the lease ran out at `now`.
    pub fn tick(&mut self, now: Instant) {
        if matches!(self.role, Role::Leader { .. }) && now >= self.valid_until {
            self.role = Role::Follower;
            self.due = self.due.min(now);
        }
    }

    /// The answer to an acquire sent at `sent`, received at `now`.
    pub fn on_acquire(&mut self, sent: Instant, now: Instant, reply: Option<Acquired>) {
        match reply {
            Some(Acquired::Won { term }) => {
                self.observe_term(term);
                self.role = Role::Leader { term };
                self.valid_until = sent + self.ttl - self.margin();
                self.due = sent + self.period();
            }
            Some(Acquired::HeldBy { term }) => {
                self.observe_term(term.unwrap_or(0));
                self.due = now + self.period();
            }
            None => self.due = now + self.period(),
        }
        self.tick(now);
    }

    /// The answer to a renewal sent at `sent`, received at `now`:
    /// `Some(true)` extended, `Some(false)` the lease is not ours.
    pub fn on_renew(&mut self, sent: Instant, now: Instant, reply: Option<bool>) {
        match reply {
            Some(true) => {
                self.valid_until = sent + self.ttl - self.margin();
                self.due = sent + self.period();
            }
            Some(false) => {
                self.role = Role::Follower;
                self.due = now;
            }
            // Retry soon, but step down on time if it keeps failing.
            None => self.due = (now + self.period() / 4).min(self.valid_until),
        }
        self.tick(now);
    }
}

/// `GET` leader; if another node's, return it. If ours under a term above
/// the floor (the highest term this node knows), a request of ours that
/// timed out ran after all: return that term (and extend it), so requests
/// queued behind a frozen Redis count once, not once each. Else `INCR`
/// term (above the floor) and `SET` leader `<node>:<term> PX ttl`; return
/// the term. A term is one unbroken holding of the lease by one node: a
/// node that stepped down (its floor is its old term) and takes the lease
/// again gets a new one, which fences whatever it still had in flight.
///
/// The new term also exceeds the term of the timeline's last entry
/// (`XREVRANGE {p}timeline + - COUNT 1`, `KEYS[3]`): the term lives in
/// the stream as well as in `{p}term`, so losing the counter alone (a
/// `maxmemory` eviction, an operator's `DEL`) cannot send terms back.
const ACQUIRE: &str = r"
local floor = tonumber(ARGV[3])
local held = redis.call('GET', KEYS[1])
if held then
  if string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. ':' then
    return held
  end
  local ours = tonumber(string.sub(held, #ARGV[1] + 2))
  if ours and ours > floor then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return ours
  end
end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'term' then
      local written = tonumber(fields[i + 1])
      if written and written > floor then
        floor = written
      end
    end
  end
end
local term = redis.call('INCR', KEYS[2])
if term <= floor then
  term = floor + 1
  redis.call('SET', KEYS[2], string.format('%d', term))
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. string.format('%d', term), 'PX', ARGV[2])
return term
";

/// `PEXPIRE` the leader key only if it still holds our value.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// `DEL` the leader key only if it still holds our value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Reads the acquire script's answer: a term (won) or the holder's value.
pub fn parse_acquired(reply: &Value) -> Option<Acquired> {
    match reply {
        Value::Int(term) => u64::try_from(*term).ok().map(|term| Acquired::Won { term }),
        Value::BulkString(held) => Some(Acquired::HeldBy {
            term: parse_holder(held).map(|(_, term)| term),
        }),
        _ => None,
    }
}

/// Splits a `{p}leader` value `<node>:<term>`.
pub fn parse_holder(value: &[u8]) -> Option<(&str, u64)> {
    let (node, term) = std::str::from_utf8(value).ok()?.rsplit_once(':')?;
    Some((node, term.parse().ok()?))
}

/// Who holds the lease now, as `(node, term)`; `None` if nobody.
pub async fn holder(link: &RedisLink) -> RedisResult<Option<(String, u64)>> {
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(link.keys().leader())
        .query_async(&mut link.conn())
        .await?;
    Ok(value
        .as_deref()
        .and_then(parse_holder)
        .map(|(node, term)| (node.to_owned(), term)))
}

/// One run of the acquire script for `node` (a lease of `ttl_ms`, a term
/// above `floor`): the term won, or who holds the lease; `None` for an
/// answer the script never gives.
///
/// # Errors
/// Redis unreachable or slow. A request that timed out may still run
/// later: the script counts it once (see the `ACQUIRE` script).
pub async fn acquire(
    link: &RedisLink,
    node: &str,
    ttl_ms: u64,
    floor: u64,
) -> RedisResult<Option<Acquired>> {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    let mut invocation = SCRIPT.get_or_init(|| Script::new(ACQUIRE)).prepare_invoke();
    invocation
        .key(link.keys().leader())
        .key(link.keys().term())
        .key(link.keys().timeline())
        .arg(node)
        .arg(ttl_ms)
        .arg(floor);
    let reply: Value = invocation.invoke_async(&mut link.conn()).await?;
    Ok(parse_acquired(&reply))
}

/// A running lease driver. Dropping it stops the driver at once without
/// releasing the lease (as a crash would: the lease lapses after `ttl`);
/// [`Lease::resign`] releases it for a quick hand-over.
#[derive(Debug)]
pub struct Lease {
    link: RedisLink,
    node: String,
    role: watch::Receiver<Role>,
    floor: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Lease {
    /// Starts competing for the lease as `node` (see [`super::check_node_id`])
    /// with leases of `ttl`.
    pub fn start(link: RedisLink, node: String, ttl: Duration) -> Self {
        let (tx, role) = watch::channel(Role::Follower);
        let floor = Arc::new(AtomicU64::new(0));
        let driver = Driver {
            link: link.clone(),
            value_prefix: format!("{node}:"),
            policy: LeasePolicy::new(ttl, Instant::now()),
            role: tx,
            floor: Arc::clone(&floor),
            renew: Script::new(RENEW),
        };
        let task = tokio::spawn(driver.run());
        Self {
            link,
            node,
            role,
            floor,
            task,
        }
    }

    /// The role, updated as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Notes a term seen elsewhere, so the next acquisition exceeds it.
    pub fn observe_term(&self, term: u64) {
        self.floor.fetch_max(term, Ordering::Relaxed);
    }

    /// Stops competing and, if leader, deletes the lease so another node
    /// takes over at its next poll instead of after `ttl`.
    pub async fn resign(&self) -> RedisResult<()> {
        self.task.abort();
        let Role::Leader { term } = *self.role.borrow() else {
            return Ok(());
        };
        let _: i64 = Script::new(RELEASE)
            .key(self.link.keys().leader())
            .arg(format!("{}:{term}", self.node))
            .invoke_async(&mut self.link.conn())
            .await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task behind a [`Lease`].
struct Driver {
    link: RedisLink,
    /// `<node>:`, the start of our lease value.
    value_prefix: String,
    policy: LeasePolicy,
    role: watch::Sender<Role>,
    floor: Arc<AtomicU64>,
    renew: Script,
}

impl Driver {
    async fn run(mut self) {
        loop {
            // Tokio's timer runs on CLOCK_MONOTONIC: a sleep may end late
            // after a suspend, never early; the boot clock is re-read below.
            let wait = self.policy.due().saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            self.policy.observe_term(self.floor.load(Ordering::Relaxed));
            let sent = Instant::now();
            self.policy.tick(sent);
            self.publish();
            let deadline = self.policy.call_deadline(sent);
            match self.policy.step() {
                Step::Acquire { floor } => {
                    let reply = self.try_acquire(floor, deadline).await;
                    self.policy.on_acquire(sent, Instant::now(), reply);
                }
                Step::Renew { term } => {
                    let reply = self.try_renew(term, deadline).await;
                    self.policy.on_renew(sent, Instant::now(), reply);
                }
            }
            self.floor.fetch_max(self.policy.floor(), Ordering::Relaxed);
            self.publish();
        }
    }

    fn publish(&self) {
        let now = self.policy.role();
        self.role.send_if_modified(|role| {
            let changed = *role != now;
            *role = now;
            changed
        });
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.policy.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    async fn try_acquire(&self, floor: u64, deadline: Instant) -> Option<Acquired> {
        let node = self.value_prefix.trim_end_matches(':');
        let call = acquire(&self.link, node, self.ttl_ms(), floor);
        let limit = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(limit, call).await.ok()?.ok()?
    }

    async fn try_renew(&self, term: u64, deadline: Instant) -> Option<bool> {
        let mut invocation = self.renew.prepare_invoke();
        invocation
            .key(self.link.keys().leader())
            .arg(format!("{}{term}", self.value_prefix))
            .arg(self.ttl_ms());
        let mut conn = self.link.conn();
        let call = invocation.invoke_async::<i64>(&mut conn);
        let limit = deadline.saturating_duration_since(Instant::now());
        let reply = tokio::time::timeout(limit, call).await.ok()?;
        reply.ok().map(|extended| extended == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(3000);
    const MS: Duration = Duration::from_millis(1);

    fn leader_at(t0: Instant, term: u64) -> LeasePolicy {
        let mut p = LeasePolicy::new(TTL, t0);
        p.on_acquire(t0, t0 + 10 * MS, Some(Acquired::Won { term }));
        p
    }

    #[test]
    fn a_new_policy_tries_at_once_with_no_floor() {
        let t0 = Instant::now();
        let p = LeasePolicy::new(TTL, t0);
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.due(), t0);
        assert_eq!(p.step(), Step::Acquire { floor: 0 });
    }

    #[test]
    fn winning_makes_a_leader_that_renews_every_third() {
        let t0 = Instant::now();
        let p = leader_at(t0, 7);
        assert_eq!(p.role(), Role::Leader { term: 7 });
        assert_eq!(p.step(), Step::Renew { term: 7 });
        assert_eq!(p.due(), t0 + 1000 * MS);
        assert_eq!(p.floor(), 7);
    }

    #[test]
    fn a_held_lease_raises_the_floor_and_polls_every_third() {
        let t0 = Instant::now();
        let mut p = LeasePolicy::new(TTL, t0);
        p.on_acquire(t0, t0 + 5 * MS, Some(Acquired::HeldBy { term: Some(41) }));
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.step(), Step::Acquire { floor: 41 });
        assert_eq!(p.due(), t0 + 1005 * MS);
        p.observe_term(40);
        assert_eq!(p.floor(), 41, "the floor never falls");
    }

    #[test]
    fn a_renewal_answered_not_yours_deposes_at_once() {
        let t0 = Instant::now();
        let mut p = leader_at(t0, 3);
        let t1 = t0 + 1000 * MS;
        p.on_renew(t1, t1 + 2 * MS, Some(false));
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.due(), t1 + 2 * MS);
        assert_eq!(p.step(), Step::Acquire { floor: 3 });
    }

    #[test]
    fn failed_renewals_keep_the_lease_only_until_it_would_lapse() {
        let t0 = Instant::now();
        let mut p = leader_at(t0, 3);
        // The lease counts from sending, less a tenth for clock rates.
        let lapse = t0 + 2700 * MS;
        let mut now = t0 + 1000 * MS;
        while now < lapse {
            assert_eq!(p.role(), Role::Leader { term: 3 }, "at {:?}", now - t0);
            assert!(p.call_deadline(now) <= lapse, "a call outlives the lease");
            let answered = p.call_deadline(now);
            p.on_renew(now, answered, None);
            assert!(p.due() <= lapse);
            now = p.due();
        }
        p.tick(now);
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.step(), Step::Acquire { floor: 3 });
    }

    #[test]
    fn a_successful_renewal_extends_from_its_sending() {
        let t0 = Instant::now();
        let mut p = leader_at(t0, 3);
        let t1 = t0 + 1000 * MS;
        p.on_renew(t1, t1 + 400 * MS, Some(true));
        p.tick(t0 + 3000 * MS);
        assert_eq!(p.role(), Role::Leader { term: 3 });
        p.tick(t1 + 2700 * MS);
        assert_eq!(p.role(), Role::Follower);
    }

    #[test]
    fn a_win_answered_after_the_lease_would_lapse_is_not_taken() {
        let t0 = Instant::now();
        let mut p = LeasePolicy::new(TTL, t0);
        p.on_acquire(t0, t0 + 2800 * MS, Some(Acquired::Won { term: 9 }));
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.step(), Step::Acquire { floor: 9 });
    }

    #[test]
    fn errors_leave_a_follower_polling() {
        let t0 = Instant::now();
        let mut p = LeasePolicy::new(TTL, t0);
        p.on_acquire(t0, t0 + 1000 * MS, None);
        assert_eq!(p.role(), Role::Follower);
        assert_eq!(p.due(), t0 + 2000 * MS);
    }

    #[test]
    fn script_answers_parse_without_panicking() {
        assert_eq!(
            parse_acquired(&Value::Int(4)),
            Some(Acquired::Won { term: 4 })
        );
        assert_eq!(parse_acquired(&Value::Int(-1)), None);
        assert_eq!(
            parse_acquired(&Value::BulkString(b"n-1:12".to_vec())),
            Some(Acquired::HeldBy { term: Some(12) })
        );
        assert_eq!(
            parse_acquired(&Value::BulkString(b"\xff:x".to_vec())),
            Some(Acquired::HeldBy { term: None })
        );
        assert_eq!(parse_acquired(&Value::Nil), None);
        assert_eq!(parse_holder(b"a.b:3"), Some(("a.b", 3)));
        assert_eq!(parse_holder(b"nocolon"), None);
    }
}
