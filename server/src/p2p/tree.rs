//! The relay tree, sans-IO: who feeds whom.
//!
//! Every viewer that joined (`Peering { on: true }`) is a node. A node's
//! parent is another node or [`SERVER`]; the server feeds the roots. The
//! tree decides, the connections only carry out: every operation returns
//! the [`Placement`]s (an `Assign` for one viewer) that bring each affected
//! viewer's view in line with the tree, and the tree remembers what it last
//! told each viewer, so a viewer is told again exactly when its parent or
//! backup changed.
//!
//! Rules, in the order they bite:
//!
//! - **Depth.** A server-fed node is at depth 1; nobody is deeper than
//!   `max_depth` (each hop adds a peer's latency and a chance to be late).
//! - **Capacity.** A relay starts with `fanout` slots and gains one per
//!   [`GROW_AFTER`] of relaying without a strike, up to `max_fanout`.
//!   [`STRIKES`] strikes (a child's fallback fetch or lost link) within
//!   [`STRIKE_WINDOW`], from children at two addresses or more, demote it
//!   to no slots for [`DEMOTION`]: its children move. A child alone that
//!   strikes its parent that often moves itself instead. A late fetch is
//!   a child's word too, weighed as a report is (see suspects): moving
//!   itself, or fetch-striking a relay into demotion, is its address's
//!   believed report; the next within [`REPORTER_MEMORY`] makes it the
//!   suspect and withdraws its strikes before the demotion is decided.
//! - **Barred, on evidence.** A `Report` (bytes failing their digest) is
//!   one child's word: it moves the reporter to the server (its own
//!   stream, at its own cost) and never back under the peer it accused,
//!   and counts as an accusation; the accused takes no new children for
//!   [`QUARANTINE`] (a second witness cannot be steered under it). A relay
//!   is barred (fed by the server, relaying nothing) only once children
//!   from [`WITNESSES`] distinct addresses, none its own, accused it within
//!   [`REPORTER_MEMORY`]. Bars
//!   expire: the first lasts [`BAR`], each next one from the same address
//!   twice the last, up to [`MAX_BAR`] (as worker bans do).
//! - **Suspects.** Reporting is not free: an address whose viewers report
//!   more than [`REPORTS_ALLOWED`] times within [`REPORTER_MEMORY`] (an honest
//!   child almost never meets one corrupt relay, let alone two) becomes the
//!   suspect: its accusations are withdrawn, its reports stop counting, and
//!   its viewers are fed by the server, neither fed by nor feeding a peer,
//!   for [`SUSPECT`], doubling with each suspicion up to [`MAX_BAR`].
//! - **Placement.** A joiner (or a moved node) goes under the shallowest
//!   relay with a free slot, then the one with the fewest children, then the
//!   oldest; never under itself or its own subtree (no cycles), so a moved
//!   subtree keeps its shape and only descendants pushed past `max_depth`
//!   move again.
//! - **Few roots.** On a join (and a tick), server-fed childless nodes
//!   beyond the first are moved under peers with free slots, so the server
//!   feeds as few roots as it can.
//! - **Auto mode.** Below `min_viewers` nodes every node is server-fed.
//! - **Unlinkable.** A node that lost [`MAX_LOST_LINKS`] links stays
//!   server-fed (it still relays, if it can).
//!
//! The clock is an argument (`now`), so the tree is tested, by property,
//! without sockets or sleeps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use donut_shared::wire::p2p::{Assign, SERVER};

use crate::trust::reputation::{AddrKey, BanScope};

/// An accused relay takes no new children this long (so a second witness
/// cannot be steered under it).
pub const QUARANTINE: Duration = Duration::from_secs(60);
/// Accusations, and a reporter's own reports, count this long.
pub const REPORTER_MEMORY: Duration = Duration::from_secs(600);
/// Distinct addresses whose accusations bar a relay.
pub const WITNESSES: usize = 2;
/// Reports one address may make within [`REPORTER_MEMORY`] and still be
/// believed; one more makes it the suspect.
pub const REPORTS_ALLOWED: usize = 1;
/// The first bar; each next one from the same address is twice the last.
pub const BAR: Duration = Duration::from_secs(60);
/// The first suspicion; each next one is twice the last.
pub const SUSPECT: Duration = Duration::from_secs(120);
/// The longest bar or suspicion.
pub const MAX_BAR: Duration = Duration::from_secs(3600);
/// Standing with nothing live is forgotten after this long quiet.
pub const FORGET: Duration = Duration::from_secs(3 * 3600);

