//! Hostile workers against native verification: forged bytes, wrong frame
//! numbers, replays, tasks never given, wrong lengths and floods. Each ends
//! with the offender cut off, and the viewers' stream gap-free and identical
//! to the native render throughout (the checking viewer compares every frame).

mod common;

use std::time::Duration;

use common::*;
use donut_server::config::{ServeConfig, VerifyPolicy};
use donut_shared::PACKED_LEN;
use donut_shared::wire::{RESULT_HEADER_LEN, Task, TaskResult, ToWorker};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Runs a hostile worker from 127.0.0.2 until the server closes it.
async fn cheat(addr: std::net::SocketAddr, forge: Forge) -> ((u16, String), usize) {
    cheat_from(addr, 2, forge).await
}

/// Changes one symbol of frame `index` (row 7, column 40) to another glyph.
fn flip(result: &mut [u8], index: usize) {
    let at = RESULT_HEADER_LEN + index * PACKED_LEN + 300;
    let b = result[at];
    // Another glyph (1..=12) where the donut draws: the layout stays valid,
    // only a re-render can tell.
    let hi = (b >> 4) % 12 + 1;
    result[at] = (hi << 4) | (b & 0x0f);
}

fn trust_config(policy: VerifyPolicy) -> ServeConfig {
    let mut cfg = config();
    cfg.verify = policy;
    cfg.ban_secs = 60;
    cfg.max_strikes = 3;
    cfg
}

