//! The page's relay policy, sans-IO: which links this tab holds, what it
//! tells the server, and which batches it plays, decided from the events
//! it is given and nothing else (quinn-proto's style, and the server's
//! `p2p::tree` with its `Command`s).
//!
//! Events in: the user's switch ([`RelayPolicy::set_wanted`]), the socket
//! opening and closing, a relay message from the server
//! ([`RelayPolicy::on_server`]), an event of a link
//! ([`RelayPolicy::on_link`]), the clock ([`RelayPolicy::on_tick`],
//! `performance.now()` ms and the frame playing now), and what became of
//! the actions it asked for ([`RelayPolicy::joined`],
//! [`RelayPolicy::open_failed`], [`RelayPolicy::delivered`]). Actions out,
//! in order, from [`RelayPolicy::poll_action`]: an [`Action`] to send on
//! the socket, a link to open, feed or close, a batch to play. The
//! [`Relay`](super::Relay) executes them on the WebSocket and the
//! `RTCPeerConnection`s; this type touches neither, and is tested
//! natively and as wasm.
//!
//! Its rules:
//!
//! - A parent link whose data channel has not opened [`LINK_TIMEOUT_MS`]
//!   after it was made is given up.
//! - A parent link lost before it opened counts as failed; after
//!   [`MAX_FAILED_LINKS`] the tab leaves the tree (`Peering { on: false }`)
//!   and is served by the server only.
//! - A parent lost, replaced or caught lying (a batch failing its digest:
//!   reported) owes its announced batches: each is fetched from the server
//!   at once. A batch late on the clock is fetched too ([`Gate::due`]).
//! - A child whose data channel refuses a batch while open (too slow, its
//!   buffer full) is dropped: it falls back to the server.
//! - At most [`MAX_CHILDREN`] children; offers are answered within the
//!   [`OfferBudget`].

use std::collections::VecDeque;

use donut_shared::wire::p2p::SERVER;
use donut_shared::wire::{
    Fetch, FromViewer, Link, Peering, Proof, Report, Signal, SignalKind, ToViewer,
};

use super::gate::{Gate, Key, Verdict};
use super::offers::OfferBudget;
use crate::batch::Batch;

/// Most children this tab feeds at once, whatever the server asks (the
/// server's own limit is lower; this bounds what a buggy or hostile
/// server could make the page open).
pub const MAX_CHILDREN: usize = 16;
/// Longest a parent's data channel may take to open before the link is
/// given up as failed (ICE usually connects in well under a second, or
/// fails: a peer behind a NAT it cannot cross).
pub const LINK_TIMEOUT_MS: f64 = 8_000.0;
/// Parent links that may fail in a row before this tab leaves the tree
/// and is served by the server only: a tab that can reach no peer should
/// not keep opening connections (Chromium allows 500 in a tab's life).
pub const MAX_FAILED_LINKS: u32 = 3;

/// Which end of the link this viewer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// This viewer is fed over the link (it offers).
    Child,
    /// This viewer feeds the link (it answers).
    Parent,
}

/// What to do next, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (an encoded `FromViewer`) on the socket.
    Send(Vec<u8>),
    /// Send `Peering { on: true }` and report with
    /// [`RelayPolicy::joined`] whether it went out.
    Join,
    /// Make link `serial` to `peer` as `role` (a child opens its channel
    /// and offers); if it cannot be made, report
    /// [`RelayPolicy::open_failed`].
    Open {
        /// The link's serial number (its events carry it).
        serial: u32,
        /// The other viewer's peer id.
        peer: u64,
        /// This tab's end of the link.
        role: PeerRole,
    },
    /// Apply the peer's offer (then answer) or answer `sdp` to link
    /// `serial`.
    ApplyRemote {
        /// The link.
        serial: u32,
        /// `Offer` or `Answer`.
        kind: SignalKind,
        /// The session description.
        sdp: String,
    },
    /// Add the peer's ICE candidate `line` to link `serial`.
    AddCandidate {
        /// The link.
        serial: u32,
        /// The candidate line.
        line: String,
    },
    /// Close link `serial` and forget it.
    Close(u32),
    /// Play this batch (bytes a digest vouched for), then pass it on.
    Play(Batch),
}

/// What happened on a link, as far as the policy cares (the link's own
/// plumbing, its channel and queued candidates, stays with the link).
#[derive(Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The local offer or answer is ready to send to the peer.
    Description(SignalKind, String),
    /// A local ICE candidate line to send to the peer.
    Candidate(String),
    /// The data channel opened.
    Open,
    /// The link closed or failed; `open`: whether its channel still
    /// reported open at that moment.
    Closed {
        /// The channel's state when the link was lost.
        open: bool,
    },
    /// A binary message from the peer.
    Message(Vec<u8>),
}