/// Strikes within [`STRIKE_WINDOW`], from children at two or more
/// addresses, that demote a relay (one child alone, however late, moves
/// itself instead: its word alone is not evidence).
pub const STRIKES: usize = 3;
/// A demoted relay earns its starting slots back after this long.
pub const DEMOTION: Duration = Duration::from_secs(120);
/// The window strikes are counted over.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Late fetches from one child count as one strike per this long.
pub const LATE_SPACING: Duration = Duration::from_secs(1);
/// Relaying this long to linked children without a strike earns a slot.
pub const GROW_AFTER: Duration = Duration::from_secs(30);
/// Links a viewer may lose before it is left to the server for good (one
/// that cannot hold a data channel, behind a NAT no host or STUN
/// candidate crosses, would otherwise be moved back under a peer by every
/// rebalance, striking good relays for its own failures).
pub const MAX_LOST_LINKS: u32 = 3;

/// The tree's shape limits (`--p2p-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeConfig {
    /// Children per relay to start with (≥ 1).
    pub fanout: u32,
    /// Most children per relay, earned over time (≥ `fanout`).
    pub max_fanout: u32,
    /// Deepest node; server-fed is depth 1 (≥ 2 for any peer to be fed by
    /// a peer).
    pub max_depth: u32,
    /// Nodes needed before peers are used at all (0 or 1: always).
    pub min_viewers: usize,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            fanout: 3,
            max_fanout: 6,
            max_depth: 3,
            min_viewers: 3,
        }
    }
}

/// Tell `viewer` its new parent and backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The viewer to send it to.
    pub viewer: u64,
    /// What to send.
    pub assign: Assign,
}

/// Figures for `/metrics` and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Nodes (viewers that joined).
    pub peering: usize,
    /// Nodes fed by a peer over an open data channel.
    pub linked: usize,
    /// Nodes relaying to at least one linked child.
    pub relays: usize,
    /// The deepest node's depth (0 without nodes).
    pub depth: u32,
    /// Nodes barred now (accused by enough witnesses).
    pub barred: usize,
    /// Nodes whose address is a suspect reporter now.
    pub suspects: usize,
}

/// What a `Report` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not about the reporter's parent (a race with a move): nothing.
    Stale,
    /// The reporter is a suspect already: moved, its word not counted.
    Discounted,
    /// One more report than allowed: the reporter's address is now the
    /// suspect, its accusations withdrawn.
    Suspected,
    /// Counted against the parent, not yet enough witnesses.
    Accused,
    /// Enough witnesses: the parent is barred.
    Barred,
}

/// What the tree remembers about one address (reporter or accused),
/// across its viewers' reconnects.
#[derive(Debug, Clone)]
struct Standing {
    /// This address's counted reports within [`REPORTER_MEMORY`].
    reports: VecDeque<Instant>,
    suspect_until: Option<Instant>,
    suspicions: u32,
    barred_until: Option<Instant>,
    bars: u32,
    last: Instant,
}

impl Standing {
    fn new(now: Instant) -> Self {
        Self {
            reports: VecDeque::new(),
            suspect_until: None,
            suspicions: 0,
            barred_until: None,
            bars: 0,
            last: now,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .reports
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > REPORTER_MEMORY)
        {
            self.reports.pop_front();
        }
    }

    fn suspect(&self, now: Instant) -> bool {
        self.suspect_until.is_some_and(|u| u > now)
    }

    fn barred(&self, now: Instant) -> bool {
        self.barred_until.is_some_and(|u| u > now)
    }

    /// Nothing live left to remember.
    fn idle(&self, now: Instant) -> bool {
        !self.suspect(now)
            && !self.barred(now)
            && self.reports.is_empty()
            && now.saturating_duration_since(self.last) > FORGET
    }
}

/// `base × 2^n`, at most [`MAX_BAR`].
fn escalate(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.min(16)).min(MAX_BAR)
}

/// A distinct made-up address for node `id` (for callers without one).
pub fn origin_of(id: u64) -> AddrKey {
    AddrKey::new(
        IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(id))),
        BanScope::Address,
    )
}

#[derive(Debug, Clone)]
struct Node {
    parent: u64,
    backup: u64,
    children: BTreeSet<u64>,
    capacity: u32,
    barred: bool,
    /// Its address is a suspect reporter: fed by the server only.
    suspect: bool,
    /// The address it connected from.
    origin: AddrKey,
    /// The peer it reported last: never its parent again.
    shun: Option<u64>,
    /// Counted accusations against it within [`REPORTER_MEMORY`]: (when,
    /// accuser address).
    accusers: Vec<(Instant, AddrKey)>,
    /// Accused: takes no new children until then.
    quarantine: Option<Instant>,
    /// The data channel from `parent` is open.
    linked: bool,
    /// Join order (lower: older).
    seq: u64,
    /// Links from a parent this node lost.
    lost: u32,
    /// 1 if server-fed, else the parent's plus one (kept up to date).
    depth: u32,
    /// Strikes within [`STRIKE_WINDOW`]: (when, the striking child's
    /// address, whether a fetch: a fetch-strike is a report, weighed as
    /// one).
    strikes: VecDeque<(Instant, AddrKey, bool)>,
    /// When strikes took its slots (they come back after [`DEMOTION`]).
    demoted: Option<Instant>,
    /// Relaying to linked children without a strike since.
    good_since: Option<Instant>,
    /// The last (parent, backup) told to the viewer.
    told: Option<(u64, u64)>,
    /// When a late fetch of this node's last struck its parent.
    last_late: Option<Instant>,
    /// What the tree's indexes hold for it now (see [`Indexed`]).
    indexed: Indexed,
}

