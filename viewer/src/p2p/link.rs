//! One WebRTC link to another viewer: an `RTCPeerConnection` with one
//! ordered, reliable `RTCDataChannel` that carries `Frames` messages from
//! parent to child, byte for byte as the parent received them.
//!
//! The child makes the offer and opens the channel; the parent answers and
//! receives it. Descriptions and ICE candidates go through the server
//! ([`donut_shared::wire::Signal`]); this type only turns WebRTC's promises
//! and events into [`LinkEvent`]s for its owner, tagged with the link's
//! serial number so that an event of a link already replaced is ignored.
//! Dropping a link closes it and unhooks every listener.
//!
//! No STUN or TURN server is used unless the server names some
//! (`Welcome::ice_servers`): between viewers that cannot reach each other
//! directly, the WebSocket is the relay of last resort.

use std::rc::Rc;

use donut_browser::callback::JsCallback;
use donut_shared::wire::SignalKind;
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceCandidateInit, RtcIceServer, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

/// The data channel's label.
const LABEL: &str = "donut-frames";
/// Bytes a child may leave unsent in its channel before it is dropped as
/// too slow (about 40 s of the stream): it falls back to the server.
pub const MAX_BUFFERED: u32 = 256 * 1024;

pub use super::policy::PeerRole;

/// What happened on a link.
pub enum LinkEvent {
    /// The local offer or answer is ready to send to the peer.
    Description(SignalKind, String),
    /// The peer's description is applied: queued candidates may be added.
    RemoteApplied,
    /// A local ICE candidate line to send to the peer.
    Candidate(String),
    /// The data channel came (parent side).
    Channel(RtcDataChannel),
    /// The data channel opened.
    Open,
    /// The data channel closed, or the connection failed.
    Closed(&'static str),
    /// A binary message from the peer.
    Message(Vec<u8>),
}

/// Where a link's events go: `(serial, event)`.
pub type Sink = Rc<dyn Fn(u32, LinkEvent)>;

/// See the module docs.
pub struct PeerLink {
    serial: u32,
    peer: u64,
    role: PeerRole,
    pc: RtcPeerConnection,
    channel: Option<RtcDataChannel>,
    remote_applied: bool,
    queued: Vec<String>,
    listeners: Vec<JsCallback>,
    sink: Sink,
}

impl PeerLink {
    /// A link to `peer` as `role`, using `ice_servers` (none: host
    /// candidates only). A child opens the channel and starts the offer.
    pub fn new(
        serial: u32,
        peer: u64,
        role: PeerRole,
        ice_servers: &[String],
        sink: Sink,
    ) -> Result<Self, JsValue> {
        let pc = RtcPeerConnection::new_with_configuration(&configuration(ice_servers))?;
        let mut link = Self {
            serial,
            peer,
            role,
            pc,
            channel: None,
            remote_applied: false,
            queued: Vec::new(),
            listeners: Vec::new(),
            sink,
        };
        link.listen_connection()?;
        if role == PeerRole::Child {
            let init = RtcDataChannelInit::new();
            init.set_ordered(true);
            let channel = link
                .pc
                .create_data_channel_with_data_channel_dict(LABEL, &init);
            link.attach(channel)?;
            link.negotiate(None, Some(SignalKind::Offer));
        }
        Ok(link)
    }

    /// The link's serial number (events carry it).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The other viewer's peer id.
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// Whether the data channel is open.
    pub fn is_open(&self) -> bool {
        self.channel
            .as_ref()
            .is_some_and(|c| c.ready_state() == RtcDataChannelState::Open)
    }

    /// Adopts the channel the child opened (parent side).
    pub fn attach(&mut self, channel: RtcDataChannel) -> Result<(), JsValue> {
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        let target: &web_sys::EventTarget = channel.as_ref();
        let (serial, sink) = (self.serial, self.sink.clone());
        self.listeners
            .push(JsCallback::new(target, "open", move |_| {
                sink(serial, LinkEvent::Open);
            })?);
        let sink = self.sink.clone();
        self.listeners
            .push(JsCallback::new(target, "close", move |_| {
                sink(serial, LinkEvent::Closed("data channel closed"));
            })?);
        let sink = self.sink.clone();
        self.listeners
            .push(JsCallback::new(target, "message", move |e| {
                let Some(e) = e.dyn_ref::<MessageEvent>() else {
                    return;
                };
                if let Ok(buffer) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                    sink(
                        serial,
                        LinkEvent::Message(Uint8Array::new(&buffer).to_vec()),
                    );
                }
            })?);
        let open = channel.ready_state() == RtcDataChannelState::Open;
        self.channel = Some(channel);
        if open {
            (self.sink)(serial, LinkEvent::Open);
        }
        Ok(())
    }

