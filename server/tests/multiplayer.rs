//! Multiplayer over the real server: viewers push the donut on
//! `/ws/viewer`, the server folds the pushes into scene changes, real native
//! workers render the steered timeline, the server verifies it in full, and
//! every viewer plays exactly the committed timeline's frames.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use donut_server::stream::timeline::Timeline;
use donut_shared::scene::Scene;
use donut_shared::wire::{Codec, Input, PROTOCOL_VERSION, ToViewer};
use donut_shared::{PACKED_LEN, render_pose_packed};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A viewer that holds frames as a page would: a newer timeline version
/// replaces what it holds from the batch's start on.
#[derive(Default)]
struct Holder {
    /// Frame → (version, packed bytes).
    held: BTreeMap<u64, (u32, [u8; PACKED_LEN])>,
    /// Newest version seen.
    version: u32,
    /// Batches received per version.
    batches: BTreeMap<u32, u32>,
    /// Frames received in all.
    frames: u64,
    /// `Frames` bytes received in all, and the codecs they came in.
    bytes: u64,
    codecs: Vec<Codec>,
}

impl Holder {
    fn take(&mut self, bytes: &[u8]) {
        let Ok(ToViewer::Frames(f)) = ToViewer::decode(bytes) else {
            return;
        };
        // Versions never go back within one viewer's stream.
        assert!(
            f.timeline >= self.version,
            "batch at {} of version {} after version {}",
            f.start,
            f.timeline,
            self.version
        );
        if f.timeline > self.version {
            self.held.split_off(&f.start);
            self.version = f.timeline;
        }
        *self.batches.entry(f.timeline).or_default() += 1;
        self.bytes += bytes.len() as u64;
        if !self.codecs.contains(&f.codec) {
            self.codecs.push(f.codec);
        }
        f.decode_frames(|n, packed| {
            if let Some((v, _)) = self.held.get(&n) {
                // No frame of a superseded version after the newer one.
                assert!(
                    *v <= f.timeline,
                    "frame {n}: version {} after {v}",
                    f.timeline
                );
            }
            self.held.insert(n, (f.timeline, *packed));
            self.frames += 1;
        })
        .expect("batches decode");
    }
}

/// The committed timeline as seen over time: every keyframe any snapshot
/// held (a keyframe is final by the time the head passes it).
#[derive(Default)]
struct Committed {
    keys: BTreeMap<u64, Scene>,
}

impl Committed {
    fn observe(&mut self, t: &Timeline) {
        for k in t.keyframes() {
            self.keys.insert(k, t.scene_at(k));
        }
    }

    fn scene(&self, frame: u64) -> Scene {
        match self.keys.range(..=frame).next_back() {
            Some((&k, s)) => {
                let mut s = *s;
                s.advance(frame - k);
                s
            }
            None => Scene::idle(frame),
        }
    }
}

fn input(a: i16, b: i16) -> Message {
    Message::binary(Input { a, b }.to_bytes().to_vec())
}