/// A node's entries in the tree's indexes, kept so an update removes
/// exactly what was inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Indexed {
    /// In `free` under this key: it can take a child now.
    free: Option<FreeKey>,
    /// In `roots`: server-fed and not out.
    root: bool,
    /// In `loose`: a root, childless, not given up on (rebalance moves it).
    loose: bool,
}

/// `free`'s order is placement's: shallowest, fewest children, oldest
/// (then the id, for a total order).
type FreeKey = (u32, usize, u64, u64);

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RelayTree {
    cfg: TreeConfig,
    /// `off` in auto mode below `min_viewers`; `always` under `--p2p on`.
    always: bool,
    nodes: BTreeMap<u64, Node>,
    seq: u64,
    /// Nodes whose parent, depth or fitness as a backup changed since the
    /// last sync (only they, and those backed by them, are looked at).
    changed: BTreeSet<u64>,
    /// When relays were last checked for growth.
    grown: Option<Instant>,
    /// Reporters' and accused addresses' standing.
    standing: HashMap<AddrKey, Standing>,
    /// The latest clock reading seen.
    now: Option<Instant>,
    /// Nodes that can take a child now (not out, not quarantined, a free
    /// slot, above `max_depth`), in placement order: so placement is a
    /// walk from the front, not a scan of every member.
    free: BTreeSet<FreeKey>,
    /// Server-fed nodes not out, as (join order, id).
    roots: BTreeSet<(u64, u64)>,
    /// Of those, the childless ones not given up on (what rebalance moves).
    loose: BTreeSet<(u64, u64)>,
    /// (backup, id) for every node with a peer backup: who to look at
    /// again when a node changes.
    backers: BTreeSet<(u64, u64)>,
}

impl RelayTree {
    /// An empty tree. `always`: use peers whatever the number of nodes
    /// (`--p2p on`); otherwise only from `cfg.min_viewers` nodes (`auto`).
    pub fn new(cfg: TreeConfig, always: bool) -> Self {
        Self {
            cfg,
            always,
            nodes: BTreeMap::new(),
            seq: 0,
            changed: BTreeSet::new(),
            grown: None,
            standing: HashMap::new(),
            now: None,
            free: BTreeSet::new(),
            roots: BTreeSet::new(),
            loose: BTreeSet::new(),
            backers: BTreeSet::new(),
        }
    }

    /// Brings node `id`'s index entries in line with its state (call after
    /// any change to its parent, depth, children, capacity, bar, suspicion,
    /// quarantine or lost links). O(log n).
    fn reindex(&mut self, id: u64) {
        let Some(n) = self.nodes.get(&id) else {
            return;
        };
        let free = (!n.out()
            && n.quarantine.is_none()
            && (n.children.len() as u32) < n.capacity
            && n.depth < self.cfg.max_depth)
            .then_some((n.depth, n.children.len(), n.seq, id));
        let root = n.parent == SERVER && !n.out();
        let want = Indexed {
            free,
            root,
            loose: root && n.children.is_empty() && n.lost < MAX_LOST_LINKS,
        };
        let (had, seq) = (n.indexed, n.seq);
        if had == want {
            return;
        }
        if had.free != want.free {
            if let Some(k) = had.free {
                self.free.remove(&k);
            }
            if let Some(k) = want.free {
                self.free.insert(k);
            }
        }
        for (set, was, is) in [
            (&mut self.roots, had.root, want.root),
            (&mut self.loose, had.loose, want.loose),
        ] {
            if was && !is {
                set.remove(&(seq, id));
            } else if is && !was {
                set.insert((seq, id));
            }
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.indexed = want;
        }
    }

    /// Removes node `id` from every index (before it leaves).
    fn unindex(&mut self, id: u64) {
        let Some(n) = self.nodes.get(&id) else {
            return;
        };
        let (had, seq, backup) = (n.indexed, n.seq, n.backup);
        if let Some(k) = had.free {
            self.free.remove(&k);
        }
        self.roots.remove(&(seq, id));
        self.loose.remove(&(seq, id));
        self.backers.remove(&(backup, id));
    }

    /// Whether peers are used now.
    pub fn active(&self) -> bool {
        self.always || self.nodes.len() >= self.cfg.min_viewers
    }

