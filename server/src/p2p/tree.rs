//! The relay tree, sans-IO: who feeds whom.
//!
//! Every viewer that joined (`Peering { on: true }`) is a node. A node's
//! parent is another node or [`SERVER`]; the server feeds the roots. The
//! tree decides, the connections only carry out: every operation returns
//! the [`Command`]s (an `Assign` for one viewer) that bring each affected
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
//!   [`STRIKE_WINDOW`] demote it to no slots: its children move.
//! - **Barred.** A node reported for bytes failing their digest relays
//!   nothing again and is fed by the server.
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use donut_shared::wire::p2p::{Assign, SERVER};

/// Strikes within [`STRIKE_WINDOW`] that demote a relay.
pub const STRIKES: usize = 3;
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
pub struct Command {
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
}

#[derive(Debug, Clone)]
struct Node {
    parent: u64,
    backup: u64,
    children: BTreeSet<u64>,
    capacity: u32,
    barred: bool,
    /// The data channel from `parent` is open.
    linked: bool,
    /// Join order (lower: older).
    seq: u64,
    /// Links from a parent this node lost.
    lost: u32,
    /// 1 if server-fed, else the parent's plus one (kept up to date).
    depth: u32,
    strikes: VecDeque<Instant>,
    /// Relaying to linked children without a strike since.
    good_since: Option<Instant>,
    /// The last (parent, backup) told to the viewer.
    told: Option<(u64, u64)>,
    /// When a late fetch of this node's last struck its parent.
    last_late: Option<Instant>,
}

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
        }
    }

    /// Whether peers are used now.
    pub fn active(&self) -> bool {
        self.always || self.nodes.len() >= self.cfg.min_viewers
    }

    /// Viewer `id` joins (again: nothing changes). Returns the assigns,
    /// including the joiner's own.
    pub fn join(&mut self, id: u64, now: Instant) -> Vec<Command> {
        if id == SERVER || self.nodes.contains_key(&id) {
            return Vec::new();
        }
        self.grow(now);
        self.seq += 1;
        self.nodes.insert(
            id,
            Node {
                parent: SERVER,
                backup: SERVER,
                children: BTreeSet::new(),
                capacity: self.cfg.fanout,
                barred: false,
                linked: false,
                seq: self.seq,
                lost: 0,
                depth: 1,
                strikes: VecDeque::new(),
                good_since: None,
                told: None,
                last_late: None,
            },
        );
        self.changed.insert(id);
        if self.active() {
            self.place(id, None);
        }
        self.rebalance();
        self.sync()
    }

    /// Viewer `id` left (its socket ended, or `Peering { on: false }`):
    /// its children move at once.
    pub fn leave(&mut self, id: u64) -> Vec<Command> {
        let Some(node) = self.nodes.get(&id) else {
            return Vec::new();
        };
        let (parent, children) = (node.parent, node.children.clone());
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.remove(&id);
        }
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
    pub fn link(&mut self, child: u64, parent: u64, up: bool, now: Instant) -> Vec<Command> {
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
        self.strike(parent, now);
        if let Some(n) = self.nodes.get_mut(&child) {
            n.lost += 1;
        }
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
    pub fn late(&mut self, child: u64, now: Instant) -> Vec<Command> {
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
        self.strike(parent, now);
        self.sync()
    }

    /// `reporter` got bytes from `peer` failing their digest. If `peer` is
    /// its parent, `peer` is barred: fed by the server, relaying nothing,
    /// its children moved. Otherwise (a stale report) nothing changes.
    pub fn mismatch(&mut self, reporter: u64, peer: u64) -> Vec<Command> {
        if peer == SERVER || self.parent(reporter) != Some(peer) {
            return Vec::new();
        }
        let Some(node) = self.nodes.get_mut(&peer) else {
            return Vec::new();
        };
        node.barred = true;
        node.capacity = 0;
        node.good_since = None;
        self.changed.insert(peer);
        self.detach(peer);
        self.shed(peer);
        self.sync()
    }

    /// Time passes: relays that have done well gain a slot, and server-fed
    /// nodes move under peers with free slots.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
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
        !n.barred
            && (n.children.len() as u32) < n.capacity
            && self.depth(c) < self.cfg.max_depth
            && !self.is_within(c, id)
    }

    /// The best parent for `id` other than `avoid`: shallowest, fewest
    /// children, oldest. Prefers the subtree to fit whole within
    /// `max_depth`; else any (its deep descendants move again).
    fn best_parent(&self, id: u64, avoid: Option<u64>) -> Option<u64> {
        let height = self.height(id);
        let max = self.cfg.max_depth;
        self.nodes
            .iter()
            // The cheap tests first: most nodes fail them in a full tree.
            .filter(|&(&c, n)| {
                Some(c) != avoid
                    && !n.barred
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
                .is_none_or(|n| n.barred || n.lost >= MAX_LOST_LINKS)
        {
            return false;
        }
        let backup = self.nodes[&id].backup;
        let parent = if backup != SERVER && Some(backup) != avoid && self.can_take(backup, id) {
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

    fn strike(&mut self, id: u64, now: Instant) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        n.good_since = None;
        n.strikes.push_back(now);
        while n
            .strikes
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > STRIKE_WINDOW)
        {
            n.strikes.pop_front();
        }
        if n.strikes.len() >= STRIKES {
            n.capacity = 0;
            n.strikes.clear();
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
            let max = self.cfg.max_fanout;
            let n = self.nodes.get_mut(&id).expect("listed");
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
        }
    }

    /// Moves server-fed childless nodes beyond the first root under peers
    /// with free slots.
    fn rebalance(&mut self) {
        if !self.active() {
            return;
        }
        let mut roots: Vec<(u64, u64)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.parent == SERVER && !n.barred)
            .map(|(&id, n)| (n.seq, id))
            .collect();
        roots.sort_unstable();
        let keep = roots
            .iter()
            .find(|(_, id)| self.nodes[id].capacity > 0)
            .map(|&(_, id)| id);
        for (_, id) in roots {
            // A childless node nobody can take means no free slot is left
            // for any: stop (the scan stays linear when the tree is full).
            let n = &self.nodes[&id];
            if Some(id) == keep || !n.children.is_empty() || n.lost >= MAX_LOST_LINKS {
                continue;
            }
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
                    .is_some_and(|bn| !bn.barred && bn.capacity > 0)
                && self.depth(b) < self.cfg.max_depth
                && !self.is_within(b, id))
    }

    /// Refreshes stale backups and returns an assign for every viewer
    /// whose parent or backup differs from what it was last told. Looks
    /// only at the changed nodes and those they back up.
    fn sync(&mut self) -> Vec<Command> {
        let changed = std::mem::take(&mut self.changed);
        let dirty: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(id, n)| changed.contains(id) || changed.contains(&n.backup))
            .map(|(&id, _)| id)
            .collect();
        let mut out = Vec::new();
        for id in dirty {
            if !self.backup_valid(id) {
                let parent = self.nodes[&id].parent;
                let backup = match parent {
                    SERVER => None,
                    p => self.best_parent(id, Some(p)),
                };
                self.nodes.get_mut(&id).expect("listed").backup = backup.unwrap_or(SERVER);
            }
            let n = self.nodes.get_mut(&id).expect("listed");
            let view = (n.parent, n.backup);
            if n.told != Some(view) {
                n.told = Some(view);
                out.push(Command {
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

#[cfg(test)]
mod tests;
