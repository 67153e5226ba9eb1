//! The relay policy's rules, each pinned by a test. The same tests run
//! natively and, with the BLAKE3 the page uses, as wasm (`./build.sh test`
//! runs them in Node).

use super::*;
use crate::p2p::gate;
use donut_shared::wire::{Assign, Codec, Digest, Frames, Welcome};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// This tab's peer id in the tests.
const ME: u64 = 5;

fn batch(start: u64, timeline: u32, fill: u8) -> Vec<u8> {
    let payload = vec![fill; 40];
    let f = Frames {
        start,
        count: 1,
        timeline,
        codec: Codec::Context,
        payload: &payload,
    };
    let mut out = vec![0u8; f.encoded_len()];
    let n = f.encode(&mut out).expect("sized");
    out.truncate(n);
    out
}

fn digest(bytes: &[u8]) -> ToViewer<'static> {
    let (start, timeline) = gate::batch_key(bytes).expect("a batch");
    ToViewer::Digest(Digest::of(start, 1, timeline, bytes))
}

fn assign(parent: u64) -> ToViewer<'static> {
    ToViewer::Assign(Assign {
        parent,
        backup: SERVER,
    })
}

/// The action that plays `bytes`.
fn played_action(bytes: Vec<u8>) -> Action {
    Action::Play(Batch::decode(bytes).expect("a batch"))
}

fn drain(p: &mut RelayPolicy) -> Vec<Action> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

/// The messages among `actions` that go to the server, decoded.
fn sent(actions: &[Action]) -> Vec<FromViewer<'_>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(bytes) => Some(FromViewer::decode(bytes).expect("a valid message")),
            _ => None,
        })
        .collect()
}

fn closes(actions: &[Action]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close(serial) => Some(*serial),
            _ => None,
        })
        .collect()
}

fn opened(actions: &[Action]) -> Option<(u32, u64, PeerRole)> {
    actions.iter().find_map(|a| match a {
        Action::Open { serial, peer, role } => Some((*serial, *peer, *role)),
        _ => None,
    })
}

/// A policy that joined and was welcomed as [`ME`].
fn joined() -> RelayPolicy {
    let mut p = RelayPolicy::new();
    p.set_wanted(true);
    assert_eq!(drain(&mut p), vec![Action::Join]);
    p.joined(true);
    p.on_server(
        &ToViewer::Welcome(Welcome {
            id: ME,
            ice_servers: "",
        }),
        0.0,
    );
    assert!(drain(&mut p).is_empty());
    p
}

/// Assigns `parent` at `now`; the serial of the link opened to it.
fn under(p: &mut RelayPolicy, parent: u64, now: f64) -> u32 {
    p.on_server(&assign(parent), now);
    let actions = drain(p);
    let (serial, peer, role) = opened(&actions).expect("a link to the parent");
    assert_eq!((peer, role), (parent, PeerRole::Child));
    serial
}

#[test]
fn a_parent_link_that_does_not_open_in_time_is_given_up() {
    let mut p = joined();
    let serial = under(&mut p, 7, 1_000.0);
    p.on_tick(1_000.0 + LINK_TIMEOUT_MS, None);
    assert!(drain(&mut p).is_empty(), "not yet out of time");
    p.on_tick(1_001.0 + LINK_TIMEOUT_MS, None);
    let actions = drain(&mut p);
    assert_eq!(closes(&actions), vec![serial]);
    assert_eq!(
        sent(&actions),
        vec![FromViewer::Link(Link {
            parent: 7,
            up: false
        })]
    );
    assert_eq!(p.parent(), (7, None));
    assert_eq!(p.stats().parents_lost, 1);
}

#[test]
fn a_parent_link_that_opened_is_kept_past_the_timeout() {
    let mut p = joined();
    let serial = under(&mut p, 7, 0.0);
    p.on_link(serial, LinkState::Open);
    assert_eq!(
        sent(&drain(&mut p)),
        vec![FromViewer::Link(Link {
            parent: 7,
            up: true
        })]
    );
    p.on_tick(10.0 * LINK_TIMEOUT_MS, None);
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.parent(), (7, Some(serial)));
}