    /// Viewer `id` joins from a made-up address of its own (see
    /// [`RelayTree::join_from`]).
    pub fn join(&mut self, id: u64, now: Instant) -> Vec<Placement> {
        self.join_from(id, origin_of(id), now)
    }

    /// Viewer `id` joins (again: nothing changes) from `origin`. A viewer
    /// from a barred or suspect address starts barred or suspect. Returns
    /// the assigns, including the joiner's own.
    pub fn join_from(&mut self, id: u64, origin: AddrKey, now: Instant) -> Vec<Placement> {
        if id == SERVER || self.nodes.contains_key(&id) {
            return Vec::new();
        }
        self.now = Some(now);
        self.grow(now);
        self.seq += 1;
        let (barred, suspect) = self
            .standing
            .get(&origin)
            .map_or((false, false), |s| (s.barred(now), s.suspect(now)));
        self.nodes.insert(
            id,
            Node {
                parent: SERVER,
                backup: SERVER,
                children: BTreeSet::new(),
                capacity: if barred { 0 } else { self.cfg.fanout },
                barred,
                suspect,
                origin,
                shun: None,
                accusers: Vec::new(),
                quarantine: None,
                linked: false,
                seq: self.seq,
                lost: 0,
                depth: 1,
                strikes: VecDeque::new(),
                demoted: None,
                good_since: None,
                told: None,
                last_late: None,
                indexed: Indexed::default(),
            },
        );
        self.reindex(id);
        self.changed.insert(id);
        if self.active() {
            self.place(id, None);
        }
        self.rebalance();
        self.sync()
    }

