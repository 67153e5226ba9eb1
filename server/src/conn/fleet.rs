//! The fleet: who is connected, admission control (caps per role and per
//! address, bans), and connection ids.
//!
//! Addresses are [`AddrKey`]s under the configured ban scope, so the
//! per-address cap and a ban cover the same thing (an IPv6 host cannot
//! step around either by changing its interface identifier). A ban, kept by
//! [`Reputation`], refuses new *worker* connections; viewers are welcome.
//!
//! Admission happens once per connection, under one lock, so two racing
//! connections can never both take the last place under a cap. The returned
//! [`Admission`] is a guard: dropping it (when the connection task ends, by
//! any path) gives the place back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::conn::limits::{CloseReason, POLICY, TRY_AGAIN_LATER};
use crate::trust::reputation::{AddrKey, Reputation};

/// The two kinds of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// Receives tasks, returns results.
    Worker,
    /// Receives the frame stream and telemetry.
    Viewer,
}

impl ConnKind {
    /// The role's name, as logs and refusals say it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Viewer => "viewer",
        }
    }
}

/// Caps enforced at admission.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Most worker connections.
    pub workers: usize,
    /// Most viewer connections.
    pub viewers: usize,
    /// Most connections from one address; 0 = unlimited.
    pub per_ip: usize,
}

#[derive(Default)]
struct Inner {
    workers: usize,
    viewers: usize,
    per_ip: HashMap<AddrKey, usize>,
}

/// Connected peers and admission state.
pub struct Fleet {
    caps: Caps,
    reputation: Arc<Reputation>,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    workers: AtomicU64,
    viewers: AtomicU64,
    /// Connections of either role, set under `inner`'s lock: what
    /// [`emptied`](Self::emptied) waits on.
    connected: watch::Sender<usize>,
}

