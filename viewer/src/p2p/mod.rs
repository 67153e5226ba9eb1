//! The peer relay on the page: this tab takes the broadcast from a parent
//! viewer over a WebRTC data channel instead of from the server, and
//! passes it on to its own children, byte for byte.
//!
//! The server decides who feeds whom (its relay tree: each viewer gets a
//! parent, the server itself or a peer, and a backup) and carries the
//! WebRTC signalling over this tab's WebSocket
//! ([`donut_shared::wire::p2p`]). It stays the source of truth: it
//! announces every batch a peer-fed tab should get by its BLAKE3 digest,
//! and the [`gate`] lets a batch from a peer be played or relayed only if
//! its bytes match. A mismatch drops that parent, reports it and fetches
//! the batch from the server; so does a batch late enough to stall
//! playback (the deadline fallback). A peer can slow this tab down to the
//! server's own pace, never make it play a wrong frame.
//!
//! A tab joins only if its user lets it (the page's switch, `?p2p=0`):
//! relaying costs upload bandwidth and shows this tab's network address to
//! its parent and children. A tab that never joins is served exactly as
//! without P2P.
//!
//! - [`gate`]: the digest check and the deadlines (plain Rust, tested
//!   natively).
//! - [`link`]: one `RTCPeerConnection` and its data channel.
//! - [`Relay`] (here): the tab's links, driven by the server's messages,
//!   the links' events and the clock.

pub mod gate;
pub mod link;
pub mod offers;

use donut_browser::socket::Socket;
use donut_shared::wire::p2p::SERVER;
use donut_shared::wire::{
    Fetch, FromViewer, Link as LinkMsg, Peering, Proof, Report, Signal, SignalKind, ToViewer,
};

use self::gate::{Gate, Key, Verdict};
use self::link::{Link, LinkEvent, Role, Sink};
use self::offers::OfferBudget;

/// Most children this tab feeds at once, whatever the server asks (the
/// server's own limit is lower; this bounds what a buggy or hostile
/// server could make the page open).
const MAX_CHILDREN: usize = 16;
/// Longest a parent's data channel may take to open before the link is
/// given up as failed (ICE usually connects in well under a second, or
/// fails: a peer behind a NAT it cannot cross).
pub const LINK_TIMEOUT_MS: f64 = 8_000.0;
/// Parent links that may fail in a row before this tab leaves the tree
/// and is served by the server only: a tab that can reach no peer should
/// not keep opening connections (Chromium allows 500 in a tab's life).
pub const MAX_FAILED_LINKS: u32 = 3;

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

/// See the module docs.
pub struct Relay {
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
    parent: Option<Link>,
    /// When the parent link was made (`performance.now()` ms).
    parent_since: f64,
    /// Parent links that failed in a row (reset when one opens).
    failed_links: u32,
    children: Vec<Link>,
    /// Offers this tab may still answer (each is a new connection).
    offers: OfferBudget,
    gate: Gate,
    next_serial: u32,
    sink: Sink,
    stats: RelayStats,
}