/// A scripted input log steers the stream: a checking viewer ends up with,
/// at every frame, exactly the native render of the committed timeline
/// (idle before the first change), versions never go back, the stream
/// keeps going; native workers and the server agree byte for byte under
/// `--verify full` (no strike, no rejection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steered_timeline_plays_the_same_everywhere() {
    let server = start(config()).await;
    let addr = server.addr;
    let _w1 = worker(addr, 1);
    let _w2 = worker_from(addr, 1, loopback(2));
    let mut checker = connect(addr, "/ws/viewer").await;
    let mut steer = connect(addr, "/ws/viewer").await;
    let core = std::sync::Arc::clone(&server.app().core);

    let mut holder = Holder::default();
    let mut committed = Committed::default();
    committed.observe(&core.timeline());
    // The script: a push every 400 ms, then the stream runs on.
    let script: [(i16, i16); 5] = [(600, 0), (0, -900), (-300, 300), (1024, 1024), (-1024, 0)];
    let mut next_input = 0;
    let mut next_at = tokio::time::Instant::now() + Duration::from_millis(500);
    let first_head = core.position().head;
    let run = async {
        loop {
            tokio::select! {
                msg = checker.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        holder.take(&b);
                        committed.observe(&core.timeline());
                    }
                    Some(Ok(Message::Close(f))) => panic!("checker closed: {f:?}"),
                    Some(Ok(_)) => {}
                    other => panic!("checker socket: {other:?}"),
                },
                () = tokio::time::sleep_until(next_at), if next_input < script.len() => {
                    let (a, b) = script[next_input];
                    steer.send(input(a, b)).await.expect("input sent");
                    next_input += 1;
                    next_at += Duration::from_millis(400);
                }
            }
            committed.observe(&core.timeline());
            let changes = committed.keys.len() as u64 - 1;
            // Done once every push committed and 2 s more played after the last.
            if changes >= script.len() as u64
                && core.position().head > committed.keys.keys().last().copied().unwrap_or(0) + 120
            {
                break;
            }
        }
    };
    tokio::time::timeout(HANG, run)
        .await
        .expect("the stream keeps going");

    let changes = committed.keys.len() - 1;
    assert!(
        changes >= 3,
        "pushes 400 ms apart commit as separate changes: {changes}"
    );
    assert!(holder.version as usize >= changes);
    // Every frame held is the committed timeline's, byte for byte.
    let first_change = *committed.keys.keys().nth(1).expect("a change");
    let mut want = [0u8; PACKED_LEN];
    let (mut idle, mut steered) = (0, 0);
    for (&n, (_, got)) in &holder.held {
        render_pose_packed(committed.scene(n).pose, &mut want);
        assert_eq!(got, &want, "frame {n} is not the committed timeline's");
        if n < first_change {
            // Before the change: the frames everyone always had.
            let mut idle_frame = [0u8; PACKED_LEN];
            donut_shared::render_packed(n, &mut idle_frame);
            assert_eq!(got, &idle_frame, "frame {n} before the change changed");
            idle += 1;
        } else {
            steered += 1;
        }
    }
    assert!(idle > 0 && steered > 200, "idle {idle}, steered {steered}");
    assert!(first_change > first_head);
    // Steered frames really differ from idle ones.
    let late = *holder.held.keys().last().expect("frames");
    assert_ne!(committed.scene(late), Scene::idle(late));

    let s = stats(addr).await;
    assert_eq!(s["strikes"], 0, "{s}");
    assert_eq!(s["batches_rejected"], 0, "{s}");
    assert_eq!(s["inputs_accepted"], script.len() as u64, "{s}");
    assert_eq!(s["inputs_refused"], 0, "{s}");
    assert_eq!(s["scene_changes"], changes as u64, "{s}");
    let superseded = s["frames_superseded"].as_u64().expect("a count");
    println!(
        "changes {changes}, frames superseded {superseded} ({:.0} a change), batches by version {:?}, playback stalls {} frames",
        superseded as f64 / changes as f64,
        holder.batches,
        s["playback_stall_frames"]
    );
    drop(checker);
    drop(steer);
    server.shutdown(Duration::from_secs(2)).await;
}

