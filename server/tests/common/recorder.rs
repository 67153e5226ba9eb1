//! A viewer that records everything a node sends it, for the cluster fault
//! tests: every (frame, version)'s bytes (and any second, different picture
//! for one), telemetry heads, refused pushes, and when each batch arrived;
//! it can also push the donut on its own socket.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use donut_shared::PACKED_LEN;
use donut_shared::wire::{Input, Refusal, ToViewer};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::connect;

/// What one viewer was sent.
#[derive(Default)]
pub struct Record {
    /// (frame, version) → the frame's packed bytes.
    pub frames: BTreeMap<(u64, u32), [u8; PACKED_LEN]>,
    /// (frame, version) sent twice with different bytes.
    pub conflicts: Vec<(u64, u32)>,
    /// Telemetry heads, in order.
    pub heads: Vec<u64>,
    /// The newest version sent.
    pub version: u32,
    /// Pushes refused, in order (`InputRefused`).
    pub refusals: Vec<Refusal>,
    /// Each batch as it arrived: when, its first frame, its frame count.
    pub arrivals: Vec<(Instant, u64, u32)>,
    /// When the first batch of each newer version arrived.
    pub versions: Vec<(Instant, u32)>,
}

/// A viewer on one node recording everything it is sent.
pub struct Recorder {
    task: JoinHandle<Record>,
    stop: tokio::sync::watch::Sender<bool>,
    send: mpsc::UnboundedSender<Message>,
}

impl Recorder {
    /// Connects a viewer to the node at `addr` and starts recording.
    pub async fn start(addr: SocketAddr) -> Self {
        let mut ws = connect(addr, "/ws/viewer").await;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (send, mut outbox) = mpsc::unbounded_channel::<Message>();
        let task = tokio::spawn(async move {
            let mut r = Record::default();
            loop {
                tokio::select! {
                    Some(m) = outbox.recv() => ws.send(m).await.expect("a push is sent"),
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Binary(b))) => match ToViewer::decode(&b) {
                            Ok(ToViewer::Frames(f)) => {
                                r.arrivals.push((Instant::now(), f.start, f.count));
                                if f.timeline > r.version {
                                    r.versions.push((Instant::now(), f.timeline));
                                }
                                r.version = r.version.max(f.timeline);
                                f.decode_frames(|n, packed| {
                                    let key = (n, f.timeline);
                                    match r.frames.get(&key) {
                                        Some(old) if old != packed => r.conflicts.push(key),
                                        Some(_) => {}
                                        None => {
                                            r.frames.insert(key, *packed);
                                        }
                                    }
                                })
                                .expect("batches decode");
                            }
                            Ok(ToViewer::Telemetry(t)) => r.heads.push(t.head),
                            Ok(ToViewer::InputRefused(m)) => r.refusals.push(m.reason),
                            Ok(_) => {}
                            Err(e) => panic!("undecodable viewer message: {e}"),
                        },
                        Some(Ok(Message::Close(f))) => panic!("viewer closed: {f:?}"),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => panic!("viewer socket error: {e}"),
                        None => panic!("viewer socket ended"),
                    },
                    _ = stopped.changed() => return r,
                }
            }
        });
        Self { task, stop, send }
    }

    /// Pushes the donut from this viewer (`Input { a, b }`).
    pub fn push(&self, a: i16, b: i16) {
        let msg = Message::binary(Input { a, b }.to_bytes().to_vec());
        self.send.send(msg).expect("the recorder runs");
    }

    /// Stops recording; what was recorded.
    pub async fn finish(self) -> Record {
        let _ = self.stop.send(true);
        self.task.await.expect("the recorder ran")
    }
}

/// Checks what every node's viewer was sent: no two pictures for one
/// (frame, version) anywhere, no head going back, and the same bytes for
/// every (frame, version) two nodes' viewers both hold; returns the frames
/// compared between nodes.
pub fn assert_one_timeline(what: &str, records: &[Record]) -> u64 {
    for (k, r) in records.iter().enumerate() {
        assert!(
            r.conflicts.is_empty(),
            "{what}: node n{}'s viewer was sent two pictures for (frame, version) {:?}",
            k + 1,
            &r.conflicts[..r.conflicts.len().min(5)]
        );
        let back = r.heads.windows(2).find(|w| w[1] < w[0]);
        assert!(
            back.is_none(),
            "{what}: node n{}'s head went back: {back:?}",
            k + 1
        );
    }
    let mut compared = 0;
    for (a, ra) in records.iter().enumerate() {
        for rb in &records[a + 1..] {
            for (key, bytes) in &ra.frames {
                if let Some(other) = rb.frames.get(key) {
                    assert_eq!(
                        other, bytes,
                        "{what}: frame {} of version {} differs between nodes",
                        key.0, key.1
                    );
                    compared += 1;
                }
            }
        }
    }
    compared
}