impl Relay {
    /// A relay whose links report to `sink`; off until
    /// [`Relay::set_wanted`].
    pub fn new(sink: Sink) -> Self {
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
            sink,
            stats: RelayStats::default(),
        }
    }

    /// The user turned relaying on or off. Off: every link closes and the
    /// server is told, so it serves this tab itself from now on.
    pub fn set_wanted(&mut self, on: bool, socket: &Socket) {
        self.wanted = on;
        if on && !self.joined {
            self.join(socket);
        } else if !on && self.joined {
            socket.send(&Peering { on: false }.to_bytes());
            self.leave();
        }
    }

    /// The socket opened (again): the server knows nothing of this tab's
    /// links, so they are all dropped and the tab joins afresh.
    pub fn on_open(&mut self, socket: &Socket) {
        self.leave();
        self.gate.reset();
        if self.wanted {
            self.join(socket);
        }
    }

    /// The socket closed: the server has forgotten this tab's place in the
    /// tree and its children are being moved; the links go.
    pub fn on_closed(&mut self) {
        self.leave();
    }

    /// A relay message from the server (the player handles `Frames` and
    /// `Telemetry`). Returns the batches to play (held bytes a digest just
    /// vouched for).
    pub fn on_server(&mut self, msg: &ToViewer<'_>, socket: &Socket, now_ms: f64) -> Vec<Vec<u8>> {
        match *msg {
            ToViewer::Welcome(w) => {
                self.id = Some(w.id);
                self.ice_servers = w.ice_server_urls().map(str::to_owned).collect();
            }
            ToViewer::Assign(a) => self.assign(a.parent, a.backup, socket, now_ms),
            ToViewer::Signal(s) => self.on_signal(&s, now_ms),
            ToViewer::Digest(d) => {
                if let Some(verdict) = self.gate.announce(d, now_ms) {
                    return self.on_verdict(verdict, socket);
                }
            }
            ToViewer::Frames(_) | ToViewer::Telemetry(_) => {}
        }
        Vec::new()
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

    /// An event of the link numbered `serial`. Returns the batches to play.
    pub fn on_link(&mut self, serial: u32, event: LinkEvent, socket: &Socket) -> Vec<Vec<u8>> {
        let is_parent = self.parent.as_ref().is_some_and(|l| l.serial() == serial);
        let Some(link) = self.link_mut(serial) else {
            return Vec::new();
        };
        let peer = link.peer();
        match event {
            LinkEvent::Description(kind, sdp) => send_signal(socket, peer, kind, &sdp),
            LinkEvent::Candidate(line) => send_signal(socket, peer, SignalKind::Candidate, &line),
            LinkEvent::RemoteApplied => link.remote_applied(),
            LinkEvent::Channel(channel) => {
                if link.attach(channel).is_err() {
                    self.drop_link(serial, socket);
                }
            }
            LinkEvent::Open if is_parent => {
                socket.send(
                    &LinkMsg {
                        parent: peer,
                        up: true,
                    }
                    .to_bytes(),
                );
            }
            LinkEvent::Open => {}
            LinkEvent::Closed(_) => self.drop_link(serial, socket),
            LinkEvent::Message(bytes) if is_parent => {
                let verdict = self.gate.from_peer(bytes);
                return self.on_verdict(verdict, socket);
            }
            // Children never send: a hostile one's bytes are dropped.
            LinkEvent::Message(_) => {}
        }
        Vec::new()
    }

    /// Asks the server for every announced batch that is late (see
    /// [`gate::Gate::due`]); `due_frame` is the frame playing now.
    /// A parent link that has not opened in [`LINK_TIMEOUT_MS`] is given up.
    pub fn poll(&mut self, now_ms: f64, due_frame: Option<u64>, socket: &Socket) {
        if !self.joined {
            return;
        }
        let stuck = self
            .parent
            .as_ref()
            .filter(|p| !p.is_open() && now_ms - self.parent_since > LINK_TIMEOUT_MS)
            .map(Link::serial);
        if let Some(serial) = stuck {
            self.drop_link(serial, socket);
        }
        let late = self.gate.due(now_ms, due_frame);
        self.send_fetches(late, socket);
    }

    /// Passes a batch this tab is about to play on to every open child. A
    /// child too slow to take it is dropped (it falls back to the server).
    pub fn relay(&mut self, bytes: &[u8]) {
        let mut slow = Vec::new();
        for child in &self.children {
            match child.send(bytes) {
                Ok(()) => {
                    self.stats.batches_relayed += 1;
                    self.stats.bytes_relayed += bytes.len() as u64;
                }
                Err(_) if child.is_open() => slow.push(child.serial()),
                Err(_) => {}
            }
        }
        self.children.retain(|c| !slow.contains(&c.serial()));
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
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// The assigned parent ([`SERVER`]: 0) and whether its channel is open.
    pub fn parent(&self) -> (u64, bool) {
        (
            self.parent_id,
            self.parent.as_ref().is_some_and(Link::is_open),
        )
    }

    /// The assigned backup parent.
    pub fn backup(&self) -> u64 {
        self.backup
    }

    /// Children whose channel is open.
    pub fn children(&self) -> usize {
        self.children.iter().filter(|c| c.is_open()).count()
    }

    fn join(&mut self, socket: &Socket) {
        self.joined = socket.send(&Peering { on: true }.to_bytes());
    }

    fn leave(&mut self) {
        self.joined = false;
        self.id = None;
        self.parent = None;
        self.parent_id = SERVER;
        self.backup = SERVER;
        self.children.clear();
    }

    fn serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    fn link_mut(&mut self, serial: u32) -> Option<&mut Link> {
        if let Some(p) = self.parent.as_mut().filter(|l| l.serial() == serial) {
            return Some(p);
        }
        self.children.iter_mut().find(|l| l.serial() == serial)
    }

    /// The server moved this tab under `parent`.
    fn assign(&mut self, parent: u64, backup: u64, socket: &Socket, now_ms: f64) {
        self.backup = backup;
        if parent == self.parent_id && (parent == SERVER || self.parent.is_some()) {
            return;
        }
        // Whatever the old parent still owed comes from the server now.
        self.parent = None;
        self.parent_id = parent;
        self.fetch_pending(socket);
        if parent == SERVER || Some(parent) == self.id {
            return;
        }
        let serial = self.serial();
        match Link::new(
            serial,
            parent,
            Role::Child,
            &self.ice_servers,
            self.sink.clone(),
        ) {
            Ok(link) => {
                self.parent = Some(link);
                self.parent_since = now_ms;
            }
            Err(_) => {
                socket.send(&LinkMsg { parent, up: false }.to_bytes());
            }
        }
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
                if let Some(p) = self.parent.as_ref().filter(|p| p.peer() == s.peer) {
                    p.apply_remote(SignalKind::Answer, s.text);
                }
            }
            SignalKind::Candidate => {
                let to_parent = self.parent.as_mut().filter(|p| p.peer() == s.peer);
                let link = match to_parent {
                    Some(p) => Some(p),
                    None => self.children.iter_mut().find(|c| c.peer() == s.peer),
                };
                if let Some(link) = link {
                    link.add_candidate(s.text);
                }
            }
        }
    }

    /// A child's offer: answer it on a fresh link (replacing any earlier
    /// link to that child).
    fn adopt(&mut self, child: u64, offer: &str) {
        self.children.retain(|c| c.peer() != child);
        if self.children.len() >= MAX_CHILDREN {
            return;
        }
        let serial = self.serial();
        if let Ok(link) = Link::new(
            serial,
            child,
            Role::Parent,
            &self.ice_servers,
            self.sink.clone(),
        ) {
            link.apply_remote(SignalKind::Offer, offer);
            self.children.push(link);
        }
    }

    fn on_verdict(&mut self, verdict: Verdict, socket: &Socket) -> Vec<Vec<u8>> {
        match verdict {
            Verdict::Play(bytes) => {
                self.stats.batches_from_peer += 1;
                self.stats.bytes_from_peer += bytes.len() as u64;
                // Tell the server, with proof, that a peer delivered it:
                // its offload figure counts only proven deliveries.
                if let (Some(id), Some((start, timeline))) = (self.id, gate::batch_key(&bytes)) {
                    socket.send(&Proof::of(id, start, timeline, &bytes).to_bytes());
                }
                vec![bytes]
            }
            Verdict::Held | Verdict::Duplicate => Vec::new(),
            Verdict::Mismatch { key } => {
                self.stats.mismatches += 1;
                let (start, timeline) = key;
                socket.send(
                    &Report {
                        peer: self.parent_id,
                        start,
                        timeline,
                    }
                    .to_bytes(),
                );
                if let Some(serial) = self.parent.as_ref().map(Link::serial) {
                    self.drop_link(serial, socket);
                }
                Vec::new()
            }
        }
    }

    /// A link closed or misbehaved: a child is forgotten; the parent is
    /// dropped, the server told (it serves this tab and finds another
    /// parent), and what it still owed is fetched.
    fn drop_link(&mut self, serial: u32, socket: &Socket) {
        if let Some(parent) = self.parent.take_if(|p| p.serial() == serial) {
            if !parent.is_open() {
                self.failed_links += 1;
            }
            drop(parent);
            self.stats.parents_lost += 1;
            socket.send(
                &LinkMsg {
                    parent: self.parent_id,
                    up: false,
                }
                .to_bytes(),
            );
            self.fetch_pending(socket);
            if self.failed_links >= MAX_FAILED_LINKS {
                // No peer is reachable from here: the server feeds this tab.
                socket.send(&Peering { on: false }.to_bytes());
                self.leave();
            }
        } else {
            self.children.retain(|c| c.serial() != serial);
        }
    }

    fn fetch_pending(&mut self, socket: &Socket) {
        let owed = self.gate.fetch_all_pending();
        self.send_fetches(owed, socket);
    }

    fn send_fetches(&mut self, fetches: Vec<Fetch>, socket: &Socket) {
        for fetch in fetches {
            self.stats.fetches += 1;
            socket.send(&fetch.to_bytes());
        }
    }
}

fn send_signal(socket: &Socket, peer: u64, kind: SignalKind, text: &str) {
    let msg = FromViewer::Signal(Signal { peer, kind, text });
    socket.send(&msg.to_vec());
}
