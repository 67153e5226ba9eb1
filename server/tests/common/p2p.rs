//! Native viewers of the relay protocol driven in the background (issue
//! 24): honest peers that follow the page's rules (link to every parent
//! they are given, never report) and the cheap sybils the relay must hold
//! against. Shared by `tests/p2p.rs` and `benches/p2p_sybils.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use donut_shared::wire::p2p::{Fetch, Link, Peering, Report, SERVER, Signal, SignalKind};
use donut_shared::wire::{FromViewer, ToViewer};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::connect_from;

/// How a background test viewer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Joins; links to every parent it is given.
    Honest,
    /// Joins; reports every parent it is given, links to none.
    Reporter,
    /// Never joins: a plain viewer, fed by the server.
    Plain,
    /// Joins; links to every parent it is given (says so, at least), and
    /// fetches the newest batch it heard of (by digest or frames) 19 times
    /// a second (under the fetch bucket).
    Fetcher,
    /// Joins; on every parent it is given, sends 4 KiB offers to it up to
    /// the signalling bucket (a burst of 199, then 48 a second), never
    /// linking.
    OfferFlooder,
}

/// What a background viewer saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Parents assigned (not the server), with when.
    pub parents: Vec<(Instant, u64)>,
    /// Reports sent.
    pub reports: u32,
    /// The close frame, if the server closed it.
    pub closed: Option<String>,
    /// The last parent it was told.
    pub parent: u64,
    /// Every parent it was told (the server too), with when.
    pub told: Vec<(Instant, u64)>,
    /// `Frames` messages received, and when the last came.
    pub frames: u32,
    pub last_frames: Option<Instant>,
    /// The longest gap between two `Frames` messages.
    pub longest_gap: Duration,
    /// `Digest` messages received.
    pub digests: u32,
}

/// A test viewer driven in the background until stopped.
pub struct Driven {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Log>,
}

impl Log {
    /// The parent it had been told last at `t` (the server before any).
    pub fn parent_at(&self, t: Instant) -> u64 {
        self.told
            .iter()
            .take_while(|&&(at, _)| at <= t)
            .last()
            .map_or(SERVER, |&(_, p)| p)
    }
}

impl Driven {
    /// Connects from `local` as `role` and answers its assigns in the
    /// background.
    pub async fn start(addr: SocketAddr, local: IpAddr, role: Role) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut ws = connect_from(addr, "/ws/viewer", Some(local)).await;
        if role != Role::Plain {
            ws.send(Message::binary(
                FromViewer::Peering(Peering { on: true }).to_vec(),
            ))
            .await
            .expect("send");
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut log = Log::default();
            let mut newest: Option<(u64, u32)> = None;
            let mut fetch = tokio::time::interval(Duration::from_millis(1000 / 19));
            // Never more than 19 a second, even after a delay.
            fetch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The offer flooder's target and whether its burst is spent.
            let mut target: Option<(u64, bool)> = None;
            let offer = format!("v=0\r\n{}", "a".repeat(4000));
            let mut flood = tokio::time::interval(Duration::from_millis(250));
            flood.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopping.load(Ordering::Relaxed) {
                let next = tokio::select! {
                    _ = flood.tick(), if target.is_some() => {
                        let (peer, burst) = target.unwrap_or_default();
                        let n = if burst { 12 } else { 199 };
                        target = Some((peer, true));
                        let mut failed = false;
                        for _ in 0..n {
                            let msg = FromViewer::Signal(Signal {
                                peer,
                                kind: SignalKind::Offer,
                                text: &offer,
                            });
                            if ws.send(Message::binary(msg.to_vec())).await.is_err() {
                                failed = true;
                                break;
                            }
                        }
                        if failed {
                            log.closed = Some("send failed".into());
                            break;
                        }
                        continue;
                    }
                    m = tokio::time::timeout(Duration::from_millis(200), ws.next()) => m,
                    _ = fetch.tick(), if role == Role::Fetcher && newest.is_some() => {
                        let (start, timeline) = newest.unwrap_or_default();
                        let msg = FromViewer::Fetch(Fetch { start, timeline });
                        if ws.send(Message::binary(msg.to_vec())).await.is_err() {
                            log.closed = Some("send failed".into());
                            break;
                        }
                        continue;
                    }
                };
                let msg = match next {
                    Err(_) => continue,
                    Ok(Some(Ok(m))) => m,
                    Ok(other) => {
                        log.closed = Some(format!("{other:?}"));
                        break;
                    }
                };
                let b = match msg {
                    Message::Binary(b) => b,
                    Message::Close(f) => {
                        log.closed = Some(format!("{f:?}"));
                        break;
                    }
                    _ => continue,
                };
                let a = match ToViewer::decode(&b) {
                    Ok(ToViewer::Assign(a)) => a,
                    Ok(ToViewer::Frames(f)) => {
                        newest = newest.max(Some((f.start, f.timeline)));
                        let now = Instant::now();
                        if let Some(t) = log.last_frames {
                            log.longest_gap = log.longest_gap.max(now - t);
                        }
                        log.last_frames = Some(now);
                        log.frames += 1;
                        continue;
                    }
                    Ok(ToViewer::Digest(d)) => {
                        log.digests += 1;
                        newest = newest.max(Some((d.start, d.timeline)));
                        continue;
                    }
                    _ => continue,
                };
                log.parent = a.parent;
                log.told.push((Instant::now(), a.parent));
                if role == Role::OfferFlooder {
                    target = (a.parent != SERVER).then_some((a.parent, false));
                }
                if a.parent == SERVER {
                    continue;
                }
                log.parents.push((Instant::now(), a.parent));
                let reply = match role {
                    Role::Honest | Role::Fetcher => FromViewer::Link(Link {
                        parent: a.parent,
                        up: true,
                    }),
                    Role::Reporter => {
                        log.reports += 1;
                        FromViewer::Report(Report {
                            peer: a.parent,
                            start: 0,
                            timeline: 0,
                        })
                    }
                    Role::Plain | Role::OfferFlooder => continue,
                };
                if ws.send(Message::binary(reply.to_vec())).await.is_err() {
                    log.closed = Some("send failed".into());
                    break;
                }
            }
            log
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Log {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("driver task")
    }
}
