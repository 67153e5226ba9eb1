//! The IO side of the relay tree, shared by every viewer connection.
//!
//! The [`RelayTree`] decides; the hub carries its decisions to the
//! viewers. A tree change made on one viewer's task (a parent leaving,
//! a report) moves other viewers, whose sockets belong to other tasks: so
//! each member has a bounded control channel of encoded messages
//! (`Welcome`, `Assign`, forwarded `Signal`s) its own connection task
//! writes out, and a flag saying whether it is fed by a peer now (which
//! its task reads for every batch, without the lock). The tree and the
//! channels sit behind one mutex, never held across an await, so a change
//! and the messages announcing it are one step.
//!
//! Signals are forwarded only between a viewer and its current parent or
//! child, with `peer` rewritten to the sender; anything else is dropped and
//! counted (races with a reassignment are normal). Candidates go through
//! the [`CandidateFilter`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use donut_shared::wire::ToViewer;
use donut_shared::wire::p2p::{Link, Report, SERVER, Signal, SignalKind, Welcome};
use tokio::sync::mpsc;
use tracing::debug;

use crate::metrics::Stats;
use crate::p2p::P2pMode;
use crate::p2p::filter::CandidateFilter;
use crate::p2p::tree::{Counts, Placement, RelayTree, TreeConfig, Verdict};
use crate::stream::timeline::rate::TokenBucket;
use crate::trust::reputation::AddrKey;

/// Control messages one member may have waiting (a viewer that leaves
/// this many unread is closed by its send bound long before they matter).
pub const CONTROL_QUEUE: usize = 256;
/// Signals one member may forward to one of its pair a second, on
/// average: setting up a link takes an offer or answer and a handful of
/// candidates; more is dropped, not forwarded (the addressee pays nothing
/// for what others send it).
pub const PAIR_SIGNAL_RATE: f64 = 4.0;
/// Signals one member may forward to one of its pair at once.
pub const PAIR_SIGNAL_BURST: u32 = 24;
/// Bytes of signal text one member may forward to one of its pair a
/// second, on average (issue 24): a link's setup is an SDP of a kilobyte
/// or two and a few candidate lines, well within the burst; a sybil
/// sending 4 KiB offers at the signal rate had the server forward about
/// 16 KB/s to its relay (3× a viewer's own stream), now at most this.
pub const PAIR_SIGNAL_BYTES_RATE: f64 = 1024.0;
/// Bytes of signal text one member may forward to one of its pair at once.
pub const PAIR_SIGNAL_BYTES_BURST: f64 = 16.0 * 1024.0;

/// What one sender may still forward to one addressee: signals, and
/// bytes of their text (each refilled over time, sans-IO).
#[derive(Debug, Clone)]
struct PairBudget {
    signals: TokenBucket,
    /// Bytes saved, at most [`PAIR_SIGNAL_BYTES_BURST`].
    bytes: f64,
    last: Instant,
}

impl PairBudget {
    fn new(now: Instant) -> Self {
        Self {
            signals: TokenBucket::new(PAIR_SIGNAL_RATE, PAIR_SIGNAL_BURST, now),
            bytes: PAIR_SIGNAL_BYTES_BURST,
            last: now,
        }
    }

    /// Spends one signal of `len` bytes at `now`, or nothing (false) if
    /// either budget is short.
    fn take(&mut self, len: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.bytes = (self.bytes + dt * PAIR_SIGNAL_BYTES_RATE).min(PAIR_SIGNAL_BYTES_BURST);
        let len = len as f64;
        if self.bytes < len || !self.signals.take(now) {
            return false;
        }
        self.bytes -= len;
        true
    }
}

/// The hub's settings (from `--p2p*`, derived in `config::derive`).
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// Whether viewers relay at all, and from how many.
    pub mode: P2pMode,
    /// The ICE servers each `Welcome` names (JSON, or empty).
    pub ice_servers: String,
    /// Networks an ICE candidate may name (empty: any public address).
    pub candidates: Vec<ipnet::IpNet>,
    /// The tree's limits.
    pub tree: TreeConfig,
}

/// A message for one member's connection task to write.
#[derive(Debug, Clone)]
pub enum Control {
    /// `Welcome`, `Assign`: always written.
    Must(Bytes),
    /// A forwarded `Signal`: written only if the member's socket has room
    /// (dropped, never a reason to close the member).
    Signal(Bytes),
}

struct Peer {
    tx: mpsc::Sender<Control>,
    fed: Arc<AtomicBool>,
    /// Per sender: what it may still forward to this member.
    inbound: HashMap<u64, PairBudget>,
}