    /// Applies the peer's offer (parent side; then answers) or answer
    /// (child side).
    pub fn apply_remote(&self, kind: SignalKind, sdp: &str) {
        let ty = match kind {
            SignalKind::Offer => RtcSdpType::Offer,
            SignalKind::Answer => RtcSdpType::Answer,
            SignalKind::Candidate => return,
        };
        let init = RtcSessionDescriptionInit::new(ty);
        init.set_sdp(sdp);
        let answer = (self.role == PeerRole::Parent && kind == SignalKind::Offer)
            .then_some(SignalKind::Answer);
        self.negotiate(Some(init), answer);
    }

    /// The peer's description is applied: adds the candidates queued
    /// before it.
    pub fn remote_applied(&mut self) {
        self.remote_applied = true;
        for line in std::mem::take(&mut self.queued) {
            self.add_candidate(&line);
        }
    }

    /// Adds one of the peer's ICE candidates (queued until its description
    /// is applied; an empty line ends the candidates and is dropped).
    pub fn add_candidate(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if !self.remote_applied {
            if self.queued.len() < 64 {
                self.queued.push(line.to_owned());
            }
            return;
        }
        let init = RtcIceCandidateInit::new(line);
        init.set_sdp_m_line_index(Some(0));
        let _ = self
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
    }

    /// Sends `bytes` on the channel. `Err` if it is not open or the peer
    /// has left more than [`MAX_BUFFERED`] unsent (too slow to feed).
    pub fn send(&self, bytes: &[u8]) -> Result<(), &'static str> {
        let Some(channel) = self.channel.as_ref().filter(|_| self.is_open()) else {
            return Err("data channel not open");
        };
        if channel.buffered_amount() > MAX_BUFFERED {
            return Err("peer too slow: its data channel is full");
        }
        channel
            .send_with_u8_array(bytes)
            .map_err(|_| "data channel send failed")
    }

    /// Listens for local ICE candidates, the parent's incoming channel and
    /// a failed connection.
    fn listen_connection(&mut self) -> Result<(), JsValue> {
        let target: &web_sys::EventTarget = self.pc.as_ref();
        let (serial, sink) = (self.serial, self.sink.clone());
        self.listeners
            .push(JsCallback::new(target, "icecandidate", move |e| {
                let Some(e) = e.dyn_ref::<RtcPeerConnectionIceEvent>() else {
                    return;
                };
                if let Some(c) = e.candidate() {
                    sink(serial, LinkEvent::Candidate(c.candidate()));
                }
            })?);
        let sink = self.sink.clone();
        self.listeners
            .push(JsCallback::new(target, "datachannel", move |e| {
                if let Some(e) = e.dyn_ref::<RtcDataChannelEvent>() {
                    sink(serial, LinkEvent::Channel(e.channel()));
                }
            })?);
        let (sink, pc) = (self.sink.clone(), self.pc.clone());
        self.listeners.push(JsCallback::new(
            target,
            "connectionstatechange",
            move |_| {
                if matches!(
                    pc.connection_state(),
                    RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
                ) {
                    sink(serial, LinkEvent::Closed("peer connection failed"));
                }
            },
        )?);
        Ok(())
    }

    /// Applies `remote` (if any), then creates, sets and hands over a local
    /// description of `local` (if any). A failure closes the link.
    fn negotiate(&self, remote: Option<RtcSessionDescriptionInit>, local: Option<SignalKind>) {
        let (pc, sink, serial) = (self.pc.clone(), self.sink.clone(), self.serial);
        wasm_bindgen_futures::spawn_local(async move {
            let run = async {
                if let Some(remote) = remote {
                    JsFuture::from(pc.set_remote_description(&remote)).await?;
                    sink(serial, LinkEvent::RemoteApplied);
                }
                let Some(kind) = local else {
                    return Ok::<_, JsValue>(());
                };
                let made = match kind {
                    SignalKind::Answer => JsFuture::from(pc.create_answer()).await?,
                    _ => JsFuture::from(pc.create_offer()).await?,
                };
                let sdp = Reflect::get(&made, &JsValue::from_str("sdp"))?
                    .as_string()
                    .unwrap_or_default();
                let ty = match kind {
                    SignalKind::Answer => RtcSdpType::Answer,
                    _ => RtcSdpType::Offer,
                };
                let init = RtcSessionDescriptionInit::new(ty);
                init.set_sdp(&sdp);
                JsFuture::from(pc.set_local_description(&init)).await?;
                sink(serial, LinkEvent::Description(kind, sdp));
                Ok(())
            };
            if run.await.is_err() {
                sink(serial, LinkEvent::Closed("WebRTC negotiation failed"));
            }
        });
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.listeners.clear();
        if let Some(c) = &self.channel {
            c.close();
        }
        self.pc.close();
    }
}

/// An `RTCConfiguration` with `urls` as its ICE servers (none: host
/// candidates only, nothing leaves the networks the machine is on).
fn configuration(urls: &[String]) -> RtcConfiguration {
    let servers = Array::new();
    for url in urls {
        let server = RtcIceServer::new();
        server.set_urls_str(url);
        servers.push(&server);
    }
    let config = RtcConfiguration::new();
    config.set_ice_servers(&servers);
    config
}