/// Floods and out-of-range or malformed inputs close their viewer with a
/// reason; another viewer keeps receiving every frame, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_bad_inputs_are_refused_and_others_play_on() {
    let mut cfg = config();
    cfg.input_rate = 5.0;
    cfg.input_burst = 10;
    let server = start(cfg).await;
    let addr = server.addr;
    let _w = worker(addr, 1);
    let watcher = BackgroundViewer::start(addr).await;

    // A flood of zero pushes (so the watcher's idle frames stay idle): the
    // burst passes, then the viewer is closed.
    let mut flood = connect(addr, "/ws/viewer").await;
    for _ in 0..40 {
        if flood.send(input(0, 0)).await.is_err() {
            break;
        }
    }
    let (code, reason) = expect_close(&mut flood).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("input flood"), "{reason}");

    let cases: [(Vec<u8>, u16, &str); 4] = [
        // Beyond ±MAX_INPUT_UNITS.
        (
            {
                let mut m = vec![PROTOCOL_VERSION, 0x03];
                m.extend_from_slice(&2000i16.to_be_bytes());
                m.extend_from_slice(&0i16.to_be_bytes());
                m
            },
            1002,
            "outside",
        ),
        // Truncated.
        (vec![PROTOCOL_VERSION, 0x03, 0], 1002, ""),
        // Another protocol version.
        (
            vec![PROTOCOL_VERSION + 7, 0x03, 0, 0, 0, 0],
            1002,
            "version",
        ),
        // A relay message of a kind that does not exist (Signal kind 9).
        (
            {
                let mut m = vec![PROTOCOL_VERSION, 0x05];
                m.extend_from_slice(&1u64.to_be_bytes());
                m.push(9);
                m
            },
            1002,
            "invalid",
        ),
    ];
    for (msg, want_code, want) in cases {
        let mut ws = connect(addr, "/ws/viewer").await;
        ws.send(Message::binary(msg.clone())).await.expect("sent");
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(code, want_code, "{msg:?}: {reason}");
        assert!(
            !reason.is_empty() && reason.contains(want),
            "{msg:?}: {reason}"
        );
    }
    let s = stats(addr).await;
    assert_eq!(s["inputs_refused"], 5, "{s}");
    assert_eq!(s["scene_changes"], 0, "{s}");
    // The watcher saw every frame, in order, idle, and keeps receiving.
    let seen = watcher.finish(120).await;
    assert!(seen.frames >= 120);
    server.shutdown(Duration::from_secs(2)).await;
}