    /// Viewer `id` left (its socket ended, or `Peering { on: false }`):
    /// its children move at once.
    pub fn leave(&mut self, id: u64) -> Vec<Placement> {
        let Some(node) = self.nodes.get(&id) else {
            return Vec::new();
        };
        let (parent, children) = (node.parent, node.children.clone());
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.remove(&id);
        }
        self.reindex(parent);
        self.unindex(id);
        self.nodes.remove(&id);
        self.changed.insert(id);
        if self.active() {
            // All off first, so no placement sees a child of the departed.
            for &c in &children {
                self.detach(c);
            }
            for c in children {
                self.place(c, None);
            }
        } else {
            self.all_to_server();
        }
        self.sync()
    }

    /// The data channel from `parent` to `child` opened (`up`) or was lost.
    /// Opened: `child` is peer-fed if `parent` is still its parent. Lost:
    /// the parent takes a strike and `child` moves elsewhere.
    pub fn link(&mut self, child: u64, parent: u64, up: bool, now: Instant) -> Vec<Placement> {
        let Some(node) = self.nodes.get(&child) else {
            return Vec::new();
        };
        if parent == SERVER || node.parent != parent {
            return Vec::new();
        }
        if up {
            self.set_linked(child, now);
            return Vec::new();
        }
        self.strike(parent, child, false, now);
        if let Some(n) = self.nodes.get_mut(&child) {
            n.lost += 1;
        }
        self.reindex(child);
        if self.nodes.get(&child).is_some_and(|n| n.parent == parent) {
            self.detach(child);
            self.place(child, Some(parent));
        }
        self.sync()
    }

    /// `child` fetched a batch its parent did not deliver in time: a strike
    /// on the parent, if the child is linked to it (a fetch while moving
    /// between parents is what the old one owed, not the new one's fault),
    /// and at most one per child per [`LATE_SPACING`] (a stall makes a
    /// child fetch several batches at once).
    pub fn late(&mut self, child: u64, now: Instant) -> Vec<Placement> {
        let Some(parent) = self.parent(child).filter(|_| self.peer_fed(child)) else {
            return Vec::new();
        };
        let Some(n) = self.nodes.get_mut(&child) else {
            return Vec::new();
        };
        if n.last_late
            .is_some_and(|t| now.saturating_duration_since(t) < LATE_SPACING)
        {
            return Vec::new();
        }
        n.last_late = Some(now);
        self.strike(parent, child, true, now);
        // Late again and again under this parent, with no one else's
        // word: the child moves (never back under it).
        let origin = self.nodes.get(&child).map(|n| n.origin);
        let own = self.nodes.get(&parent).map_or(0, |p| {
            p.strikes
                .iter()
                .filter(|&&(_, by, _)| Some(by) == origin)
                .count()
        });
        if own >= STRIKES && self.parent(child) == Some(parent) {
            if let Some(n) = self.nodes.get_mut(&child) {
                n.shun = Some(parent);
            }
            self.detach(child);
            // Its word, weighed as a report's: the second within
            // [`REPORTER_MEMORY`] makes its address the suspect.
            if let Some(origin) = origin {
                self.weigh(origin, now);
            }
            self.place(child, Some(parent));
        }
        self.sync()
    }

    /// `reporter` got bytes from `peer` failing their digest. If `peer` is
    /// not its parent (a stale report) nothing changes. Otherwise the
    /// reporter is fed by the server and never placed under `peer` again,
    /// and the report is weighed (see the module docs): the reporter may
    /// become the suspect, or `peer` be barred on enough witnesses.
    pub fn mismatch(
        &mut self,
        reporter: u64,
        peer: u64,
        now: Instant,
    ) -> (Verdict, Vec<Placement>) {
        if peer == SERVER || self.parent(reporter) != Some(peer) {
            return (Verdict::Stale, Vec::new());
        }
        let Some(accused) = self.nodes.get(&peer).map(|n| n.origin) else {
            return (Verdict::Stale, Vec::new());
        };
        self.now = Some(now);
        let Some(r) = self.nodes.get_mut(&reporter) else {
            return (Verdict::Stale, Vec::new());
        };
        r.shun = Some(peer);
        let origin = r.origin;
        self.detach(reporter);
        let verdict = match self.weigh(origin, now) {
            Verdict::Accused => {
                let Some(p) = self.nodes.get_mut(&peer) else {
                    return (Verdict::Stale, self.sync());
                };
                p.accusers
                    .retain(|&(t, _)| now.saturating_duration_since(t) <= REPORTER_MEMORY);
                if origin != accused {
                    p.accusers.push((now, origin));
                    p.quarantine = Some(now + QUARANTINE);
                }
                let witnesses: HashSet<AddrKey> = p.accusers.iter().map(|&(_, by)| by).collect();
                if witnesses.len() < WITNESSES {
                    self.reindex(peer);
                }
                let Some(p) = self.nodes.get_mut(&peer) else {
                    return (Verdict::Stale, self.sync());
                };
                if witnesses.len() >= WITNESSES {
                    p.accusers.clear();
                    p.quarantine = None;
                    let ast = self
                        .standing
                        .entry(accused)
                        .or_insert_with(|| Standing::new(now));
                    ast.last = now;
                    ast.barred_until = Some(now + escalate(BAR, ast.bars));
                    ast.bars += 1;
                    self.bar(peer);
                    Verdict::Barred
                } else {
                    Verdict::Accused
                }
            }
            v => v,
        };
        (verdict, self.sync())
    }

    /// Weighs one report (a `Report`, or fetch-strikes) from `origin`:
    /// [`Verdict::Discounted`] if it is a suspect already,
    /// [`Verdict::Suspected`] if this is one more than
    /// [`REPORTS_ALLOWED`] within [`REPORTER_MEMORY`] (its accusations and
    /// strikes are withdrawn, its viewers fed by the server), else
    /// [`Verdict::Accused`]: believed, and counted.
    fn weigh(&mut self, origin: AddrKey, now: Instant) -> Verdict {
        let st = self
            .standing
            .entry(origin)
            .or_insert_with(|| Standing::new(now));
        st.last = now;
        st.prune(now);
        if st.suspect(now) {
            return Verdict::Discounted;
        }
        if st.reports.len() < REPORTS_ALLOWED {
            st.reports.push_back(now);
            return Verdict::Accused;
        }
        st.suspect_until = Some(now + escalate(SUSPECT, st.suspicions));
        st.suspicions += 1;
        let mut freed = Vec::new();
        for (&id, n) in &mut self.nodes {
            n.accusers.retain(|&(_, by)| by != origin);
            n.strikes.retain(|&(_, by, _)| by != origin);
            if n.accusers.is_empty() && n.quarantine.take().is_some() {
                freed.push(id);
            }
        }
        for id in freed {
            self.reindex(id);
        }
        self.set_suspect(origin, true);
        Verdict::Suspected
    }

    /// Bars node `id`: fed by the server, relaying nothing.
    fn bar(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.barred = true;
        node.capacity = 0;
        node.good_since = None;
        self.reindex(id);
        self.changed.insert(id);
        self.detach(id);
        self.shed(id);
    }

    /// Marks (or clears) every node from `origin` a suspect: a suspect is
    /// fed by the server and feeds no one.
    fn set_suspect(&mut self, origin: AddrKey, on: bool) {
        let ids: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.origin == origin && n.suspect != on)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.suspect = on;
            }
            self.reindex(id);
            self.changed.insert(id);
            if on {
                self.detach(id);
                self.shed(id);
            }
        }
    }

    /// Lifts bars and suspicions that ran out; forgets idle standing.
    fn expire(&mut self, now: Instant) {
        let mut freed = Vec::new();
        for (&id, n) in &mut self.nodes {
            n.accusers
                .retain(|&(t, _)| now.saturating_duration_since(t) <= REPORTER_MEMORY);
            if n.quarantine.is_some_and(|u| u <= now) {
                n.quarantine = None;
                freed.push(id);
            }
        }
        for id in freed {
            self.reindex(id);
        }
        let mut lifted = Vec::new();
        for (&id, n) in &self.nodes {
            let st = self.standing.get(&n.origin);
            let barred = st.is_some_and(|s| s.barred(now));
            let suspect = st.is_some_and(|s| s.suspect(now));
            if (n.barred && !barred) || (n.suspect && !suspect) {
                lifted.push((id, barred, suspect));
            }
        }
        for (id, barred, suspect) in lifted {
            let fanout = self.cfg.fanout;
            if let Some(n) = self.nodes.get_mut(&id) {
                if n.barred && !barred && n.demoted.is_none() {
                    n.capacity = fanout;
                }
                n.barred = barred;
                n.suspect = suspect;
            }
            self.reindex(id);
            self.changed.insert(id);
        }
        self.standing.retain(|_, s| !s.idle(now));
    }

    /// Time passes: relays that have done well gain a slot, and server-fed
    /// nodes move under peers with free slots.
    pub fn tick(&mut self, now: Instant) -> Vec<Placement> {
        self.now = Some(now);
        self.expire(now);
        self.grow(now);
        self.rebalance();
        self.sync()
    }

    /// Whether one of `a`, `b` is the other's parent (a pair that may
    /// signal each other).
    pub fn is_pair(&self, a: u64, b: u64) -> bool {
        a != b
            && a != SERVER
            && b != SERVER
            && (self.parent(a) == Some(b) || self.parent(b) == Some(a))
    }

    /// The parent of node `id` ([`SERVER`] for a root), if it is a node.
    pub fn parent(&self, id: u64) -> Option<u64> {
        self.nodes.get(&id).map(|n| n.parent)
    }

    /// Whether `id` is fed by a peer (linked to its current parent).
    pub fn peer_fed(&self, id: u64) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.linked && n.parent != SERVER)
    }

    /// Whether `id` is a node.
    pub fn contains(&self, id: u64) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Figures for metrics.
    pub fn counts(&self) -> Counts {
        let linked = |id: &u64| self.peer_fed(*id);
        Counts {
            peering: self.nodes.len(),
            linked: self.nodes.keys().filter(|id| linked(id)).count(),
            relays: self
                .nodes
                .values()
                .filter(|n| n.children.iter().any(linked))
                .count(),
            depth: self
                .nodes
                .keys()
                .map(|&id| self.depth(id))
                .max()
                .unwrap_or(0),
            barred: self.nodes.values().filter(|n| n.barred).count(),
            suspects: self.nodes.values().filter(|n| n.suspect).count(),
        }
    }

    /// Depth of `id`: 1 if server-fed.
    fn depth(&self, id: u64) -> u32 {
        self.nodes.get(&id).map_or(1, |n| n.depth)
    }

    /// Recomputes the depth of `id`'s subtree after it moved, marking its
    /// nodes changed.
    fn redepth(&mut self, id: u64) {
        let mut queue = VecDeque::from([id]);
        while let Some(at) = queue.pop_front() {
            let parent = self.nodes[&at].parent;
            let depth = match parent {
                SERVER => 1,
                p => self.depth(p) + 1,
            };
            let n = self.nodes.get_mut(&at).expect("queued nodes exist");
            n.depth = depth;
            queue.extend(n.children.iter().copied());
            self.reindex(at);
            self.changed.insert(at);
        }
    }

    /// Whether `ancestor` is `id` or above it.
    fn is_within(&self, id: u64, ancestor: u64) -> bool {
        let mut at = id;
        for _ in 0..=self.nodes.len() {
            if at == ancestor {
                return true;
            }
            match self.nodes.get(&at) {
                Some(n) if n.parent != SERVER => at = n.parent,
                _ => return false,
            }
        }
        false
    }

    /// Height of `id`'s subtree (1: no children).
    #[cfg(test)]
    fn height(&self, id: u64) -> u32 {
        self.nodes.get(&id).map_or(0, |n| {
            1 + n
                .children
                .iter()
                .map(|&c| self.height(c))
                .max()
                .unwrap_or(0)
        })
    }

    /// Whether `c` may take `id` (with its subtree) as a child now.
    fn can_take(&self, c: u64, id: u64) -> bool {
        let Some(n) = self.nodes.get(&c) else {
            return false;
        };
        !n.out()
            && n.quarantine.is_none()
            && (n.children.len() as u32) < n.capacity
            && self.depth(c) < self.cfg.max_depth
            && !self.is_within(c, id)
    }

    /// The best parent for `id` other than `avoid`: shallowest, fewest
    /// children, oldest. Prefers the subtree to fit whole within
    /// `max_depth`; else any (its deep descendants move again).
    ///
    /// A walk of `free` from the front (it holds exactly the nodes that
    /// can take a child, in this order), skipping `avoid`, the node's
    /// shunned peer and its own subtree: O(log n) plus the subtree's free
    /// relays. The first taker is the answer whether it fits or not: any
    /// later one is as deep or deeper, so fits no better.
    fn best_parent(&self, id: u64, avoid: Option<u64>) -> Option<u64> {
        let shun = self.nodes.get(&id).and_then(|n| n.shun);
        self.free
            .iter()
            .map(|&(_, _, _, c)| c)
            .find(|&c| Some(c) != avoid && Some(c) != shun && !self.is_within(c, id))
    }

    /// [`RelayTree::best_parent`] by a scan of every member: the rule as
    /// first written, which the index must agree with (tests and the
    /// bench's before figure).
    #[cfg(test)]
    fn best_parent_by_scan(&self, id: u64, avoid: Option<u64>) -> Option<u64> {
        let height = self.height(id);
        let max = self.cfg.max_depth;
        let shun = self.nodes.get(&id).and_then(|n| n.shun);
        self.nodes
            .iter()
            .filter(|&(&c, n)| {
                Some(c) != avoid
                    && Some(c) != shun
                    && !n.out()
                    && n.quarantine.is_none()
                    && (n.children.len() as u32) < n.capacity
                    && n.depth < max
            })
            .filter(|&(&c, _)| !self.is_within(c, id))
            .min_by_key(|&(_, n)| (n.depth + height > max, n.depth, n.children.len(), n.seq))
            .map(|(&c, _)| c)
    }

    /// Takes `id` off its parent (it becomes server-fed, unlinked).
    fn detach(&mut self, id: u64) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let parent = std::mem::replace(&mut n.parent, SERVER);
        n.linked = false;
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.remove(&id);
        }
        self.reindex(parent);
        self.redepth(id);
    }

    /// Puts detached `id` under its backup if that can take it, else the
    /// best parent (not `avoid`), else leaves it server-fed; then moves
    /// descendants pushed past `max_depth`. Returns whether it found a
    /// parent.
    fn place(&mut self, id: u64, avoid: Option<u64>) -> bool {
        if !self.active()
            || self
                .nodes
                .get(&id)
                .is_none_or(|n| n.out() || n.lost >= MAX_LOST_LINKS)
        {
            return false;
        }
        let (backup, shun) = (self.nodes[&id].backup, self.nodes[&id].shun);
        let parent = if backup != SERVER
            && Some(backup) != avoid
            && Some(backup) != shun
            && self.can_take(backup, id)
        {
            Some(backup)
        } else {
            self.best_parent(id, avoid)
        };
        let Some(p) = parent else {
            return false;
        };
        self.attach(id, p);
        self.fix_depths(id);
        true
    }

    fn attach(&mut self, id: u64, parent: u64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.parent = parent;
            n.linked = false;
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(id);
        }
        self.reindex(parent);
        self.redepth(id);
    }

    /// Moves the descendants of `id` that are deeper than `max_depth`.
    fn fix_depths(&mut self, id: u64) {
        let mut deep = Vec::new();
        let mut queue = VecDeque::from([id]);
        while let Some(at) = queue.pop_front() {
            if self.depth(at) > self.cfg.max_depth {
                deep.push(at);
                continue;
            }
            queue.extend(self.nodes[&at].children.iter().copied());
        }
        for d in deep {
            self.detach(d);
            self.place(d, None);
        }
    }

    /// Moves every child of `id` elsewhere (it relays no more).
    fn shed(&mut self, id: u64) {
        let children = self.nodes[&id].children.clone();
        for &c in &children {
            self.detach(c);
        }
        for c in children {
            self.place(c, Some(id));
        }
    }

    /// A strike on `id` by its child `by` (`fetch`: a late fetch, else a
    /// lost link): [`STRIKES`] within the window, from two addresses or
    /// more, demote it (no slots for [`DEMOTION`]). Before it is demoted,
    /// each address that fetch-struck it is weighed as a reporter: one
    /// believed already (it struck another parent into demotion, or moved
    /// itself off one, within [`REPORTER_MEMORY`]) becomes the suspect, its
    /// strikes withdrawn, and the rest must still suffice.
    fn strike(&mut self, id: u64, by: u64, fetch: bool, now: Instant) {
        let Some(by) = self.nodes.get(&by).map(|n| n.origin) else {
            return;
        };
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        n.good_since = None;
        n.strikes.push_back((now, by, fetch));
        while n
            .strikes
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > STRIKE_WINDOW)
        {
            n.strikes.pop_front();
        }
        let demotes = |n: &Node| {
            n.strikes.len() >= STRIKES && n.strikes.iter().any(|&(_, o, _)| o != n.strikes[0].1)
        };
        if !demotes(n) {
            return;
        }
        // In strike order (deterministic), once each.
        let mut fetchers: Vec<AddrKey> = Vec::new();
        for &(_, o, f) in &n.strikes {
            if f && !fetchers.contains(&o) {
                fetchers.push(o);
            }
        }
        for origin in fetchers {
            self.weigh(origin, now);
        }
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if demotes(n) {
            n.capacity = 0;
            n.demoted = Some(now);
            n.strikes.clear();
            self.reindex(id);
            self.changed.insert(id);
            self.shed(id);
        }
    }

    fn set_linked(&mut self, child: u64, now: Instant) {
        let Some(n) = self.nodes.get_mut(&child) else {
            return;
        };
        n.linked = true;
        let parent = n.parent;
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.good_since.get_or_insert(now);
        }
    }

    /// Gives a slot to each relay that has relayed without a strike for
    /// [`GROW_AFTER`].
    fn grow(&mut self, now: Instant) {
        // At most once a second: slots are earned over tens of seconds.
        if self
            .grown
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.grown = Some(now);
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let relaying = self.nodes[&id]
                .children
                .iter()
                .any(|c| self.nodes[c].linked);
            let (max, fanout) = (self.cfg.max_fanout, self.cfg.fanout);
            let n = self.nodes.get_mut(&id).expect("listed");
            let capacity = n.capacity;
            if let Some(at) = n.demoted
                && now.saturating_duration_since(at) >= DEMOTION
            {
                n.demoted = None;
                if !n.barred {
                    n.capacity = fanout;
                }
            }
            if !relaying {
                n.good_since = None;
            } else if let Some(since) = n.good_since
                && now.saturating_duration_since(since) >= GROW_AFTER
                && n.capacity > 0
                && n.capacity < max
            {
                n.capacity += 1;
                n.good_since = Some(now);
            }
            if n.capacity != capacity {
                self.reindex(id);
            }
        }
    }

    /// Moves server-fed childless nodes beyond the first root under peers
    /// with free slots.
    fn rebalance(&mut self) {
        if !self.active() {
            return;
        }
        // The oldest root that can relay stays a root (`roots` is in join
        // order; demoted roots are few).
        let keep = self
            .roots
            .iter()
            .find(|(_, id)| self.nodes[id].capacity > 0)
            .map(|&(_, id)| id);
        // The loose roots in join order, read live (a placement changes
        // which roots are childless).
        let mut after = (0, 0);
        while let Some(&(seq, id)) = self
            .loose
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .next()
        {
            after = (seq, id);
            if Some(id) == keep {
                continue;
            }
            // A childless node nobody can take means no free slot is left
            // for any: stop.
            if !self.place(id, None) {
                break;
            }
        }
    }

    fn all_to_server(&mut self) {
        for (&id, n) in &mut self.nodes {
            n.parent = SERVER;
            n.depth = 1;
            n.linked = false;
            n.children.clear();
            self.changed.insert(id);
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.reindex(id);
        }
    }

    /// Whether `id`'s backup is still one it could be moved to.
    fn backup_valid(&self, id: u64) -> bool {
        let n = &self.nodes[&id];
        let b = n.backup;
        if n.parent == SERVER {
            return b == SERVER;
        }
        b == SERVER
            || (b != n.parent
                && self
                    .nodes
                    .get(&b)
                    .is_some_and(|bn| !bn.out() && bn.capacity > 0)
                && n.shun != Some(b)
                && self.depth(b) < self.cfg.max_depth
                && !self.is_within(b, id))
    }

    /// Refreshes stale backups and returns an assign for every viewer
    /// whose parent or backup differs from what it was last told. Looks
    /// only at the changed nodes and those they back up.
    fn sync(&mut self) -> Vec<Placement> {
        let changed = std::mem::take(&mut self.changed);
        // The changed nodes and those they back up, in id order.
        let mut dirty: BTreeSet<u64> = changed
            .iter()
            .copied()
            .filter(|id| self.nodes.contains_key(id))
            .collect();
        for &c in &changed {
            dirty.extend(
                self.backers
                    .range((c, 0)..=(c, u64::MAX))
                    .map(|&(_, id)| id),
            );
        }
        let mut out = Vec::new();
        for id in dirty {
            if !self.backup_valid(id) {
                let parent = self.nodes[&id].parent;
                let backup = match parent {
                    SERVER => None,
                    p => self.best_parent(id, Some(p)),
                }
                .unwrap_or(SERVER);
                let old =
                    std::mem::replace(&mut self.nodes.get_mut(&id).expect("listed").backup, backup);
                self.backers.remove(&(old, id));
                if backup != SERVER {
                    self.backers.insert((backup, id));
                }
            }
            let n = self.nodes.get_mut(&id).expect("listed");
            let view = (n.parent, n.backup);
            if n.told != Some(view) {
                n.told = Some(view);
                out.push(Placement {
                    viewer: id,
                    assign: Assign {
                        parent: view.0,
                        backup: view.1,
                    },
                });
            }
        }
        out
    }
}

impl Node {
    /// Barred or suspect: takes no children, has no peer parent.
    fn out(&self) -> bool {
        self.barred || self.suspect
    }
}

#[cfg(test)]
mod tests;
