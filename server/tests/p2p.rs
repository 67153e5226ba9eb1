//! The peer relay's server side over real sockets (issue 16): native test
//! viewers drive the protocol on `/ws/viewer` against the real server and
//! real native workers (the browser side is tested elsewhere). The tree
//! forms, signals pass only between assigned pairs, a linked viewer is sent
//! digests of the very bytes its parent gets, fetches return those bytes,
//! and a departed or reported parent's children are moved at once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use donut_server::config::P2pMode;
use donut_shared::wire::p2p::{
    Assign, Digest, Fetch, Link, Peering, Report, SERVER, Signal, SignalKind,
};
use donut_shared::wire::{FromViewer, PROTOCOL_VERSION, ToViewer};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// One message a test viewer got, owned.
#[derive(Debug, Clone)]
enum Got {
    Frames {
        start: u64,
        timeline: u32,
        bytes: Vec<u8>,
    },
    Telemetry,
    Digest(Digest),
    Welcome {
        id: u64,
        ice: String,
    },
    Assign(Assign),
    Signal {
        peer: u64,
        kind: SignalKind,
        text: String,
    },
}

fn own(bytes: &[u8]) -> Got {
    match ToViewer::decode(bytes).expect("the server sends valid viewer messages") {
        ToViewer::Frames(f) => Got::Frames {
            start: f.start,
            timeline: f.timeline,
            bytes: bytes.to_vec(),
        },
        ToViewer::Telemetry(_) => Got::Telemetry,
        ToViewer::Digest(d) => Got::Digest(d),
        ToViewer::Welcome(w) => Got::Welcome {
            id: w.id,
            ice: w.ice_servers.to_owned(),
        },
        ToViewer::Assign(a) => Got::Assign(a),
        ToViewer::Signal(s) => Got::Signal {
            peer: s.peer,
            kind: s.kind,
            text: s.text.to_owned(),
        },
    }
}

/// A native test viewer of the relay protocol.
struct Peer {
    ws: Ws,
    id: u64,
    parent: u64,
    /// (start, timeline) → the `Frames` bytes received.
    frames: BTreeMap<(u64, u32), Vec<u8>>,
}

impl Peer {
    /// Connects without joining the tree.
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            ws: connect(addr, "/ws/viewer").await,
            id: 0,
            parent: SERVER,
            frames: BTreeMap::new(),
        }
    }

    /// Connects and joins: Welcome, then Assign.
    async fn join(addr: std::net::SocketAddr, ice: &str) -> Self {
        let mut p = Self::connect(addr).await;
        p.send(FromViewer::Peering(Peering { on: true })).await;
        let (id, got_ice) = p
            .until(|g| match g {
                Got::Welcome { id, ice } => Some((*id, ice.clone())),
                Got::Assign(a) => panic!("Assign {a:?} before Welcome"),
                _ => None,
            })
            .await;
        assert_ne!(id, SERVER);
        assert_eq!(got_ice, ice);
        p.id = id;
        p.next_assign().await;
        p
    }

    async fn send(&mut self, msg: FromViewer<'_>) {
        self.ws
            .send(Message::binary(msg.to_vec()))
            .await
            .expect("send");
    }

    async fn signal(&mut self, peer: u64, kind: SignalKind, text: &str) {
        self.send(FromViewer::Signal(Signal { peer, kind, text }))
            .await;
    }

    /// The next message (frames recorded).
    async fn next(&mut self) -> Got {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => return own(&b),
                    Some(Ok(Message::Close(f))) => panic!("viewer {} closed: {f:?}", self.id),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("viewer socket error: {e}"),
                    None => panic!("viewer socket ended"),
                }
            }
        };
        let got = tokio::time::timeout(HANG, wait)
            .await
            .expect("a message in time");
        if let Got::Frames {
            start,
            timeline,
            bytes,
        } = &got
        {
            self.frames.insert((*start, *timeline), bytes.clone());
        }
        got
    }

    /// Reads until `f` picks a message.
    async fn until<T>(&mut self, mut f: impl FnMut(&Got) -> Option<T>) -> T {
        loop {
            let got = self.next().await;
            if let Some(t) = f(&got) {
                return t;
            }
        }
    }

    /// Waits for an Assign; records the parent.
    async fn next_assign(&mut self) -> Assign {
        let a = self
            .until(|g| match g {
                Got::Assign(a) => Some(*a),
                Got::Signal { .. } | Got::Welcome { .. } => panic!("unexpected {g:?}"),
                _ => None,
            })
            .await;
        self.parent = a.parent;
        a
    }

    /// Waits for a signal.
    async fn next_signal(&mut self) -> (u64, SignalKind, String) {
        self.until(|g| match g {
            Got::Signal { peer, kind, text } => Some((*peer, *kind, text.clone())),
            Got::Assign(a) => panic!("unexpected {a:?}"),
            _ => None,
        })
        .await
    }

    /// Waits for the frames of `(start, timeline)`.
    async fn frames_of(&mut self, start: u64, timeline: u32) -> Vec<u8> {
        loop {
            if let Some(b) = self.frames.get(&(start, timeline)) {
                return b.clone();
            }
            self.next().await;
        }
    }
}

