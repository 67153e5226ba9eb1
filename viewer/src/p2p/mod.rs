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
//! - [`offers`]: how many children's offers the page answers.
//! - [`policy`]: the tab's links and what it tells the server, decided
//!   from the server's messages, the links' events and the clock (plain
//!   Rust, sans-IO, tested natively and as wasm).
//! - [`Relay`] (here): the thin executor that feeds the policy its events
//!   and carries out its actions on the WebSocket and the links.

pub mod gate;
pub mod link;
pub mod offers;
pub mod policy;

use std::collections::BTreeMap;

use donut_browser::socket::Socket;
use donut_shared::wire::{Peering, ToViewer};

use self::gate::Key;
use self::link::{LinkEvent, PeerLink, Sink};
use self::policy::{Action, Delivery, LinkState, RelayPolicy};
pub use self::policy::{LINK_TIMEOUT_MS, MAX_FAILED_LINKS, RelayStats};
use crate::batch::Batch;

/// See the module docs.
pub struct Relay {
    policy: RelayPolicy,
    /// The links the policy holds, by serial.
    links: BTreeMap<u32, PeerLink>,
    sink: Sink,
}

impl Relay {
    /// A relay whose links report to `sink`; off until
    /// [`Relay::set_wanted`].
    pub fn new(sink: Sink) -> Self {
        Self {
            policy: RelayPolicy::new(),
            links: BTreeMap::new(),
            sink,
        }
    }

    /// The user turned relaying on or off. Off: every link closes and the
    /// server is told, so it serves this tab itself from now on.
    pub fn set_wanted(&mut self, on: bool, socket: &Socket) {
        self.policy.set_wanted(on);
        self.run(socket);
    }

    /// The socket opened (again): the server knows nothing of this tab's
    /// links, so they are all dropped and the tab joins afresh.
    pub fn on_open(&mut self, socket: &Socket) {
        self.policy.on_open();
        self.run(socket);
    }

    /// The socket closed: the server has forgotten this tab's place in the
    /// tree and its children are being moved; the links go.
    pub fn on_closed(&mut self) {
        self.policy.on_closed();
        while let Some(action) = self.policy.poll_action() {
            // Nothing can be sent now; the links close.
            if let Action::Close(serial) = action {
                self.links.remove(&serial);
            }
        }
    }

    /// A relay message from the server (the player handles `Frames` and
    /// `Telemetry`). Returns the batches to play (held bytes a digest just
    /// vouched for).
    pub fn on_server(&mut self, msg: &ToViewer<'_>, socket: &Socket, now_ms: f64) -> Vec<Batch> {
        self.policy.on_server(msg, now_ms);
        self.run(socket)
    }

    /// A `Frames` message came from the server: whether it is new (to play
    /// and relay) rather than a copy of one already played.
    pub fn server_batch(&mut self, key: Key) -> bool {
        self.policy.server_batch(key)
    }

    /// An event of the link numbered `serial`. Returns the batches to play.
    pub fn on_link(&mut self, serial: u32, event: LinkEvent, socket: &Socket) -> Vec<Batch> {
        let Some(link) = self.links.get_mut(&serial) else {
            return Vec::new();
        };
        let state = match event {
            LinkEvent::Description(kind, sdp) => LinkState::Description(kind, sdp),
            LinkEvent::Candidate(line) => LinkState::Candidate(line),
            LinkEvent::RemoteApplied => {
                link.remote_applied();
                return Vec::new();
            }
            LinkEvent::Channel(channel) => {
                if link.attach(channel).is_ok() {
                    return Vec::new();
                }
                LinkState::Closed {
                    open: link.is_open(),
                }
            }
            LinkEvent::Open => LinkState::Open,
            LinkEvent::Closed(_) => LinkState::Closed {
                open: link.is_open(),
            },
            LinkEvent::Message(bytes) => LinkState::Message(bytes),
        };
        self.policy.on_link(serial, state);
        self.run(socket)
    }

    /// Asks the server for every announced batch that is late (see
    /// [`gate::Gate::due`]); `due_frame` is the frame playing now.
    /// A parent link that has not opened in [`LINK_TIMEOUT_MS`] is given up.
    pub fn poll(&mut self, now_ms: f64, due_frame: Option<u64>, socket: &Socket) {
        self.policy.on_tick(now_ms, due_frame);
        self.run(socket);
    }

    /// Passes a batch this tab is about to play on to every open child. A
    /// child too slow to take it is dropped (it falls back to the server).
    pub fn relay(&mut self, bytes: &[u8]) {
        for serial in self.policy.feeding() {
            let delivery = match self
                .links
                .get(&serial)
                .map(|l| (l.send(bytes), l.is_open()))
            {
                Some((Ok(()), _)) => Delivery::Sent,
                Some((Err(_), true)) => Delivery::Refused,
                Some((Err(_), false)) | None => Delivery::NotOpen,
            };
            self.policy.delivered(serial, bytes.len(), delivery);
        }
        // Only closes can follow a delivery.
        while let Some(action) = self.policy.poll_action() {
            if let Action::Close(serial) = action {
                self.links.remove(&serial);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        self.policy.stats()
    }

    /// This tab's peer id, once the server gave one.
    pub fn id(&self) -> Option<u64> {
        self.policy.id()
    }

    /// Whether this tab is in the tree.
    pub fn joined(&self) -> bool {
        self.policy.is_joined()
    }

    /// The assigned parent ([`SERVER`](donut_shared::wire::p2p::SERVER): 0)
    /// and whether its channel is open.
    pub fn parent(&self) -> (u64, bool) {
        let (parent, serial) = self.policy.parent();
        let open = serial
            .and_then(|s| self.links.get(&s))
            .is_some_and(PeerLink::is_open);
        (parent, open)
    }

    /// The assigned backup parent.
    pub fn backup(&self) -> u64 {
        self.policy.backup()
    }

    /// Children whose channel is open.
    pub fn children(&self) -> usize {
        self.policy
            .feeding()
            .iter()
            .filter_map(|s| self.links.get(s))
            .filter(|l| l.is_open())
            .count()
    }

    /// Carries out the policy's actions in order; returns the batches to
    /// play.
    fn run(&mut self, socket: &Socket) -> Vec<Batch> {
        let mut play = Vec::new();
        while let Some(action) = self.policy.poll_action() {
            match action {
                Action::Send(bytes) => {
                    socket.send(&bytes);
                }
                Action::Join => {
                    let sent = socket.send(&Peering { on: true }.to_bytes());
                    self.policy.joined(sent);
                }
                Action::Open { serial, peer, role } => {
                    let ice = self.policy.ice_servers();
                    match PeerLink::new(serial, peer, role, ice, self.sink.clone()) {
                        Ok(link) => {
                            self.links.insert(serial, link);
                        }
                        Err(_) => self.policy.open_failed(serial),
                    }
                }
                Action::ApplyRemote { serial, kind, sdp } => {
                    if let Some(link) = self.links.get(&serial) {
                        link.apply_remote(kind, &sdp);
                    }
                }
                Action::AddCandidate { serial, line } => {
                    if let Some(link) = self.links.get_mut(&serial) {
                        link.add_candidate(&line);
                    }
                }
                Action::Close(serial) => {
                    self.links.remove(&serial);
                }
                Action::Play(bytes) => play.push(bytes),
            }
        }
        play
    }
}
