//! The peer relay's server side over real sockets (issue 16): native test
//! viewers drive the protocol on `/ws/viewer` against the real server and
//! real native workers (the browser side is tested elsewhere). The tree
//! forms, signals pass only between assigned pairs, a linked viewer is sent
//! digests of the very bytes its parent gets, fetches return those bytes,
//! and a departed or reported parent's children are moved at once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::p2p::{Driven, Log, Role};
use common::*;
use donut_server::config::P2pMode;
use donut_shared::wire::p2p::{
    Assign, Digest, Fetch, Link, Peering, Proof, Report, SERVER, Signal, SignalKind,
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
        ToViewer::InputRefused(r) => panic!("a single node refused a push: {r:?}"),
        ToViewer::Keyframe(k) => panic!("a relay peer that never pushed got {k:?}"),
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

    /// Connects from `local`, joins, waits for its Welcome and Assign.
    async fn join_from(addr: std::net::SocketAddr, local: std::net::IpAddr) -> Self {
        let mut p = Self {
            ws: connect_from(addr, "/ws/viewer", Some(local)).await,
            id: 0,
            parent: SERVER,
            frames: BTreeMap::new(),
        };
        p.send(FromViewer::Peering(Peering { on: true })).await;
        p.id = p
            .until(|g| match g {
                Got::Welcome { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        p.next_assign().await;
        p
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
    // Each announces exactly the bytes the parent got; the child proves
    // it holds them (as the page does for what its parent delivered), but
    // the last, which it fetches below.
    for d in &digests {
        let bytes = v1.frames_of(d.start, d.timeline).await;
        assert!(d.matches(&bytes), "digest of {} does not match", d.start);
        assert_eq!(d.len as usize, bytes.len());
        if Some(d) != digests.last() {
            v2.send(FromViewer::Proof(Proof::of(
                v2.id, d.start, d.timeline, &bytes,
            )))
            .await;
        }
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
    // A fetch for a batch never announced to it is refused.
    v2.send(FromViewer::Fetch(Fetch {
        start: 1,
        timeline: 0,
    }))
    .await;
    wait_stats(addr, "the figures", |s| {
        counter(s, "p2p_fallbacks") == 1
            && counter(s, "p2p_fetches_refused") == 1
            && counter(s, "p2p_fetches_missed") == 0
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
async fn a_parent_reported_by_two_witnesses_is_barred_and_its_children_moved() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let join = |h| Peer::join_from(addr, host(0, h));
    let mut v1 = join(2).await;
    let mut v2 = join(3).await;
    let mut v3 = join(4).await;
    assert_eq!((v2.parent, v3.parent), (v1.id, v1.id));
    // A report against someone not its parent: counted, nothing moves.
    v3.send(FromViewer::Report(Report {
        peer: v2.id,
        start: 0,
        timeline: 0,
    }))
    .await;
    // One witness: the reporter goes to the server; the parent stays.
    v2.send(FromViewer::Report(Report {
        peer: v1.id,
        start: 0,
        timeline: 0,
    }))
    .await;
    assert_eq!(v2.next_assign().await.parent, SERVER);
    // A second, at another address: barred, its other child moved.
    v3.send(FromViewer::Report(Report {
        peer: v1.id,
        start: 0,
        timeline: 0,
    }))
    .await;
    let a3 = v3.next_assign().await;
    assert_ne!(a3.parent, v1.id);
    // The barred viewer keeps watching, fed by the server, and takes no one.
    let mut v4 = join(5).await;
    assert_ne!(v4.parent, v1.id);
    v4.signal(v1.id, SignalKind::Offer, "x").await;
    v1.signal(v2.id, SignalKind::Offer, "x").await;
    wait_stats(addr, "all reports counted, both signals dropped", |s| {
        counter(s, "p2p_digest_mismatches") == 3
            && counter(s, "p2p_signals_dropped") == 2
            && counter(s, "p2p_bars") == 1
            && counter(s, "p2p_barred") == 1
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
    let proof = FromViewer::Proof(Proof::of(1, 0, 0, b"not a batch")).to_vec();
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
        (
            [vec![peering.clone()], vec![proof; 600]].concat(),
            1008,
            "proof flood",
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

// ---------------------------------------------------------------------
// Liars (issue 24): cheap sockets speaking the relay's messages, next to
// honest native peers that follow the page's rules (link to every parent
// they are given, never report).
// ---------------------------------------------------------------------

/// 127.0.`net`.`host`: the tests' own loopback addresses, one per host.
fn host(net: u8, host: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, net, host])
}

/// Server egress to viewers (bytes a second) measured by the server over
/// `window`, after `settle`.
async fn egress(addr: std::net::SocketAddr, settle: Duration, window: Duration) -> f64 {
    tokio::time::sleep(settle).await;
    let before = counter(&stats(addr).await, "viewer_bytes_sent");
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let after = counter(&stats(addr).await, "viewer_bytes_sent");
    (after - before) as f64 / t.elapsed().as_secs_f64()
}

/// A relay show: the server (`depth` levels of relay tree), one worker
/// thread, and `n` honest relaying peers at `127.0.0.<2..n + 2>` of net 0,
/// returned once all `n` are peering and `n - 1` are linked to a peer parent.
async fn honest_relays(
    depth: u32,
    n: u8,
) -> (
    donut_server::app::Server,
    tokio::task::JoinHandle<()>,
    Vec<Driven>,
) {
    let mut cfg = p2p_config(P2pMode::On);
    cfg.p2p_max_depth = depth;
    let server = start(cfg).await;
    let w = worker(server.addr, 1);
    let mut honest = Vec::new();
    for h in 2..n + 2 {
        honest.push(Driven::start(server.addr, host(0, h), Role::Honest).await);
    }
    let (peering, linked) = (u64::from(n), u64::from(n) - 1);
    wait_stats(server.addr, "the honest peers linked", |s| {
        counter(s, "p2p_peering") == peering && counter(s, "p2p_linked") == linked
    })
    .await;
    (server, w, honest)
}

/// One run of twelve honest relaying peers (each at its own address) and
/// two more viewers at two more addresses, as `extra`: returns the
/// server's egress, its figures at the end, and the extra viewers' logs.
async fn twelve_and_two(extra: Role) -> (f64, serde_json::Value, Vec<Log>) {
    // Room for all fourteen (three levels hold thirteen).
    let (server, _w, honest) = honest_relays(4, 12).await;
    let addr = server.addr;
    let mut two = Vec::new();
    for h in 1..=2 {
        two.push(Driven::start(addr, host(1, h), extra).await);
        if extra == Role::Reporter {
            // One after the other, as two sockets a moment apart would.
            wait_stats(addr, "the report", |s| {
                counter(s, "p2p_digest_mismatches") >= u64::from(h)
            })
            .await;
        }
    }
    let rate = egress(addr, Duration::from_secs(15), Duration::from_secs(20)).await;
    let s = stats(addr).await;
    let mut logs = Vec::new();
    for d in two {
        logs.push(d.finish().await);
    }
    for d in honest {
        let log = d.finish().await;
        assert!(log.closed.is_none(), "an honest peer was closed: {log:?}");
    }
    server.shutdown(Duration::from_secs(2)).await;
    (rate, s, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sybils_reporting_every_parent_bar_no_one_for_long() {
    // The same run without sybils: the two extra sockets watch plainly
    // (their own streams are the server's either way: they link to no one).
    let (plain, _, _) = twelve_and_two(Role::Plain).await;
    let (attacked, s, logs) = twelve_and_two(Role::Reporter).await;
    println!(
        "egress: {plain:.0} B/s without sybils, {attacked:.0} B/s with ({:.2}x); {s}",
        attacked / plain
    );
    assert!(
        attacked <= 1.2 * plain,
        "egress {attacked:.0} B/s with sybils, {plain:.0} B/s without"
    );
    assert_eq!(counter(&s, "p2p_linked"), 11, "honest peers unlinked: {s}");
    // Both sybils were found out, and from then on were given no parent,
    // so they could report no one.
    assert_eq!(counter(&s, "p2p_suspects"), 2, "{s}");
    assert_eq!(counter(&s, "p2p_bars"), 0, "{s}");
    for log in &logs {
        assert!(log.reports >= 1 && log.reports <= 2, "{log:?}");
        assert_eq!(log.parent, SERVER, "{log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_flood_never_closes_the_relay_it_is_aimed_at() {
    let mut cfg = p2p_config(P2pMode::On);
    // One relay with room for an honest child and three sybils.
    cfg.p2p_fanout = 4;
    let server = start(cfg).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let relay = Driven::start(addr, host(0, 2), Role::Honest).await;
    wait_stats(addr, "the relay", |s| counter(s, "p2p_peering") == 1).await;
    let child = Driven::start(addr, host(0, 3), Role::Honest).await;
    wait_stats(addr, "the child linked", |s| counter(s, "p2p_linked") == 1).await;
    let mut sybils = Vec::new();
    for h in 1..=3 {
        let p = Peer::join_from(addr, host(1, h)).await;
        assert_ne!(p.parent, SERVER, "a sybil is under the relay");
        sybils.push(p);
    }
    let relay_id = sybils[0].parent;
    assert!(sybils.iter().all(|p| p.parent == relay_id));
    // Each floods the relay with 4 KiB offers, up to its signalling
    // bucket (a burst of 199, then 48 a second), for ten seconds.
    let offer = format!("v=0\r\n{}", "a".repeat(4000));
    let floods: Vec<_> = sybils
        .into_iter()
        .map(|mut p| {
            let offer = offer.clone();
            tokio::spawn(async move {
                let begun = Instant::now();
                let mut sent = 0u32;
                let mut closed = None;
                while begun.elapsed() < Duration::from_secs(10) {
                    let burst = if sent == 0 { 199 } else { 12 };
                    for _ in 0..burst {
                        let msg = FromViewer::Signal(Signal {
                            peer: relay_id,
                            kind: SignalKind::Offer,
                            text: &offer,
                        });
                        if p.ws.send(Message::binary(msg.to_vec())).await.is_err() {
                            closed = Some("send failed".to_owned());
                            break;
                        }
                        sent += 1;
                    }
                    if closed.is_some() {
                        break;
                    }
                    // Drain what the server sends (so the sybil itself is
                    // never the one not reading).
                    let drain = async {
                        while let Some(m) = p.ws.next().await {
                            if let Ok(Message::Close(f)) = m {
                                return Some(format!("{f:?}"));
                            }
                        }
                        Some("ended".to_owned())
                    };
                    if let Ok(c) = tokio::time::timeout(Duration::from_millis(250), drain).await {
                        closed = c;
                        break;
                    }
                }
                (sent, closed)
            })
        })
        .collect();
    let mut sent = 0;
    for f in floods {
        let (n, _closed) = f.await.expect("flood task");
        sent += n;
    }
    let s = stats(addr).await;
    let relay = relay.finish().await;
    let child = child.finish().await;
    println!("{sent} offers sent; relay {relay:?}; child {child:?}; {s}");
    // The relay was never closed and its stream never stalled; its child
    // stayed linked under it.
    assert!(relay.closed.is_none(), "the relay was closed: {relay:?}");
    assert!(relay.frames >= 30, "{relay:?}");
    assert!(relay.longest_gap < Duration::from_secs(2), "{relay:?}");
    assert!(child.closed.is_none() && child.digests >= 30, "{child:?}");
    assert_eq!(counter(&s, "p2p_linked"), 1, "{s}");
    // The flood was throttled: the relay was handed a small part of it.
    let forwarded = counter(&s, "p2p_signals_forwarded");
    assert!(counter(&s, "p2p_signals_throttled") > 0, "{s}");
    assert!(
        forwarded * 10 < u64::from(sent),
        "{forwarded} of {sent} forwarded"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

/// Four honest relaying peers and twenty more viewers at twenty more
/// addresses, as `extra`: the server's egress (bytes a second) and its
/// figures at the end.
async fn four_and_twenty(extra: Role) -> (f64, serde_json::Value) {
    let (server, _w, mut all) = honest_relays(p2p_config(P2pMode::On).p2p_max_depth, 4).await;
    let addr = server.addr;
    for h in 1..=20 {
        all.push(Driven::start(addr, host(1, h), extra).await);
    }
    let rate = egress(addr, Duration::from_secs(8), Duration::from_secs(20)).await;
    let s = stats(addr).await;
    for d in all {
        let log = d.finish().await;
        assert!(log.closed.is_none(), "a viewer was closed: {log:?}");
    }
    server.shutdown(Duration::from_secs(2)).await;
    (rate, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_fetch_flooders_cost_no_more_than_their_own_streams() {
    // Their own streams' worth: the same twenty sockets, watching plainly.
    let (plain, _) = four_and_twenty(Role::Plain).await;
    let (flooded, s) = four_and_twenty(Role::Fetcher).await;
    println!(
        "egress: {plain:.0} B/s with twenty plain viewers, {flooded:.0} B/s with twenty \
         fetch flooders ({:.2}x); {s}",
        flooded / plain
    );
    assert!(
        flooded <= 1.1 * plain,
        "egress {flooded:.0} B/s with fetch flooders, {plain:.0} B/s with plain viewers"
    );
    // Fetches for batches already sent were refused, not served.
    assert!(counter(&s, "p2p_fetches_refused") > 0, "{s}");
}

/// One run of eight honest relaying peers (each at its own address), then
/// eight more viewers at eight more addresses as `extra`, for 20 s: returns
/// the fewest honest peers that had been told a peer parent (not the
/// server) at any time after the first 5 s, and the server's figures.
async fn eight_and_eight(extra: Role) -> (usize, serde_json::Value) {
    let (server, _w, honest) = honest_relays(4, 8).await;
    let addr = server.addr;
    let mut eight = Vec::new();
    for h in 1..=8 {
        eight.push(Driven::start(addr, host(3, h), extra).await);
    }
    let from = Instant::now() + Duration::from_secs(5);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let s = stats(addr).await;
    // Read before any socket leaves (a leaving relay's children move).
    let at = Instant::now();
    for d in eight {
        d.finish().await;
    }
    let mut logs = Vec::new();
    for d in honest {
        let log = d.finish().await;
        assert!(log.closed.is_none(), "an honest peer was closed: {log:?}");
        logs.push(log);
    }
    server.shutdown(Duration::from_secs(2)).await;
    // The fewest, sampled every 100 ms after the first 5 s.
    let fewest = (0..)
        .map(|i| from + Duration::from_millis(100 * i))
        .take_while(|&t| t <= at)
        .map(|t| logs.iter().filter(|l| l.parent_at(t) != SERVER).count())
        .min()
        .unwrap_or(0);
    (fewest, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_fetch_flooders_do_not_unlink_honest_peers() {
    // Each fetch of a batch it is owed is a strike on the flooder's
    // parent; weighed as reports, the flooders are believed once each and
    // then become the suspects: the honest peers stay fed by peers as in
    // the same run with eight plain viewers.
    let (plain, _) = eight_and_eight(Role::Plain).await;
    let (flooded, s) = eight_and_eight(Role::Fetcher).await;
    println!(
        "honest peers with a peer parent, at the fewest: {plain} beside plain viewers, {flooded} beside fetch flooders; {s}"
    );
    assert!(
        flooded >= plain,
        "{flooded} honest peers peer-fed beside fetch flooders, {plain} beside plain viewers: {s}"
    );
    assert!(counter(&s, "p2p_suspects") > 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_claiming_links_to_each_other_do_not_move_the_offload_figure() {
    let server = start(p2p_config(P2pMode::On)).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let mut root = Peer::join_from(addr, host(0, 2)).await;
    let mut child = Peer::join_from(addr, host(0, 3)).await;
    assert_eq!(child.parent, root.id);
    child
        .send(FromViewer::Link(Link {
            parent: root.id,
            up: true,
        }))
        .await;
    // The honest child proves every batch its parent "delivered" (here:
    // the bytes its parent got, as a data channel would carry them).
    let mut sybils = Vec::new();
    let begun = Instant::now();
    let mut proven = 0;
    while begun.elapsed() < Duration::from_secs(25) {
        if let Got::Digest(d) = child.next().await {
            let bytes = root.frames_of(d.start, d.timeline).await;
            child
                .send(FromViewer::Proof(Proof::of(
                    child.id, d.start, d.timeline, &bytes,
                )))
                .await;
            proven += 1;
        }
        // Five seconds in, six sybils join and say their link to whatever
        // parent they are given is up (to each other, mostly), never
        // holding a byte.
        if sybils.is_empty() && begun.elapsed() > Duration::from_secs(5) {
            for h in 1..=6 {
                sybils.push(Driven::start(addr, host(1, h), Role::Honest).await);
            }
        }
    }
    let s = stats(addr).await;
    for d in sybils {
        d.finish().await;
    }
    println!("{proven} proven; {s}");
    // What the server saved: the one child's stream of the batches it
    // needed to send (the root's, the child's, and the sybils' not
    // linked), half at best; the claims are counted apart.
    let offload = counter(&s, "p2p_offload_permille");
    assert!(offload <= 520, "offload {offload}‰ counts claims: {s}");
    assert!(offload >= 100, "the proven deliveries count: {s}");
    assert!(counter(&s, "p2p_claimed_permille") > offload + 200, "{s}");
    assert!(
        counter(&s, "p2p_linked") >= 4,
        "the sybils claimed links: {s}"
    );
    server.shutdown(Duration::from_secs(2)).await;
}