struct Inner {
    tree: RelayTree,
    peers: HashMap<u64, Peer>,
}

/// See the module docs.
pub struct Hub {
    mode: P2pMode,
    ice_servers: String,
    filter: CandidateFilter,
    stats: Arc<Stats>,
    inner: Mutex<Inner>,
    offload: crate::p2p::OffloadWindow,
}

/// A viewer's place in the tree, held by its connection task; dropping it
/// leaves the tree (its children move at once).
pub struct Member {
    hub: Arc<Hub>,
    id: u64,
    rx: mpsc::Receiver<Control>,
    fed: Arc<AtomicBool>,
}

impl Member {
    /// Whether batches reach this viewer from its parent (send it digests).
    pub fn peer_fed(&self) -> bool {
        self.fed.load(Ordering::Relaxed)
    }

    /// The next control message to write to this viewer.
    pub async fn recv(&mut self) -> Option<Control> {
        self.rx.recv().await
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

impl Hub {
    /// A hub for the `--p2p*` settings.
    pub fn new(cfg: HubConfig, stats: Arc<Stats>) -> Self {
        Self {
            mode: cfg.mode,
            ice_servers: cfg.ice_servers,
            filter: CandidateFilter::new(cfg.candidates),
            stats,
            inner: Mutex::new(Inner {
                tree: RelayTree::new(cfg.tree, cfg.mode == P2pMode::On),
                peers: HashMap::new(),
            }),
            offload: crate::p2p::OffloadWindow::default(),
        }
    }

    /// Whether viewers may join at all (`--p2p` not `off`).
    pub fn enabled(&self) -> bool {
        self.mode != P2pMode::Off
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the tree whole before anything
        // that could panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Viewer `id`, connected from `origin`, joins: its `Welcome` and
    /// `Assign` are queued on the returned member's channel. `None` under
    /// `--p2p off`, or if it is a member already.
    pub fn join(self: &Arc<Self>, id: u64, origin: AddrKey, now: Instant) -> Option<Member> {
        if !self.enabled() || id == SERVER {
            return None;
        }
        let mut inner = self.lock();
        if inner.peers.contains_key(&id) {
            return None;
        }
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let welcome = Welcome {
            id,
            ice_servers: &self.ice_servers,
        };
        let _ = tx.try_send(Control::Must(Bytes::from(
            ToViewer::Welcome(welcome).to_vec(),
        )));
        let fed = Arc::new(AtomicBool::new(false));
        let peer = Peer {
            tx,
            fed: Arc::clone(&fed),
            inbound: HashMap::new(),
        };
        inner.peers.insert(id, peer);
        let cmds = inner.tree.join_from(id, origin, now);
        dispatch(&inner, &cmds);
        Some(Member {
            hub: Arc::clone(self),
            id,
            rx,
            fed,
        })
    }

    fn leave(&self, id: u64) {
        let mut inner = self.lock();
        inner.peers.remove(&id);
        let cmds = inner.tree.leave(id);
        dispatch(&inner, &cmds);
    }

    /// Forwards `signal` from `from` to its parent or child `signal.peer`,
    /// filtered, within the pair's budget ([`PAIR_SIGNAL_RATE`] signals and
    /// [`PAIR_SIGNAL_BYTES_RATE`] bytes of text a second) and the
    /// addressee's control queue; drops (and counts) anything else.
    pub fn signal(&self, from: u64, signal: Signal<'_>, now: Instant) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let to = signal.peer;
        let pair = inner.tree.is_pair(from, to);
        let Some(peer) = inner.peers.get_mut(&to).filter(|_| pair) else {
            self.stats.p2p_signals_dropped.inc();
            debug!(from, to, "signal between strangers dropped");
            return;
        };
        if peer.inbound.len() > 64 {
            let tree = &inner.tree;
            peer.inbound.retain(|&f, _| tree.is_pair(f, to));
        }
        let budget = peer
            .inbound
            .entry(from)
            .or_insert_with(|| PairBudget::new(now));
        if !budget.take(signal.text.len(), now) {
            self.stats.p2p_signals_dropped.inc();
            self.stats.p2p_signals_throttled.inc();
            return;
        }
        let Some(text) = self.filtered(signal.kind, signal.text) else {
            self.stats.p2p_candidates_filtered.inc();
            return;
        };
        let out = Signal {
            peer: from,
            kind: signal.kind,
            text: &text,
        };
        match peer
            .tx
            .try_send(Control::Signal(Bytes::from(ToViewer::Signal(out).to_vec())))
        {
            Ok(()) => self.stats.p2p_signals_forwarded.inc(),
            Err(_) => self.stats.p2p_signals_dropped.inc(),
        }
    }

    /// The text to forward, or `None` for a refused candidate.
    fn filtered(&self, kind: SignalKind, text: &str) -> Option<String> {
        match kind {
            SignalKind::Candidate => self.filter.allows_candidate(text).then(|| text.to_owned()),
            SignalKind::Offer | SignalKind::Answer => {
                let (sdp, removed) = self.filter.strip_sdp(text);
                self.stats.p2p_candidates_filtered.add(removed as u64);
                Some(sdp)
            }
        }
    }

    /// `id`'s data channel from `link.parent` opened or was lost.
    pub fn link(&self, id: u64, link: Link, now: Instant) {
        let mut inner = self.lock();
        let cmds = inner.tree.link(id, link.parent, link.up, now);
        if let Some(p) = inner.peers.get(&id) {
            p.fed.store(inner.tree.peer_fed(id), Ordering::Relaxed);
        }
        dispatch(&inner, &cmds);
    }

    /// `id` fetched a batch from the server: its parent was late.
    pub fn late(&self, id: u64, now: Instant) {
        let mut inner = self.lock();
        let cmds = inner.tree.late(id, now);
        dispatch(&inner, &cmds);
    }

    /// `id` reports bytes from `report.peer` that failed their digest:
    /// weighed by the tree (see [`RelayTree::mismatch`]).
    pub fn report(&self, id: u64, report: Report, now: Instant) {
        self.stats.p2p_digest_mismatches.inc();
        let mut inner = self.lock();
        let (verdict, cmds) = inner.tree.mismatch(id, report.peer, now);
        match verdict {
            Verdict::Stale | Verdict::Discounted => self.stats.p2p_reports_discounted.inc(),
            Verdict::Suspected => {
                self.stats.p2p_reports_discounted.inc();
                self.stats.p2p_suspicions.inc();
            }
            Verdict::Accused => {}
            Verdict::Barred => self.stats.p2p_bars.inc(),
        }
        debug!(
            reporter = id,
            peer = report.peer,
            ?verdict,
            "report weighed"
        );
        if let Some(p) = inner.peers.get(&id) {
            p.fed.store(inner.tree.peer_fed(id), Ordering::Relaxed);
        }
        dispatch(&inner, &cmds);
    }

    /// Time passes (relays earn slots, roots are folded under peers).
    pub fn tick(&self, now: Instant) {
        let mut inner = self.lock();
        let cmds = inner.tree.tick(now);
        dispatch(&inner, &cmds);
    }

    /// The offload ratios over the last minute (proven, and claimed).
    pub fn offload(&self, now: Instant) -> crate::p2p::Offload {
        self.offload.read(&self.stats, now)
    }

    /// The tree's figures.
    pub fn counts(&self) -> Counts {
        self.lock().tree.counts()
    }
}

/// Sends each command's `Assign` to its viewer and updates its flag (a
/// moved viewer is server-fed until its new link is up).
fn dispatch(inner: &Inner, cmds: &[Placement]) {
    for c in cmds {
        if let Some(p) = inner.peers.get(&c.viewer) {
            p.fed
                .store(inner.tree.peer_fed(c.viewer), Ordering::Relaxed);
            let msg = Control::Must(Bytes::copy_from_slice(&c.assign.to_bytes()));
            if p.tx.try_send(msg).is_err() {
                debug!(viewer = c.viewer, "control queue full; assign dropped");
            }
        }
    }
}

/// How often the tree is ticked (relays earn slots, roots fold under peers).
pub const TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// Ticks `hub`'s tree every [`TICK`] until `shutdown` turns true.
pub async fn tick(hub: Arc<Hub>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = every.tick() => hub.tick(Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use donut_shared::wire::p2p::Assign;

    use super::*;
    use crate::p2p::tree::origin_of;

    fn hub(mode: P2pMode) -> Arc<Hub> {
        let cfg = HubConfig {
            mode,
            ice_servers: "stun:s.example:3478".into(),
            candidates: vec!["127.0.0.1/32".parse().expect("cidr")],
            tree: TreeConfig::default(),
        };
        Arc::new(Hub::new(cfg, Arc::new(Stats::default())))
    }

    /// Every control message waiting for `m`, decoded to owned values.
    fn drain(m: &mut Member) -> Vec<String> {
        std::iter::from_fn(|| m.rx.try_recv().ok())
            .map(|c| match c {
                Control::Must(b) | Control::Signal(b) => b,
            })
            .map(|b| format!("{:?}", ToViewer::decode(&b).expect("valid")))
            .collect()
    }

    fn assign(parent: u64, backup: u64) -> String {
        format!("{:?}", ToViewer::Assign(Assign { parent, backup }))
    }

    /// 4 KiB offers, at the signal rate, to a paired peer: the burst's
    /// bytes pass, then about [`PAIR_SIGNAL_BYTES_RATE`] a second; a link's
    /// setup (an SDP and a few candidates) passes whole.
    #[test]
    fn a_pair_forwards_at_most_its_byte_budget() {
        use std::time::Duration;
        let t0 = Instant::now();
        let h = hub(P2pMode::On);
        let mut a = h.join(1, origin_of(1), t0).expect("joined");
        let _b = h.join(2, origin_of(2), t0).expect("joined");
        drain(&mut a);
        let offer = format!("v=0\r\n{}", "a".repeat(4000));
        let mut forwarded = 0;
        for tick in 0..40u64 {
            // Four offers a second for ten seconds (the signal rate).
            let now = t0 + Duration::from_millis(250 * tick);
            let signal = Signal {
                peer: 1,
                kind: SignalKind::Offer,
                text: &offer,
            };
            h.signal(2, signal, now);
            forwarded += drain(&mut a).len();
        }
        // 16 KiB at once, then 1 KiB a second: 4 + about 10 s × 1024 / 4006.
        assert!((4..=7).contains(&forwarded), "{forwarded} forwarded");
        // The other direction has its own budget: a whole setup passes.
        let mut b2 = h.join(3, origin_of(3), t0).expect("joined");
        drain(&mut b2);
        let later = t0 + Duration::from_secs(11);
        let sdp = format!("v=0\r\n{}", "a".repeat(1500));
        h.signal(
            1,
            Signal {
                peer: 2,
                kind: SignalKind::Answer,
                text: &sdp,
            },
            later,
        );
        for _ in 0..4 {
            let text = "candidate:1 1 udp 1 127.0.0.1 5000 typ host";
            h.signal(
                1,
                Signal {
                    peer: 2,
                    kind: SignalKind::Candidate,
                    text,
                },
                later,
            );
        }
        assert_eq!(h.stats.p2p_signals_forwarded.get() as usize, forwarded + 5);
    }

    #[test]
    fn off_never_answers_and_on_welcomes_then_assigns() {
        let now = Instant::now();
        assert!(hub(P2pMode::Off).join(1, origin_of(1), now).is_none());
        let h = hub(P2pMode::On);
        let mut a = h.join(1, origin_of(1), now).expect("joined");
        assert!(
            h.join(1, origin_of(1), now).is_none(),
            "a member joins once"
        );
        let got = drain(&mut a);
        assert!(
            got[0].contains("Welcome") && got[0].contains("stun:s.example:3478"),
            "{got:?}"
        );
        assert_eq!(got[1..], [assign(SERVER, SERVER)]);
        let mut b = h.join(2, origin_of(2), now).expect("joined");
        assert_eq!(drain(&mut b)[1..], [assign(1, SERVER)]);
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    fn signals_are_rewritten_filtered_and_the_link_flag_follows_the_tree() {
        let now = Instant::now();
        let h = hub(P2pMode::On);
        let mut a = h.join(1, origin_of(1), now).expect("joined");
        let mut b = h.join(2, origin_of(2), now).expect("joined");
        drain(&mut a);
        drain(&mut b);
        let text = "candidate:1 1 udp 1 127.0.0.1 5000 typ host";
        let kind = SignalKind::Candidate;
        h.signal(
            2,
            Signal {
                peer: 1,
                kind,
                text,
            },
            now,
        );
        h.signal(
            2,
            Signal {
                peer: 1,
                kind,
                text: "candidate:1 1 udp 1 192.0.2.7 5000 typ host",
            },
            now,
        );
        h.signal(
            2,
            Signal {
                peer: 3,
                kind,
                text,
            },
            now,
        );
        let got = drain(&mut a);
        assert_eq!(
            got,
            [format!(
                "{:?}",
                ToViewer::Signal(Signal {
                    peer: 2,
                    kind,
                    text
                })
            )]
        );
        assert_eq!(h.stats.p2p_signals_forwarded.get(), 1);
        assert_eq!(h.stats.p2p_candidates_filtered.get(), 1);
        assert_eq!(h.stats.p2p_signals_dropped.get(), 1);
        // Linked to its parent: fed by it; the parent gone: moved, unlinked.
        h.link(
            2,
            Link {
                parent: 1,
                up: true,
            },
            now,
        );
        assert!(b.peer_fed() && !a.peer_fed());
        drop(a);
        assert!(!b.peer_fed());
        assert_eq!(drain(&mut b), [assign(SERVER, SERVER)]);
        assert_eq!(h.counts().peering, 1);
    }
}