/// What became of a batch passed on to a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// It went into the channel.
    Sent,
    /// The channel is not open (yet): nothing to do.
    NotOpen,
    /// The channel is open but refused it (full, or the send failed): the
    /// child is too slow to feed.
    Refused,
}

/// What the relay did, for the page's panel and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Batches taken from the parent peer (verified).
    pub batches_from_peer: u64,
    /// Their bytes.
    pub bytes_from_peer: u64,
    /// Batches taken from the server (direct or fetched).
    pub batches_from_server: u64,
    /// Batches passed on to children (one count per child).
    pub batches_relayed: u64,
    /// Their bytes.
    pub bytes_relayed: u64,
    /// Batches fetched from the server because the parent was late or lost.
    pub fetches: u64,
    /// Batches from the parent that failed their digest.
    pub mismatches: u64,
    /// Parents dropped or lost.
    pub parents_lost: u64,
}

/// One link the policy holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    serial: u32,
    peer: u64,
    /// Its data channel opened.
    open: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct RelayPolicy {
    /// The user lets this tab relay.
    wanted: bool,
    /// `Peering { on: true }` went out on the current socket.
    joined: bool,
    /// This tab's peer id, from the server's `Welcome`.
    id: Option<u64>,
    ice_servers: Vec<String>,
    /// The assigned parent ([`SERVER`] or a peer) and backup.
    parent_id: u64,
    backup: u64,
    parent: Option<Held>,
    /// When the parent link was made (`performance.now()` ms).
    parent_since: f64,
    /// Parent links that failed so far.
    failed_links: u32,
    children: Vec<Held>,
    /// Offers this tab may still answer (each is a new connection).
    offers: OfferBudget,
    gate: Gate,
    next_serial: u32,
    stats: RelayStats,
    actions: VecDeque<Action>,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayPolicy {
    /// A policy that is off until [`RelayPolicy::set_wanted`].
    pub fn new() -> Self {
        Self {
            wanted: false,
            joined: false,
            id: None,
            ice_servers: Vec::new(),
            parent_id: SERVER,
            backup: SERVER,
            parent: None,
            parent_since: 0.0,
            failed_links: 0,
            children: Vec::new(),
            offers: OfferBudget::new(),
            gate: Gate::new(),
            next_serial: 0,
            stats: RelayStats::default(),
            actions: VecDeque::new(),
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The user turned relaying on or off. Off: every link closes and the
    /// server is told, so it serves this tab itself from now on.
    pub fn set_wanted(&mut self, on: bool) {
        self.wanted = on;
        if on && !self.joined {
            self.actions.push_back(Action::Join);
        } else if !on && self.joined {
            self.send(&Peering { on: false }.to_bytes());
            self.leave();
        }
    }

    /// Whether the [`Action::Join`] went out on the socket.
    pub fn joined(&mut self, sent: bool) {
        self.joined = sent;
    }

    /// The socket opened (again): the server knows nothing of this tab's
    /// links, so they are all dropped and the tab joins afresh.
    pub fn on_open(&mut self) {
        self.leave();
        self.gate.reset();
        if self.wanted {
            self.actions.push_back(Action::Join);
        }
    }

    /// The socket closed: the server has forgotten this tab's place in the
    /// tree and its children are being moved; the links go.
    pub fn on_closed(&mut self) {
        self.leave();
    }

    /// A relay message from the server at `now_ms` (the player handles
    /// `Frames` and `Telemetry`).
    pub fn on_server(&mut self, msg: &ToViewer<'_>, now_ms: f64) {
        match *msg {
            ToViewer::Welcome(w) => {
                self.id = Some(w.id);
                self.ice_servers = w.ice_server_urls().map(str::to_owned).collect();
            }
            ToViewer::Assign(a) => self.assign(a.parent, a.backup, now_ms),
            ToViewer::Signal(s) => self.on_signal(&s, now_ms),
            ToViewer::Digest(d) => {
                if let Some(verdict) = self.gate.announce(d, now_ms) {
                    self.on_verdict(verdict);
                }
            }
            ToViewer::Frames(_)
            | ToViewer::Telemetry(_)
            | ToViewer::InputRefused(_)
            | ToViewer::Keyframe(_) => {}
        }
    }

    /// A `Frames` message came from the server: whether it is new (to play
    /// and relay) rather than a copy of one already played.
    pub fn server_batch(&mut self, key: Key) -> bool {
        let fresh = self.gate.from_server(key);
        if fresh {
            self.stats.batches_from_server += 1;
        }
        fresh
    }

    /// An event of the link numbered `serial` (ignored unless this policy
    /// holds that link).
    pub fn on_link(&mut self, serial: u32, event: LinkState) {
        let is_parent = self.parent.is_some_and(|l| l.serial == serial);
        let Some(link) = self.held_mut(serial) else {
            return;
        };
        let peer = link.peer;
        match event {
            LinkState::Description(kind, sdp) => self.send_signal(peer, kind, &sdp),
            LinkState::Candidate(line) => self.send_signal(peer, SignalKind::Candidate, &line),
            LinkState::Open => {
                link.open = true;
                if is_parent {
                    self.send(
                        &Link {
                            parent: peer,
                            up: true,
                        }
                        .to_bytes(),
                    );
                }
            }
            LinkState::Closed { open } => {
                link.open = open;
                self.drop_link(serial);
            }
            LinkState::Message(bytes) if is_parent => {
                let verdict = self.gate.from_peer(bytes);
                self.on_verdict(verdict);
            }
            // Children never send: a hostile one's bytes are dropped.
            LinkState::Message(_) => {}
        }
    }

    /// The clock: asks the server for every announced batch that is late
    /// (see [`Gate::due`]); `due_frame` is the frame playing now. A parent
    /// link that has not opened in [`LINK_TIMEOUT_MS`] is given up.
    pub fn on_tick(&mut self, now_ms: f64, due_frame: Option<u64>) {
        if !self.joined {
            return;
        }
        let stuck = self
            .parent
            .filter(|p| !p.open && now_ms - self.parent_since > LINK_TIMEOUT_MS)
            .map(|p| p.serial);
        if let Some(serial) = stuck {
            self.drop_link(serial);
        }
        let late = self.gate.due(now_ms, due_frame);
        self.send_fetches(late);
    }

    /// The links a batch about to be played is passed on to (report each
    /// with [`RelayPolicy::delivered`]).
    pub fn feeding(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.serial).collect()
    }

    /// What became of `len` bytes passed on to child link `serial`. A child
    /// too slow to take them is dropped (it falls back to the server).
    pub fn delivered(&mut self, serial: u32, len: usize, delivery: Delivery) {
        match delivery {
            Delivery::Sent => {
                self.stats.batches_relayed += 1;
                self.stats.bytes_relayed += len as u64;
            }
            Delivery::NotOpen => {}
            Delivery::Refused => {
                if let Some(at) = self.children.iter().position(|c| c.serial == serial) {
                    self.children.remove(at);
                    self.actions.push_back(Action::Close(serial));
                }
            }
        }
    }

    /// Link `serial` of an [`Action::Open`] could not be made.
    pub fn open_failed(&mut self, serial: u32) {
        if let Some(parent) = self.parent.take_if(|p| p.serial == serial) {
            self.send(
                &Link {
                    parent: parent.peer,
                    up: false,
                }
                .to_bytes(),
            );
        } else {
            self.children.retain(|c| c.serial != serial);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// This tab's peer id, once the server gave one.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Whether this tab is in the tree.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// The ICE servers the server named (none: host candidates only).
    pub fn ice_servers(&self) -> &[String] {
        &self.ice_servers
    }

    /// The assigned parent ([`SERVER`]: 0) and the serial of the link to
    /// it, if one is held.
    pub fn parent(&self) -> (u64, Option<u32>) {
        (self.parent_id, self.parent.map(|p| p.serial))
    }

    /// The assigned backup parent.
    pub fn backup(&self) -> u64 {
        self.backup
    }

    fn send(&mut self, bytes: &[u8]) {
        self.actions.push_back(Action::Send(bytes.to_vec()));
    }

    fn send_signal(&mut self, peer: u64, kind: SignalKind, text: &str) {
        let msg = FromViewer::Signal(Signal { peer, kind, text });
        self.actions.push_back(Action::Send(msg.to_vec()));
    }

    fn leave(&mut self) {
        self.joined = false;
        self.id = None;
        if let Some(parent) = self.parent.take() {
            self.actions.push_back(Action::Close(parent.serial));
        }
        self.parent_id = SERVER;
        self.backup = SERVER;
        for child in std::mem::take(&mut self.children) {
            self.actions.push_back(Action::Close(child.serial));
        }
    }

    fn serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    fn held_mut(&mut self, serial: u32) -> Option<&mut Held> {
        if let Some(p) = self.parent.as_mut().filter(|l| l.serial == serial) {
            return Some(p);
        }
        self.children.iter_mut().find(|l| l.serial == serial)
    }

    /// The server moved this tab under `parent`.
    fn assign(&mut self, parent: u64, backup: u64, now_ms: f64) {
        self.backup = backup;
        if parent == self.parent_id && (parent == SERVER || self.parent.is_some()) {
            return;
        }
        // Whatever the old parent still owed comes from the server now.
        if let Some(old) = self.parent.take() {
            self.actions.push_back(Action::Close(old.serial));
        }
        self.parent_id = parent;
        self.fetch_pending();
        if parent == SERVER || Some(parent) == self.id {
            return;
        }
        let serial = self.serial();
        self.parent = Some(Held {
            serial,
            peer: parent,
            open: false,
        });
        self.parent_since = now_ms;
        self.actions.push_back(Action::Open {
            serial,
            peer: parent,
            role: PeerRole::Child,
        });
    }

    fn on_signal(&mut self, s: &Signal<'_>, now_ms: f64) {
        if !self.joined {
            return;
        }
        match s.kind {
            SignalKind::Offer => {
                if self.offers.allow(s.peer, now_ms) {
                    self.adopt(s.peer, s.text);
                }
            }
            SignalKind::Answer => {
                if let Some(p) = self.parent.filter(|p| p.peer == s.peer) {
                    self.actions.push_back(Action::ApplyRemote {
                        serial: p.serial,
                        kind: SignalKind::Answer,
                        sdp: s.text.to_owned(),
                    });
                }
            }
            SignalKind::Candidate => {
                let link = match self.parent.filter(|p| p.peer == s.peer) {
                    Some(p) => Some(p),
                    None => self.children.iter().find(|c| c.peer == s.peer).copied(),
                };
                if let Some(link) = link {
                    self.actions.push_back(Action::AddCandidate {
                        serial: link.serial,
                        line: s.text.to_owned(),
                    });
                }
            }
        }
    }

    /// A child's offer: answer it on a fresh link (replacing any earlier
    /// link to that child).
    fn adopt(&mut self, child: u64, offer: &str) {
        let (gone, kept) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| c.peer == child);
        self.children = kept;
        for old in gone {
            self.actions.push_back(Action::Close(old.serial));
        }
        if self.children.len() >= MAX_CHILDREN {
            return;
        }
        let serial = self.serial();
        self.children.push(Held {
            serial,
            peer: child,
            open: false,
        });
        self.actions.push_back(Action::Open {
            serial,
            peer: child,
            role: PeerRole::Parent,
        });
        self.actions.push_back(Action::ApplyRemote {
            serial,
            kind: SignalKind::Offer,
            sdp: offer.to_owned(),
        });
    }

    fn on_verdict(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Play(batch) => {
                self.stats.batches_from_peer += 1;
                self.stats.bytes_from_peer += batch.bytes().len() as u64;
                // Tell the server, with proof, that a peer delivered it:
                // its offload figure counts only proven deliveries.
                if let Some(id) = self.id {
                    let (start, timeline) = batch.key();
                    self.send(&Proof::of(id, start, timeline, batch.bytes()).to_bytes());
                }
                self.actions.push_back(Action::Play(batch));
            }
            Verdict::Held | Verdict::Duplicate => {}
            Verdict::Mismatch { key } => {
                self.stats.mismatches += 1;
                let (start, timeline) = key;
                self.send(
                    &Report {
                        peer: self.parent_id,
                        start,
                        timeline,
                    }
                    .to_bytes(),
                );
                if let Some(serial) = self.parent.map(|p| p.serial) {
                    self.drop_link(serial);
                }
            }
        }
    }

    /// A link closed or misbehaved: a child is forgotten; the parent is
    /// dropped, the server told (it serves this tab and finds another
    /// parent), and what it still owed is fetched.
    fn drop_link(&mut self, serial: u32) {
        if let Some(parent) = self.parent.take_if(|p| p.serial == serial) {
            if !parent.open {
                self.failed_links += 1;
            }
            self.actions.push_back(Action::Close(serial));
            self.stats.parents_lost += 1;
            self.send(
                &Link {
                    parent: self.parent_id,
                    up: false,
                }
                .to_bytes(),
            );
            self.fetch_pending();
            if self.failed_links >= MAX_FAILED_LINKS {
                // No peer is reachable from here: the server feeds this tab.
                self.send(&Peering { on: false }.to_bytes());
                self.leave();
            }
        } else if let Some(at) = self.children.iter().position(|c| c.serial == serial) {
            self.children.remove(at);
            self.actions.push_back(Action::Close(serial));
        }
    }

    fn fetch_pending(&mut self) {
        let owed = self.gate.fetch_all_pending();
        self.send_fetches(owed);
    }

    fn send_fetches(&mut self, fetches: Vec<Fetch>) {
        for fetch in fetches {
            self.stats.fetches += 1;
            self.send(&fetch.to_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