#[test]
fn the_tab_leaves_the_tree_after_failed_links() {
    let mut p = joined();
    let mut now = 0.0;
    for failed in 1..=MAX_FAILED_LINKS {
        let serial = under(&mut p, 7 + u64::from(failed), now);
        now += LINK_TIMEOUT_MS / 2.0;
        // One fails by timing out, the others by closing before they open.
        if failed == 1 {
            now += LINK_TIMEOUT_MS;
            p.on_tick(now, None);
        } else {
            p.on_link(serial, LinkState::Closed { open: false });
        }
        let actions = drain(&mut p);
        let left = sent(&actions).contains(&FromViewer::Peering(Peering { on: false }));
        assert_eq!(left, failed == MAX_FAILED_LINKS, "after {failed} failed");
        assert_eq!(p.is_joined(), failed < MAX_FAILED_LINKS);
    }
    // Out of the tree: fed by the server, the clock asks for nothing.
    assert_eq!(p.parent(), (SERVER, None));
    p.on_server(&digest(&batch(1, 0, 1)), now);
    p.on_tick(now + 60_000.0, Some(1_000));
    assert!(drain(&mut p).is_empty());
}

#[test]
fn a_parent_dropped_while_open_is_not_a_failed_link() {
    let mut p = joined();
    for i in 0..2 * MAX_FAILED_LINKS {
        let serial = under(&mut p, 7 + u64::from(i), 0.0);
        p.on_link(serial, LinkState::Open);
        // Caught lying: bytes that fail the announced digest.
        p.on_server(&digest(&batch(u64::from(i), 0, 1)), 0.0);
        p.on_link(serial, LinkState::Message(batch(u64::from(i), 0, 2)));
        let actions = drain(&mut p);
        assert_eq!(closes(&actions), vec![serial]);
        assert!(sent(&actions).contains(&FromViewer::Report(Report {
            peer: 7 + u64::from(i),
            start: u64::from(i),
            timeline: 0
        })));
    }
    assert!(p.is_joined());
    assert_eq!(p.stats().mismatches, u64::from(2 * MAX_FAILED_LINKS));
}

#[test]
fn what_a_lost_parent_owed_is_fetched_from_the_server() {
    let mut p = joined();
    let serial = under(&mut p, 7, 0.0);
    p.on_link(serial, LinkState::Open);
    drain(&mut p);
    let (played, owed) = (batch(10, 0, 1), batch(20, 0, 2));
    p.on_server(&digest(&played), 0.0);
    p.on_server(&digest(&owed), 0.0);
    p.on_link(serial, LinkState::Message(played.clone()));
    let actions = drain(&mut p);
    assert!(actions.contains(&played_action(played)));
    // The parent goes before the second batch came: only it is fetched.
    p.on_link(serial, LinkState::Closed { open: false });
    let actions = drain(&mut p);
    assert_eq!(closes(&actions), vec![serial]);
    assert_eq!(
        sent(&actions),
        vec![
            FromViewer::Link(Link {
                parent: 7,
                up: false
            }),
            FromViewer::Fetch(Fetch {
                start: 20,
                timeline: 0
            }),
        ]
    );
    assert_eq!(p.stats().fetches, 1);
    // Asked once: the clock does not ask again.
    p.on_tick(60_000.0, Some(1_000));
    assert!(sent(&drain(&mut p)).is_empty());
}

#[test]
fn a_new_parent_fetches_what_the_old_one_owed() {
    let mut p = joined();
    let old = under(&mut p, 7, 0.0);
    p.on_link(old, LinkState::Open);
    drain(&mut p);
    p.on_server(&digest(&batch(30, 1, 3)), 0.0);
    p.on_server(&assign(8), 10.0);
    let actions = drain(&mut p);
    assert_eq!(closes(&actions), vec![old]);
    assert!(sent(&actions).contains(&FromViewer::Fetch(Fetch {
        start: 30,
        timeline: 1
    })));
    assert_eq!(opened(&actions).map(|(_, peer, _)| peer), Some(8));
}