/// Viewers steering at the input rate limit cost a watching viewer no more
/// than playing does (issue 25): while the timeline is hot, the server
/// renders and sends only up to the earliest frame the next change can land
/// on, so a change supersedes nothing already sent or handed out (only the
/// first change after a quiet spell may, once). Five viewers push about 28
/// times a second each for 5 s: a checking viewer receives at most 1.5
/// frames per frame played (the first change re-sends up to the 1 s viewer
/// lead once), the fleet re-renders at most one render-ahead plus half the
/// frames played, every frame held is the native render of the committed
/// timeline, and the full render-ahead is back within a second of the last
/// push. Before, each change re-sent and re-rendered the whole window
/// (a checking viewer received ~9 frames per frame played).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_at_the_rate_limit_costs_watchers_no_more_than_playing() {
    let cfg = config();
    let lead_frames = cfg.lead_frames();
    let viewer_lead = cfg.viewer_lead_frames();
    let rate = cfg.input_rate;
    let server = start(cfg).await;
    let addr = server.addr;
    let _w1 = worker(addr, 1);
    let _w2 = worker_from(addr, 1, loopback(2));
    let core = std::sync::Arc::clone(&server.app().core);
    let mut checker = connect(addr, "/ws/viewer").await;
    let mut steerers = Vec::new();
    for k in 0..5u8 {
        steerers.push(connect_from(addr, "/ws/viewer", loopback(10 + k)).await);
    }
    let mut holder = Holder::default();
    let mut committed = Committed::default();
    committed.observe(&core.timeline());

    // Warm up 1.5 s (the catch-up burst of joining is not counted), then
    // 5 s of steering, then 1.5 s of quiet.
    let t0 = tokio::time::Instant::now();
    let steer_from = t0 + Duration::from_millis(1500);
    let steer_until = steer_from + Duration::from_secs(5);
    let end = steer_until + Duration::from_millis(1500);
    let gap = Duration::from_secs_f64(1.0 / (rate * 0.93));
    let mut next_push = steer_from;
    let mut pushes = 0u64;
    let mut observe = tokio::time::interval(Duration::from_millis(10));
    let mut window: Option<(u64, u64, u64, u64)> = None; // head, frames, superseded, batches
    let mut measured = None;
    let mut hot_after_last = None;
    let run = async {
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                break;
            }
            if window.is_none() && now >= steer_from {
                let s = stats(addr).await;
                window = Some((
                    core.position().head,
                    holder.frames,
                    s["frames_superseded"].as_u64().expect("a count"),
                    holder.batches.values().map(|&b| u64::from(b)).sum(),
                ));
            }
            if measured.is_none() && now >= steer_until {
                let s = stats(addr).await;
                measured = Some((
                    core.position().head,
                    holder.frames,
                    s["frames_superseded"].as_u64().expect("a count"),
                    holder.batches.values().map(|&b| u64::from(b)).sum::<u64>(),
                ));
            }
            if hot_after_last.is_none() && now >= steer_until + Duration::from_secs(1) {
                hot_after_last = Some(core.position());
            }
            tokio::select! {
                msg = checker.next() => match msg {
                    Some(Ok(Message::Binary(b))) => holder.take(&b),
                    Some(Ok(Message::Close(f))) => panic!("checker closed: {f:?}"),
                    Some(Ok(_)) => {}
                    other => panic!("checker socket: {other:?}"),
                },
                () = tokio::time::sleep_until(next_push), if next_push < steer_until => {
                    for (k, s) in steerers.iter_mut().enumerate() {
                        let sign = if (pushes / 7 + k as u64).is_multiple_of(2) { 1 } else { -1 };
                        s.send(input(sign * 40, -sign * (10 + k as i16)))
                            .await
                            .expect("input sent");
                    }
                    pushes += 1;
                    next_push += gap;
                }
                _ = observe.tick() => {}
            }
            committed.observe(&core.timeline());
        }
    };
    tokio::time::timeout(HANG, run)
        .await
        .expect("the stream keeps going");

    let (h0, f0, s0, b0) = window.expect("the steering began");
    let (h1, f1, s1, b1) = measured.expect("the steering ended");
    let played = h1 - h0;
    let received = f1 - f0;
    let superseded = s1 - s0;
    let changes = committed.keys.len() - 1;
    println!(
        "steering 5 s: {pushes} pushes each from 5 viewers, {changes} changes, {played} frames \
         played, {received} received ({:.2} a frame played), {} batches, {superseded} frames \
         superseded",
        received as f64 / played as f64,
        b1 - b0
    );
    assert!(played >= 150, "the stream moved on: {played} frames in 5 s");
    assert!(changes >= 20, "the pushes committed changes: {changes}");
    assert!(
        received as f64 <= 1.5 * played as f64,
        "{received} frames received for {played} played (viewer lead {viewer_lead})"
    );
    assert!(
        superseded <= lead_frames + played / 2,
        "{superseded} frames re-rendered for {played} played"
    );
    // Quiet a second after the last push: the full render-ahead is back.
    let pos = hot_after_last.expect("quiet after the steering");
    assert!(!pos.hot, "{pos:?}");
    let pos = core.position();
    assert!(
        pos.frontier >= pos.head + lead_frames / 2,
        "the render-ahead grows back: {pos:?}"
    );
    // Every frame held is the committed timeline's, byte for byte.
    let mut want = [0u8; PACKED_LEN];
    let mut steered = 0;
    for (&n, (_, got)) in &holder.held {
        render_pose_packed(committed.scene(n).pose, &mut want);
        assert_eq!(got, &want, "frame {n} is not the committed timeline's");
        steered += u64::from(committed.scene(n) != Scene::idle(n));
    }
    assert!(steered > 200, "steered frames held: {steered}");
    // Through the real server and the shared decoder: the server's default
    // codec (primed, protocol 6) carried every batch, the steered ones too.
    assert_eq!(holder.codecs, [Codec::DEFAULT]);
    println!(
        "checker: {} bytes for {} frames ({:.1} a frame, {})",
        holder.bytes,
        holder.frames,
        holder.bytes as f64 / holder.frames as f64,
        Codec::DEFAULT.name()
    );
    let s = stats(addr).await;
    assert_eq!(s["strikes"], 0, "{s}");
    assert_eq!(s["batches_rejected"], 0, "{s}");
    assert_eq!(s["inputs_refused"], 0, "{s}");
    // The measured lead stays within the floor and the ceiling.
    let lead = s["input_lead_frames"].as_u64().expect("the lead");
    println!(
        "input lead now {lead} frames, playback stalls {}",
        s["playback_stall_frames"]
    );
    assert!((2..=8).contains(&lead), "{s}");
    drop(checker);
    drop(steerers);
    server.shutdown(Duration::from_secs(2)).await;
}