fn p2p_config(mode: P2pMode) -> donut_server::config::ServeConfig {
    let mut cfg = config();
    cfg.p2p = mode;
    cfg.p2p_ice_servers = "stun:stun.example.org:3478".into();
    cfg
}

const ICE: &str = "stun:stun.example.org:3478";

fn counter(s: &serde_json::Value, name: &str) -> u64 {
    s[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_forms_and_signals_pass_only_between_assigned_pairs() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let mut v1 = Peer::join(addr, ICE).await;
    assert_eq!(v1.parent, SERVER);
    let mut v2 = Peer::join(addr, ICE).await;
    let mut v3 = Peer::join(addr, ICE).await;
    assert_eq!(v2.parent, v1.id);
    assert_eq!(v3.parent, v1.id);
    assert!(v1.id != v2.id && v2.id != v3.id);

    // Offer child → parent, answer and candidates back: the peer field
    // rewritten to the sender.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=mid:0\r\n";
    v2.signal(v1.id, SignalKind::Offer, offer).await;
    assert_eq!(
        v1.next_signal().await,
        (v2.id, SignalKind::Offer, offer.to_owned())
    );
    v1.signal(v2.id, SignalKind::Answer, "v=0\r\n").await;
    assert_eq!(
        v2.next_signal().await,
        (v1.id, SignalKind::Answer, "v=0\r\n".to_owned())
    );
    let cand = "candidate:1 1 udp 2122260223 192.0.2.7 5000 typ host";
    v1.signal(v2.id, SignalKind::Candidate, cand).await;
    assert_eq!(
        v2.next_signal().await,
        (v1.id, SignalKind::Candidate, cand.to_owned())
    );

    // Siblings are strangers, as are made-up ids and the server: dropped,
    // and the next legitimate signal is the first v3 sees.
    v2.signal(v3.id, SignalKind::Offer, "to a sibling").await;
    v2.signal(999, SignalKind::Offer, "to nobody").await;
    v2.signal(SERVER, SignalKind::Offer, "to the server").await;
    v1.signal(v3.id, SignalKind::Candidate, "").await;
    assert_eq!(
        v3.next_signal().await,
        (v1.id, SignalKind::Candidate, String::new())
    );
    // (v2's socket is read by another task than v1's: wait for it.)
    wait_stats(addr, "three dropped, four forwarded", |s| {
        counter(s, "p2p_signals_dropped") == 3
            && counter(s, "p2p_signals_forwarded") == 4
            && counter(s, "p2p_peering") == 3
    })
    .await;
    assert!(
        http_get(addr, "/metrics")
            .await
            .contains("donut_p2p_peering 3")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_viewer_gets_digests_of_its_parent_s_bytes_and_fetches_them() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let mut v1 = Peer::join(addr, ICE).await;
    let mut v2 = Peer::join(addr, ICE).await;
    assert_eq!(v2.parent, v1.id);
    // A link to someone else is ignored; to the parent, it takes.
    v2.send(FromViewer::Link(Link {
        parent: 999,
        up: true,
    }))
    .await;
    v2.send(FromViewer::Link(Link {
        parent: v1.id,
        up: true,
    }))
    .await;
    let first = v2
        .until(|g| match g {
            Got::Digest(d) => Some(*d),
            _ => None,
        })
        .await;
    // From the first digest on: digests, telemetry, no frames.
    let mut digests = vec![first];
    while digests.len() < 4 {
        match v2.next().await {
            Got::Digest(d) => digests.push(d),
            Got::Telemetry => {}
            other => panic!("a linked viewer got {other:?}"),
        }
    }
    // Each announces exactly the bytes the parent got.
    for d in &digests {
        let bytes = v1.frames_of(d.start, d.timeline).await;
        assert!(d.matches(&bytes), "digest of {} does not match", d.start);
        assert_eq!(d.len as usize, bytes.len());
    }
    // The deadline fallback: the very bytes, at once.
    let last = *digests.last().expect("digests");
    v2.send(FromViewer::Fetch(Fetch {
        start: last.start,
        timeline: last.timeline,
    }))
    .await;
    let fetched = v2
        .until(|g| match g {
            Got::Frames { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .await;
    assert!(last.matches(&fetched));
    assert_eq!(fetched, v1.frames_of(last.start, last.timeline).await);
    // A fetch for a batch long gone is ignored.
    v2.send(FromViewer::Fetch(Fetch {
        start: 1,
        timeline: 0,
    }))
    .await;
    wait_stats(addr, "the figures", |s| {
        counter(s, "p2p_fallbacks") == 1
            && counter(s, "p2p_fetches_missed") == 1
            && counter(s, "p2p_linked") == 1
            && counter(s, "p2p_relays") == 1
            && counter(s, "p2p_batch_bytes_offloaded") > 0
            && counter(s, "p2p_fallback_bytes") == fetched.len() as u64
            && counter(s, "viewer_batch_bytes_direct") > 0
    })
    .await;
    // Telemetry carries the figures too.
    let telemetry = async {
        loop {
            match v1.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(ToViewer::Telemetry(t)) = ToViewer::decode(&b)
                        && t.p2p_fallbacks == 1
                    {
                        return t;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("parent socket ended: {other:?}"),
            }
        }
    };
    let t = tokio::time::timeout(HANG, telemetry)
        .await
        .expect("telemetry in time");
    assert_eq!(t.peers_linked, 1);
    assert!(t.offload_permille > 0 && t.offload_permille < 1000, "{t:?}");
    // Link lost: frames again, from the playback head, so the batches
    // announced by the digests still queued for v2 (which its parent may
    // not have delivered) come before what follows, in order.
    let newest = v2
        .until(|g| match g {
            Got::Digest(d) => Some(d.start),
            _ => None,
        })
        .await;
    v2.send(FromViewer::Link(Link {
        parent: v1.id,
        up: false,
    }))
    .await;
    let mut announced = newest;
    let mut next = None;
    let mut frames = 0;
    while frames < 4 {
        match v2.next().await {
            Got::Digest(d) => announced = announced.max(d.start),
            Got::Frames { start, bytes, .. } => {
                let f = match ToViewer::decode(&bytes) {
                    Ok(ToViewer::Frames(f)) => f,
                    other => panic!("not a batch: {other:?}"),
                };
                match next {
                    None => assert!(
                        start <= announced,
                        "the catch-up starts at {start}, past the announced {announced}"
                    ),
                    Some(n) => assert_eq!(start, n, "a gap after the fall back"),
                }
                next = Some(start + u64::from(f.count));
                frames += 1;
            }
            _ => {}
        }
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_outside_the_allowed_networks_are_dropped() {
    let mut cfg = p2p_config(P2pMode::On);
    cfg.p2p_candidates = vec!["127.0.0.1/32".parse().expect("cidr")];
    let server = start(cfg).await;
    let addr = server.addr;
    let mut v1 = Peer::join(addr, ICE).await;
    let mut v2 = Peer::join(addr, ICE).await;
    for text in [
        "candidate:1 1 udp 2122260223 192.0.2.7 5000 typ host",
        "candidate:2 1 udp 2122260223 0b7a1c2d.local 5001 typ host",
        "candidate:3 1 udp 2122260223 127.0.0.1 5002 typ host",
    ] {
        v2.signal(v1.id, SignalKind::Candidate, text).await;
    }
    let (_, _, got) = v1.next_signal().await;
    assert!(got.contains("127.0.0.1"), "{got}");
    let sdp = "v=0\r\na=candidate:1 1 udp 1 192.0.2.7 5000 typ host\r\n\
               a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\n\
               a=candidate:3 1 udp 1 x.local 5002 typ host\r\na=mid:0\r\n";
    v2.signal(v1.id, SignalKind::Offer, sdp).await;
    let (peer, kind, got) = v1.next_signal().await;
    assert_eq!((peer, kind), (v2.id, SignalKind::Offer));
    assert_eq!(
        got,
        "v=0\r\na=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\na=mid:0\r\n"
    );
    // End of candidates always passes.
    v2.signal(v1.id, SignalKind::Candidate, "").await;
    assert_eq!(v1.next_signal().await.2, "");
    let s = stats(addr).await;
    assert_eq!(counter(&s, "p2p_candidates_filtered"), 4, "{s}");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_parent_s_children_are_reassigned_at_once() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let v1 = Peer::join(addr, ICE).await;
    let mut v2 = Peer::join(addr, ICE).await;
    let mut v3 = Peer::join(addr, ICE).await;
    let old = v1.id;
    v2.send(FromViewer::Link(Link {
        parent: old,
        up: true,
    }))
    .await;
    v2.until(|g| matches!(g, Got::Digest(_)).then_some(()))
        .await;
    let left = Instant::now();
    drop(v1);
    let a2 = v2.next_assign().await;
    let a3 = v3.next_assign().await;
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
    assert!(a2.parent != old && a3.parent != old && a2.backup != old && a3.backup != old);
    // One of them now feeds the other (the server feeds one root).
    assert!(a2.parent == v3.id || a3.parent == v2.id, "{a2:?} {a3:?}");
    // Unlinked again: frames, not digests.
    v2.until(|g| matches!(g, Got::Frames { .. }).then_some(()))
        .await;
    wait_stats(addr, "the tree shrank", |s| counter(s, "p2p_peering") == 2).await;
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_parent_is_barred_and_its_children_moved() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let mut v1 = Peer::join(addr, ICE).await;
    let mut v2 = Peer::join(addr, ICE).await;
    let mut v3 = Peer::join(addr, ICE).await;
    // A report against someone not its parent: counted, nothing moves.
    v3.send(FromViewer::Report(Report {
        peer: v2.id,
        start: 0,
        timeline: 0,
    }))
    .await;
    v2.send(FromViewer::Report(Report {
        peer: v1.id,
        start: 0,
        timeline: 0,
    }))
    .await;
    let a2 = v2.next_assign().await;
    let a3 = v3.next_assign().await;
    assert!(a2.parent != v1.id && a3.parent != v1.id);
    // The barred viewer keeps watching, fed by the server, and takes no one.
    let mut v4 = Peer::join(addr, ICE).await;
    assert_ne!(v4.parent, v1.id);
    v4.signal(v1.id, SignalKind::Offer, "x").await;
    v1.signal(v2.id, SignalKind::Offer, "x").await;
    wait_stats(addr, "both reports counted, both signals dropped", |s| {
        counter(s, "p2p_digest_mismatches") == 2 && counter(s, "p2p_signals_dropped") == 2
    })
    .await;
    assert_eq!(counter(&stats(addr).await, "p2p_signals_forwarded"), 0);
    // v1 was told nothing new (still server-fed) and is still connected.
    v1.send(FromViewer::Peering(Peering { on: false })).await;
    wait_stats(addr, "v1 left the tree", |s| counter(s, "p2p_peering") == 3).await;
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_p2p_off_peering_changes_nothing() {
    let server = start(p2p_config(P2pMode::Off)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let mut plain = Peer::connect(addr).await;
    let mut asking = Peer::connect(addr).await;
    asking.send(FromViewer::Peering(Peering { on: true })).await;
    // Only frames and telemetry, the very bytes a plain viewer gets.
    let mut checked = 0;
    while checked < 8 {
        match asking.next().await {
            Got::Frames {
                start,
                timeline,
                bytes,
            } => {
                assert_eq!(plain.frames_of(start, timeline).await, bytes);
                checked += 1;
            }
            Got::Telemetry => {}
            other => panic!("--p2p off sent {other:?}"),
        }
    }
    // And relay messages are refused as from any viewer outside the tree.
    asking.signal(1, SignalKind::Offer, "x").await;
    let (code, reason) = expect_close(&mut asking.ws).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("join the relay tree first"), "{reason}");
    let s = stats(addr).await;
    assert_eq!(counter(&s, "p2p_peering"), 0, "{s}");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_relay_messages_and_floods_close_only_their_viewer() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let watcher = BackgroundViewer::start(addr).await;
    let peering = FromViewer::Peering(Peering { on: true }).to_vec();
    let fetch = FromViewer::Fetch(Fetch {
        start: 0,
        timeline: 0,
    })
    .to_vec();
    let link = FromViewer::Link(Link {
        parent: 1,
        up: true,
    })
    .to_vec();
    let mut bad_kind = FromViewer::Signal(Signal {
        peer: 1,
        kind: SignalKind::Offer,
        text: "",
    })
    .to_vec();
    bad_kind[10] = 9;
    let cases: Vec<(Vec<Vec<u8>>, u16, &str)> = vec![
        (vec![peering.clone(), bad_kind], 1002, "invalid"),
        (vec![peering.clone(), link[..5].to_vec()], 1002, "truncated"),
        (vec![vec![PROTOCOL_VERSION, 0x04, 2]], 1002, "invalid"),
        (vec![link.clone()], 1008, "join the relay tree first"),
        (vec![fetch.clone()], 1008, "join the relay tree first"),
        (
            [vec![peering.clone()], vec![fetch; 100]].concat(),
            1008,
            "fetch flood",
        ),
        (
            [vec![peering.clone()], vec![link; 400]].concat(),
            1008,
            "signal flood",
        ),
    ];
    for (msgs, want_code, want) in cases {
        let mut ws = connect(addr, "/ws/viewer").await;
        for m in msgs {
            if ws.send(Message::binary(m)).await.is_err() {
                break;
            }
        }
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(code, want_code, "{reason}");
        assert!(reason.contains(want), "{want:?} not in {reason:?}");
    }
    let s = stats(addr).await;
    assert!(counter(&s, "protocol_errors") >= 5, "{s}");
    wait_stats(addr, "the tree emptied", |s| counter(s, "p2p_peering") == 0).await;
    let seen = watcher.finish(60).await;
    assert!(seen.frames >= 60);
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_uses_peers_only_from_min_viewers() {
    let server = start(p2p_config(P2pMode::Auto)).await;
    let addr = server.addr;
    let mut v1 = Peer::join(addr, ICE).await;
    let mut v2 = Peer::join(addr, ICE).await;
    // Two of the default three: both server-fed, no signalling between them.
    assert_eq!((v1.parent, v2.parent), (SERVER, SERVER));
    v2.signal(v1.id, SignalKind::Offer, "x").await;
    // The third turns peers on: the second moves under the first.
    let v3 = Peer::join(addr, ICE).await;
    assert_eq!(v3.parent, v1.id);
    assert_eq!(v2.next_assign().await.parent, v1.id);
    v2.signal(v1.id, SignalKind::Offer, "y").await;
    assert_eq!(
        v1.next_signal().await,
        (v2.id, SignalKind::Offer, "y".to_owned())
    );
    // Below the threshold again: everyone back to the server, at once.
    drop(v3);
    assert_eq!(v2.next_assign().await.parent, SERVER);
    let s = stats(addr).await;
    assert_eq!(counter(&s, "p2p_signals_dropped"), 1, "{s}");
    server.shutdown(Duration::from_secs(2)).await;
}