#[test]
fn a_verified_batch_is_played_and_proven() {
    let mut p = joined();
    let serial = under(&mut p, 7, 0.0);
    p.on_link(serial, LinkState::Open);
    drain(&mut p);
    let b = batch(40, 0, 4);
    // Bytes before their digest are held, then played when it comes.
    p.on_link(serial, LinkState::Message(b.clone()));
    assert!(drain(&mut p).is_empty());
    p.on_server(&digest(&b), 0.0);
    let actions = drain(&mut p);
    assert_eq!(
        sent(&actions),
        vec![FromViewer::Proof(Proof::of(ME, 40, 0, &b))]
    );
    assert_eq!(actions.last(), Some(&played_action(b)));
    assert!(!p.server_batch((40, 0)), "the server's copy is a duplicate");
}

/// A child that offered and whose channel opened; its link's serial.
fn child(p: &mut RelayPolicy, peer: u64) -> u32 {
    p.on_server(
        &ToViewer::Signal(Signal {
            peer,
            kind: SignalKind::Offer,
            text: "v=0",
        }),
        0.0,
    );
    let actions = drain(p);
    let (serial, at, role) = opened(&actions).expect("a link to the child");
    assert_eq!((at, role), (peer, PeerRole::Parent));
    assert_eq!(
        actions.last(),
        Some(&Action::ApplyRemote {
            serial,
            kind: SignalKind::Offer,
            sdp: "v=0".to_owned()
        })
    );
    p.on_link(serial, LinkState::Open);
    assert!(drain(p).is_empty());
    serial
}

#[test]
fn a_slow_child_is_dropped() {
    let mut p = joined();
    let (slow, fine) = (child(&mut p, 9), child(&mut p, 10));
    assert_eq!(p.feeding(), vec![slow, fine]);
    p.delivered(slow, 100, Delivery::Refused);
    p.delivered(fine, 100, Delivery::Sent);
    assert_eq!(drain(&mut p), vec![Action::Close(slow)]);
    assert_eq!(p.feeding(), vec![fine]);
    assert_eq!(p.stats().batches_relayed, 1);
    assert_eq!(p.stats().bytes_relayed, 100);
    // A channel not open yet is skipped, not dropped.
    p.delivered(fine, 100, Delivery::NotOpen);
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.feeding(), vec![fine]);
}

#[test]
fn a_child_never_feeds_this_tab() {
    let mut p = joined();
    let serial = child(&mut p, 9);
    let b = batch(50, 0, 5);
    p.on_server(&digest(&b), 0.0);
    p.on_link(serial, LinkState::Message(b));
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.stats().batches_from_peer, 0);
}

#[test]
fn children_are_bounded() {
    let mut p = joined();
    for peer in 100..100 + MAX_CHILDREN as u64 {
        child(&mut p, peer);
    }
    p.on_server(
        &ToViewer::Signal(Signal {
            peer: 1,
            kind: SignalKind::Offer,
            text: "v=0",
        }),
        0.0,
    );
    assert!(opened(&drain(&mut p)).is_none());
    assert_eq!(p.feeding().len(), MAX_CHILDREN);
}

#[test]
fn turning_off_closes_every_link_and_tells_the_server() {
    let mut p = joined();
    let parent = under(&mut p, 7, 0.0);
    let kid = child(&mut p, 9);
    p.set_wanted(false);
    let actions = drain(&mut p);
    assert_eq!(
        sent(&actions),
        vec![FromViewer::Peering(Peering { on: false })]
    );
    assert_eq!(closes(&actions), vec![parent, kid]);
    assert!(!p.is_joined());
    assert_eq!(p.id(), None);
}

#[test]
fn a_link_that_cannot_be_made_is_reported_down() {
    let mut p = joined();
    let serial = under(&mut p, 7, 0.0);
    p.open_failed(serial);
    assert_eq!(
        sent(&drain(&mut p)),
        vec![FromViewer::Link(Link {
            parent: 7,
            up: false
        })]
    );
    assert_eq!(p.parent(), (7, None));
}