/// The shape of every test: an honest worker and a checking viewer run
/// while `forge` cheats; the cheater must be cut off with a policy close.
async fn cut_off_while_stream_stays_correct(
    cfg: ServeConfig,
    forge: Forge,
) -> (serde_json::Value, (u16, String), usize) {
    let server = start(cfg).await;
    let addr = server.addr;
    let mut viewer = Viewer::connect(addr).await;
    // The cheater connects from 127.0.0.2: the ban that ends each test
    // closes and refuses every worker of its address, not the honest one's.
    let honest = worker(addr, 1);
    wait_stats(addr, "the honest worker is connected", |s| {
        s["workers"] == 1
    })
    .await;
    let cheater = tokio::spawn(cheat(addr, forge));
    let (close, sent) = cheater.await.expect("cheater task");
    viewer.receive(240).await;
    assert_eq!(viewer.seen.first, Some(0));
    let s = stats(addr).await;
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
    (s, close, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_policy_catches_every_flipped_byte() {
    let forge: Forge = Box::new(|t| {
        let mut r = result_for(t);
        flip(&mut r, t.count as usize / 2);
        vec![r]
    });
    let (s, (code, reason), _) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Full), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("failed verification"), "{reason}");
    // Every forged batch it got to send was rejected: three strikes, three rejections.
    assert_eq!(s["batches_rejected"], 3, "{s}");
    assert_eq!(s["strikes"], 3, "{s}");
    assert_eq!(s["workers_banned"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_policy_catches_a_persistent_cheater_within_a_few_batches() {
    let forge: Forge = Box::new(|t| {
        let mut r = result_for(t);
        // One forged frame at a position of its choosing in every batch.
        flip(&mut r, t.count as usize - 1);
        vec![r]
    });
    let (s, (code, reason), sent) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Sample), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(s["batches_rejected"], 3, "{s}");
    assert!(sent <= 5, "caught within a few batches, sent {sent}");
    assert_eq!(s["workers_banned"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_frames_for_the_wrong_numbers_are_rejected() {
    let forge: Forge = Box::new(|t| {
        // Real donut frames, but rendered one frame later than asked.
        let mut scene = t.scene;
        scene.step();
        let shifted = Task {
            start: t.start + 1,
            scene,
            ..*t
        };
        let mut r = result_for(&shifted);
        r[..RESULT_HEADER_LEN].copy_from_slice(&TaskResult::header(t.task_id, t.start, t.count));
        vec![r]
    });
    let (s, (code, reason), _) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Sample), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("failed verification"), "{reason}");
    assert_eq!(s["batches_rejected"], 3, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_another_tasks_result_is_a_strike() {
    let mut previous: Option<Vec<u8>> = None;
    let forge: Forge = Box::new(move |t| {
        let honest = result_for(t);
        let out = match previous.take() {
            // Answer this task with the last task's (valid, verified) frames
            // and range, under this task's id.
            Some(mut old) => {
                old[2..6].copy_from_slice(&t.task_id.to_be_bytes());
                vec![old]
            }
            None => vec![honest.clone()],
        };
        previous = Some(honest);
        out
    });
    let (s, (code, reason), _) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Full), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("does not match"), "{reason}");
    assert_eq!(s["strikes"], 3, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_tasks_never_given_is_a_strike() {
    let forge: Forge = Box::new(|t| {
        let fake = Task {
            task_id: t.task_id + 1000,
            ..*t
        };
        vec![result_for(&fake)]
    });
    let (s, (code, reason), _) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Full), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("never given"), "{reason}");
    assert_eq!(s["strikes"], 3, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_length_is_closed_at_once() {
    let forge: Forge = Box::new(|t| {
        let mut r = result_for(t);
        r.truncate(r.len() - PACKED_LEN);
        vec![r]
    });
    let (s, (code, reason), sent) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Full), forge).await;
    assert_eq!(code, 1002, "{reason}");
    assert!(reason.contains("header implies"), "{reason}");
    assert!(sent >= 1);
    assert_eq!(s["protocol_errors"], 1, "{s}");
    assert_eq!(s["batches_rejected"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_results_is_cut_off_while_others_carry_on() {
    let forge: Forge = Box::new(|t| {
        let r = result_for(t);
        vec![r; 500]
    });
    let (s, (code, reason), _) =
        cut_off_while_stream_stays_correct(trust_config(VerifyPolicy::Full), forge).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("flooding"), "{reason}");
    assert_eq!(s["workers_banned"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_address_is_refused_for_the_cooldown() {
    let server = start(trust_config(VerifyPolicy::Full)).await;
    let addr = server.addr;
    let forge: Forge = Box::new(|t| {
        let mut r = result_for(t);
        flip(&mut r, 0);
        vec![r]
    });
    let ((code, _), _) = cheat(addr, forge).await;
    assert_eq!(code, 1008);
    let mut again = connect_from(addr, "/ws/worker", loopback(2)).await;
    let (code, reason) = expect_close(&mut again).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("banned"), "{reason}");
    let s = stats(addr).await;
    assert_eq!(s["connections_refused"], 1, "{s}");
    server.shutdown(Duration::from_secs(3)).await;
}

/// Sets symbol `at` of frame `index` of a result to `code`.
fn set_symbol(result: &mut [u8], index: usize, at: usize, code: u8) {
    let byte = &mut result[RESULT_HEADER_LEN + index * PACKED_LEN + at / 2];
    *byte = if at.is_multiple_of(2) {
        (code << 4) | (*byte & 0x0f)
    } else {
        (*byte & 0xf0) | code
    };
}

/// A raw worker from 127.0.0.`from` that answers `clean` tasks honestly,
/// then sends `bad` for the next one; returns the server's close.
async fn honest_then(
    addr: std::net::SocketAddr,
    from: u8,
    clean: usize,
    bad: impl Fn(&Task) -> Vec<u8>,
) -> (u16, String) {
    let mut ws = connect_from(addr, "/ws/worker", loopback(from)).await;
    hello(&mut ws, 2).await;
    for _ in 0..clean {
        let t = next_task(&mut ws).await;
        ws.send(Message::binary(result_for(&t)))
            .await
            .expect("send");
    }
    let t = next_task(&mut ws).await;
    ws.send(Message::binary(bad(&t))).await.expect("send");
    expect_close(&mut ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_is_refused_under_every_policy() {
    // The smallest input: one otherwise correct frame whose symbol
    // 79 is `@` (12) instead of the newline, after clean batches enough for
    // `sample` to have decayed to its floor; and a newline inside a row.
    let cases: [(VerifyPolicy, usize, u8); 5] = [
        (VerifyPolicy::Full, 79, 12),
        (VerifyPolicy::Quorum, 79, 12),
        (VerifyPolicy::Sample, 79, 12),
        (VerifyPolicy::Off, 79, 12),
        (VerifyPolicy::Sample, 5 * 80 + 40, 13),
    ];
    for (policy, at, code) in cases {
        let mut cfg = trust_config(policy);
        cfg.sample_trust_batches = 3;
        cfg.quorum_wait_ms = 100;
        let server = start(cfg).await;
        let addr = server.addr;
        let viewer = BackgroundViewer::start(addr).await;
        let honest = worker(addr, 1);
        let (close, reason) = honest_then(addr, 2, 4, |t| {
            let mut r = result_for(t);
            set_symbol(&mut r, t.count as usize / 2, at, code);
            r
        })
        .await;
        assert_eq!(close, 1002, "{policy:?}: {reason}");
        assert!(reason.contains("must be"), "{policy:?}: {reason}");
        // The checking viewer decodes and compares every frame: the range
        // is redone by someone honest and nothing malformed arrives.
        viewer.finish(240).await;
        let s = stats(addr).await;
        assert_eq!(s["strikes"], 1, "{policy:?}: {s}");
        assert_eq!(s["batches_rejected"], 1, "{policy:?}: {s}");
        honest.abort();
        server.shutdown(Duration::from_secs(3)).await;
    }
}

/// One session of a patient cheater from 127.0.0.2: nine honest batches,
/// then one with a single forged frame, then it hangs up to shed its
/// strikes. `Err` is the server's close, if it closes the session first.
async fn forge_one_in_ten(addr: std::net::SocketAddr) -> Result<(), (u16, String)> {
    let mut ws = connect_from(addr, "/ws/worker", loopback(2)).await;
    hello(&mut ws, 2).await;
    let mut answered = 0;
    while answered < 10 {
        let msg = tokio::time::timeout(HANG, ws.next())
            .await
            .expect("in time");
        match msg {
            Some(Ok(Message::Binary(b))) => {
                let Ok(ToWorker::Task(t)) = ToWorker::decode(&b) else {
                    continue;
                };
                let mut r = result_for(&t);
                answered += 1;
                if answered == 10 {
                    flip(&mut r, t.count as usize - 1);
                }
                ws.send(Message::binary(r)).await.expect("send");
            }
            Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                return Err((u16::from(code), reason.to_string()));
            }
            Some(Ok(_)) => {}
            other => panic!("cheater socket ended without a close: {other:?}"),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Under the default policy, a cheater that behaves, then forges one frame
/// of one batch in ten and reconnects after every forged batch: the
/// strikes follow its address, it is banned after `max_strikes` forged
/// batches and refused on reconnect, and no forged frame reaches the viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_cheater_is_banned_by_address_and_gets_nothing_through() {
    let mut cfg = ServeConfig::for_tests();
    assert_eq!(cfg.verify, VerifyPolicy::Full, "the default policy");
    cfg.ban_secs = 60;
    let server = start(cfg).await;
    let addr = server.addr;
    let viewer = BackgroundViewer::start(addr).await;
    let honest = worker(addr, 1);
    let mut forged = 0;
    let refusal = loop {
        match forge_one_in_ten(addr).await {
            Ok(()) => forged += 1,
            Err(close) => break close,
        }
        assert!(forged <= 3, "still admitted after {forged} forged batches");
    };
    assert_eq!(refusal.0, 1008, "{refusal:?}");
    assert!(refusal.1.contains("banned"), "{refusal:?}");
    assert_eq!(forged, 3);
    let seen = viewer.finish(600).await;
    assert_eq!(seen.first, Some(0));
    let s = stats(addr).await;
    assert_eq!(s["batches_rejected"], 3, "{s}");
    assert_eq!(s["strikes"], 3, "{s}");
    // The honest worker shares no address with it and carries on.
    wait_stats(addr, "only the honest worker is left", |s| {
        s["workers"] == 1
    })
    .await;
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_served_leaves_no_trust_and_the_next_one_is_longer() {
    let mut cfg = trust_config(VerifyPolicy::Sample);
    cfg.ban_secs = 1;
    cfg.max_strikes = 1;
    let server = start(cfg).await;
    let addr = server.addr;
    let honest = worker(addr, 1);
    // Earn trust, then forge the last frame of a batch: caught (a new
    // address is checked in full), banned for 1 s.
    let forge_last = |t: &Task| {
        let mut r = result_for(t);
        flip(&mut r, t.count as usize - 1);
        r
    };
    let (code, reason) = honest_then(addr, 2, 0, forge_last).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("banned 1 s"), "{reason}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Back after the ban, with no trust: its first forged batch is caught
    // at once, and the second ban is twice as long.
    let (code, reason) = honest_then(addr, 2, 0, forge_last).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("banned 2 s"), "{reason}");
    honest.abort();
    server.shutdown(Duration::from_secs(3)).await;
}
