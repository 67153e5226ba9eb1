//! The fleet: who is connected, admission control (caps per role and per IP,
//! bans), and connection ids.
//!
//! Admission happens once per connection, under one lock, so two racing
//! connections can never both take the last place under a cap. The returned
//! [`Admission`] is a guard: dropping it (when the connection task ends, by
//! any path) gives the place back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::{CloseReason, POLICY, TRY_AGAIN_LATER};

/// The two kinds of connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives tasks, returns results.
    Worker,
    /// Receives the frame stream and telemetry.
    Viewer,
}

/// Caps enforced at admission.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Most worker connections.
    pub workers: usize,
    /// Most viewer connections.
    pub viewers: usize,
    /// Most connections from one IP; 0 = unlimited.
    pub per_ip: usize,
}

#[derive(Default)]
struct Inner {
    workers: usize,
    viewers: usize,
    per_ip: HashMap<IpAddr, usize>,
    bans: HashMap<IpAddr, Instant>,
}

/// Connected peers and admission state.
pub struct Fleet {
    caps: Caps,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    workers: AtomicU64,
    viewers: AtomicU64,
}

impl Fleet {
    /// An empty fleet with these caps.
    pub fn new(caps: Caps) -> Self {
        Self {
            caps,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            workers: AtomicU64::new(0),
            viewers: AtomicU64::new(0),
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

    /// Admits a connection or says why not.
    pub fn admit(self: &Arc<Self>, role: Role, ip: IpAddr) -> Result<Admission, CloseReason> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(&until) = inner.bans.get(&ip) {
            if until > now {
                let secs = until.saturating_duration_since(now).as_secs() + 1;
                return Err(CloseReason::new(
                    POLICY,
                    format!("address banned for cheating, retry in {secs} s"),
                ));
            }
            inner.bans.remove(&ip);
        }
        let (count, cap, name) = match role {
            Role::Worker => (inner.workers, self.caps.workers, "worker"),
            Role::Viewer => (inner.viewers, self.caps.viewers, "viewer"),
        };
        if count >= cap {
            return Err(CloseReason::new(
                TRY_AGAIN_LATER,
                format!("{name} connection cap of {cap} reached"),
            ));
        }
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if self.caps.per_ip > 0 && from_ip >= self.caps.per_ip {
            return Err(CloseReason::new(
                TRY_AGAIN_LATER,
                format!("per-address connection cap of {} reached", self.caps.per_ip),
            ));
        }
        inner.per_ip.insert(ip, from_ip + 1);
        match role {
            Role::Worker => {
                inner.workers += 1;
                self.workers.fetch_add(1, Ordering::Relaxed);
            }
            Role::Viewer => {
                inner.viewers += 1;
                self.viewers.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Admission {
            fleet: Arc::clone(self),
            role,
            ip,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Refuses new connections from `ip` for `cooldown`.
    pub fn ban(&self, ip: IpAddr, cooldown: Duration) {
        if cooldown.is_zero() {
            return;
        }
        let mut inner = self.lock();
        // Forget expired bans so the table cannot grow without bound.
        let now = Instant::now();
        inner.bans.retain(|_, until| *until > now);
        inner.bans.insert(ip, now + cooldown);
    }

    fn release(&self, role: Role, ip: IpAddr) {
        let mut inner = self.lock();
        match role {
            Role::Worker => {
                inner.workers = inner.workers.saturating_sub(1);
                self.workers.fetch_sub(1, Ordering::Relaxed);
            }
            Role::Viewer => {
                inner.viewers = inner.viewers.saturating_sub(1);
                self.viewers.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if let Some(n) = inner.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&ip);
            }
        }
    }
}

/// A place in the fleet, held for the life of one connection.
pub struct Admission {
    fleet: Arc<Fleet>,
    role: Role,
    /// The peer's address.
    pub ip: IpAddr,
    /// The connection's id, unique for the life of the server.
    pub id: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.fleet.release(self.role, self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Arc<Fleet> {
        Arc::new(Fleet::new(Caps {
            workers: 2,
            viewers: 1,
            per_ip: 2,
        }))
    }

    #[test]
    fn caps_and_release() {
        let f = fleet();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let v = f.admit(Role::Viewer, a).expect("first viewer");
        let refused = f.admit(Role::Viewer, b).err().expect("cap");
        assert_eq!(refused.code, TRY_AGAIN_LATER);
        let w = f.admit(Role::Worker, a).expect("worker");
        // a has 2 connections: the per-IP cap.
        assert!(f.admit(Role::Worker, a).is_err());
        assert!(f.admit(Role::Worker, b).is_ok_and(|x| x.id > w.id));
        drop(v);
        assert_eq!(f.viewers(), 0);
        assert!(f.admit(Role::Viewer, b).is_ok());
    }

    #[test]
    fn bans_refuse_then_expire() {
        let f = fleet();
        let a: IpAddr = [10, 0, 0, 1].into();
        f.ban(a, Duration::from_secs(60));
        let r = f.admit(Role::Worker, a).err().expect("banned");
        assert_eq!(r.code, POLICY);
        f.ban(a, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(f.admit(Role::Worker, a).is_ok());
    }
}