impl Fleet {
    /// An empty fleet with these caps, judging addresses by `reputation`.
    pub fn new(caps: Caps, reputation: Arc<Reputation>) -> Self {
        Self {
            caps,
            reputation,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            workers: AtomicU64::new(0),
            viewers: AtomicU64::new(0),
            connected: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counts
        // inconsistent (each update is a single statement), so recover.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Worker connections now.
    pub fn workers(&self) -> u64 {
        self.workers.load(Ordering::Relaxed)
    }

    /// Viewer connections now.
    pub fn viewers(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is left (at once if none is): how a
    /// stopping server waits for its peers to go.
    pub async fn emptied(&self) {
        let mut connected = self.connected.subscribe();
        // The sender lives in `self`, so the channel cannot close first.
        let _ = connected.wait_for(|n| *n == 0).await;
    }

    /// The reputation table admission consults.
    pub fn reputation(&self) -> &Arc<Reputation> {
        &self.reputation
    }

    /// Admits a connection from `ip` or says why not.
    pub fn admit(self: &Arc<Self>, role: ConnKind, ip: IpAddr) -> Result<Admission, CloseReason> {
        let key = self.reputation.key(ip);
        if role == ConnKind::Worker
            && let Some(left) = self.reputation.banned(key, Instant::now())
        {
            let secs = left.as_secs() + 1;
            return Err(CloseReason::new(
                POLICY,
                format!("address {key} banned for cheating, retry in {secs} s"),
            ));
        }
        let mut inner = self.lock();
        let (count, cap) = match role {
            ConnKind::Worker => (inner.workers, self.caps.workers),
            ConnKind::Viewer => (inner.viewers, self.caps.viewers),
        };
        let name = role.name();
        if count >= cap {
            return Err(CloseReason::new(
                TRY_AGAIN_LATER,
                format!("{name} connection cap of {cap} reached"),
            ));
        }
        let from_ip = inner.per_ip.get(&key).copied().unwrap_or(0);
        if self.caps.per_ip > 0 && from_ip >= self.caps.per_ip {
            return Err(CloseReason::new(
                TRY_AGAIN_LATER,
                format!("per-address connection cap of {} reached", self.caps.per_ip),
            ));
        }
        inner.per_ip.insert(key, from_ip + 1);
        match role {
            ConnKind::Worker => {
                inner.workers += 1;
                self.workers.fetch_add(1, Ordering::Relaxed);
            }
            ConnKind::Viewer => {
                inner.viewers += 1;
                self.viewers.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.connected.send_replace(inner.workers + inner.viewers);
        Ok(Admission {
            fleet: Arc::clone(self),
            role,
            ip,
            key,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn release(&self, role: ConnKind, key: AddrKey) {
        let mut inner = self.lock();
        match role {
            ConnKind::Worker => {
                inner.workers = inner.workers.saturating_sub(1);
                self.workers.fetch_sub(1, Ordering::Relaxed);
            }
            ConnKind::Viewer => {
                inner.viewers = inner.viewers.saturating_sub(1);
                self.viewers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.connected.send_replace(inner.workers + inner.viewers);
        if let Some(n) = inner.per_ip.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&key);
            }
        }
    }
}

/// A place in the fleet, held for the life of one connection.
pub struct Admission {
    fleet: Arc<Fleet>,
    role: ConnKind,
    /// The peer's address.
    pub ip: IpAddr,
    /// The peer's address as reputation keys it.
    pub key: AddrKey,
    /// The connection's id, unique for the life of the server.
    pub id: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.fleet.release(self.role, self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::trust::reputation::{BanScope, ReputationConfig};

    fn fleet(ban: Duration) -> Arc<Fleet> {
        let reputation = Reputation::new(ReputationConfig {
            scope: BanScope::Ipv6Slash64,
            max_strikes: 1,
            ban,
            max_ban: ban,
            max_trust: 20,
        });
        let caps = Caps {
            workers: 2,
            viewers: 1,
            per_ip: 2,
        };
        Arc::new(Fleet::new(caps, Arc::new(reputation)))
    }

    #[test]
    fn caps_and_release() {
        let f = fleet(Duration::ZERO);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let v = f.admit(ConnKind::Viewer, a).expect("first viewer");
        let refused = f.admit(ConnKind::Viewer, b).err().expect("cap");
        assert_eq!(refused.code, TRY_AGAIN_LATER);
        let w = f.admit(ConnKind::Worker, a).expect("worker");
        // a has 2 connections: the per-IP cap.
        assert!(f.admit(ConnKind::Worker, a).is_err());
        assert!(f.admit(ConnKind::Worker, b).is_ok_and(|x| x.id > w.id));
        drop(v);
        assert_eq!(f.viewers(), 0);
        assert!(f.admit(ConnKind::Viewer, b).is_ok());
    }

    #[test]
    fn the_per_address_cap_covers_the_ban_scope() {
        let f = fleet(Duration::ZERO);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let _a = f.admit(ConnKind::Worker, ip("2001:db8::1")).expect("first");
        let _b = f
            .admit(ConnKind::Viewer, ip("2001:db8::2"))
            .expect("second");
        let r = f
            .admit(ConnKind::Worker, ip("2001:db8::3"))
            .err()
            .expect("capped");
        assert_eq!(r.code, TRY_AGAIN_LATER);
    }

    #[tokio::test]
    async fn emptied_wakes_when_the_last_connection_leaves() {
        let f = fleet(Duration::ZERO);
        f.emptied().await;
        let a = f
            .admit(ConnKind::Worker, [10, 0, 0, 1].into())
            .expect("worker");
        let b = f
            .admit(ConnKind::Viewer, [10, 0, 0, 2].into())
            .expect("viewer");
        let waiting = tokio::spawn({
            let f = Arc::clone(&f);
            async move { f.emptied().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one connection is left");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when the last one left")
            .expect("task");
    }

    #[test]
    fn a_ban_refuses_workers_not_viewers() {
        let f = fleet(Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        let rep = f.reputation();
        rep.strike(rep.key(a), Instant::now());
        let r = f.admit(ConnKind::Worker, a).err().expect("banned");
        assert_eq!(r.code, POLICY);
        assert!(r.reason.contains("banned"), "{}", r.reason);
        assert!(f.admit(ConnKind::Viewer, a).is_ok());
    }
}
