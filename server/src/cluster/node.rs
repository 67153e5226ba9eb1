//! One node of a cluster: its link to Redis, its role, and the tasks that
//! move the timeline between it and the others.
//!
//! Every node runs the same tasks; the [`lease`] decides what
//! they do:
//!
//! - **leader**: the node's own [`Core`](crate::stream::core::Core) runs the
//!   stream for the whole cluster. When a node becomes leader it first
//!   reads the timeline stream to its end, then resumes the core where the
//!   committed timeline ends (frame, version and scene: see
//!   [`TimelineCursor`]), so viewers everywhere see no gap and no repeat. Its
//!   broadcaster hands every batch to the appender, which adds it to
//!   `{p}timeline` (encoded once for the whole cluster, through the
//!   [`fence`](super::fence) script: Redis refuses it if this node's term
//!   no longer holds the lease) and only then publishes it to the node's
//!   own viewers: nothing is shown that the next leader cannot read. Workers of other nodes reach its core through
//!   [`tunnel::lead`].
//! - **follower**: the core idles (no workers: its own workers are
//!   tunnelled to the leader); the timeline reader feeds each new entry of
//!   `{p}timeline` to the node's fan-out, through the [`TimelineCursor`]'s rules.
//!
//! Whatever the role: a heartbeat with the node's figures, a poll of who
//! leads (so tunnels follow a new leader), the reader of the node's own
//! down stream, and the cluster's totals for `/metrics`. Every viewer's
//! push goes to the cluster's input log ([`inputs`]), which the leader
//! folds from; the node follows its stored pushes until the timeline
//! folds them, and tells a viewer whose push was refused or lost
//! ([`Node::input`]).
//!
//! A node keeps serving what it has while Redis is away: the leader's core
//! keeps rendering (appends wait and retry, in order) until its lease would
//! lapse, and its viewers, like followers', play out their buffers; every
//! reader resumes after its last ID when Redis is back. A follower's
//! telemetry carries the cluster's head as the stream last told it
//! ([`Node::cluster_head`]), so pages on every node play in step.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use donut_shared::scene::{Impulse, Scene};
use donut_shared::wire::tunnel::Down;
use donut_shared::wire::{InputRefused, Refusal};
use redis::streams::StreamRangeReply;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::fence::{Appended, Token};
use super::follow::{EntryVerdict, ResumePoint, TimelineCursor};
use super::inputs::Notices;
use super::lease::{self, Lease, Role};
use super::registry::{self, ClusterTotals, Heartbeat, NodeFigures};
use super::stream_log::{EntryId, ReadEvent, TimelineEntry, TimelineLog};
use super::tunnel_log::{self, TunnelReader};
use super::{ClusterConfig, RedisLink, bans, inputs, tunnel};
use crate::cluster::deps::NodeDeps;
use crate::conn::fleet::Fleet;
use crate::conn::limits::{CloseReason, POLICY};
use crate::metrics::Stats;
use crate::stream::fanout::Batch;
use crate::stream::telemetry::ClusterView;
use crate::stream::timeline::acks::{LogPosition, PushTicket};
use crate::trust::reputation::AddrKey;

/// Who leads the cluster, as last read from the lease key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// Its node id.
    pub node: String,
    /// Its term.
    pub term: u64,
}

/// How often a node reads who leads.
const LEADER_POLL: Duration = Duration::from_millis(200);

/// How long admission waits for Redis to say whether an address is banned
/// before letting the worker in (this node's own bans still apply).
const BAN_CHECK: Duration = Duration::from_millis(300);

/// How long a node keeps trying to store a viewer's push in the cluster's
/// input log (Redis away or frozen) before it refuses it.
pub const INPUT_CARRY: Duration = Duration::from_secs(3);

/// How much longer a node waits for Redis's answer about a push one of
/// whose appends timed out (it may have been stored) before it refuses it
/// all the same.
pub const INPUT_UNSURE: Duration = Duration::from_secs(60);

/// This node's pushes it follows until folded (more are stored but not
/// followed: a loss of those would go untold).
const UNFOLDED_HELD: usize = 4096;
/// Pushes a node carries to the input log at once (each a task retrying
/// every [`RETRY`] while Redis is away): past it a push is refused at once
/// as unreachable, so a Redis outage under a crowd of steerers costs a
/// bounded number of tasks and retries, not one per push.
const CARRIES_HELD: usize = 1024;

/// Versions whose change the appender remembers (a batch is appended
/// milliseconds after its version's commit; changes are 100 ms apart).
const CHANGES_KEPT: usize = 16;

/// How often a node looks whether its stored pushes were folded or lost.
const SWEEP: Duration = Duration::from_secs(1);

/// Pause before retrying a Redis call that failed.
const RETRY: Duration = Duration::from_millis(100);

/// See the module docs.
pub struct Node {
    cfg: ClusterConfig,
    link: RedisLink,
    lease: Lease,
    role: watch::Receiver<Role>,
    leader: watch::Sender<Option<Leader>>,
    log: TimelineLog,
    cursor: Mutex<TimelineCursor>,
    downs: Mutex<HashMap<u64, mpsc::Sender<(u64, Bytes)>>>,
    totals: Mutex<ClusterTotals>,
    /// Workers of other nodes this node's core runs (as leader).
    tunnelled: AtomicU64,
    /// Set when the node stops: it appends nothing more.
    stopping: AtomicBool,
    /// The cluster's playback head as the last entry taken said it, when
    /// (see [`Node::cluster_head`]).
    relayed_head: Mutex<Option<RelayedHead>>,
    /// Which version folded which pushes of the input log (as leader).
    folded: Mutex<inputs::Folded>,
    /// Random per process: pushes' once-only keys never collide with a
    /// restarted node's of the same id.
    nonce: u64,
    /// Pushes taken from this node's viewers so far.
    pushes: AtomicU64,
    /// Pushes being carried now (at most [`CARRIES_HELD`]).
    carrying: Arc<tokio::sync::Semaphore>,
    /// This node's pushes stored in the input log and not yet folded
    /// into the timeline as far as this node knows, with their viewer's
    /// notices (see [`Node::sweep_inputs`]).
    unfolded: Mutex<BTreeMap<EntryId, (Notices, PushTicket)>>,
    /// As leader: the change (frame, scene there) of each recent version
    /// of the core, by version, carried by the entries appended; `None`
    /// for the version a new leader resumed at when no entry told it its
    /// change (the core's last change is then the resume frame, not it).
    changes: Mutex<BTreeMap<u32, Option<(u64, Scene)>>>,
}

/// The leader's playback head as an entry of the timeline carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedHead {
    /// The head (a frame number) when the leader published the batch.
    pub head: u64,
    /// One past the batch's last frame: the head never passes it.
    pub end: u64,
    /// When this node took the entry.
    pub at: Instant,
}

impl RelayedHead {
    /// Where the leader's head is at `now` when it plays `fps` frames a
    /// second (0: unpaced, the head is the one carried): the carried head
    /// moved on by the time since, never past the end of what was
    /// committed (the leader's head waits there too when frames run out).
    pub fn at(&self, now: Instant, fps: u16) -> u64 {
        if fps == 0 {
            return self.head;
        }
        let elapsed = now.saturating_duration_since(self.at);
        // The carried head is a whole frame: the leader was on average
        // half a frame past it.
        let moved = (elapsed.as_secs_f64() * f64::from(fps) + 0.5) as u64;
        self.head.saturating_add(moved).min(self.end.max(self.head))
    }
}

impl Node {
    /// Connects to the cluster's Redis and starts competing for the lease.
    /// The timeline stream keeps about `ring_batches` entries.
    ///
    /// # Errors
    /// Redis unreachable at start.
    pub async fn connect(cfg: ClusterConfig, ring_batches: usize) -> anyhow::Result<Arc<Self>> {
        let link = RedisLink::connect(&cfg.url, &cfg.prefix).await?;
        tunnel_log::clear(&link, &link.keys().down(&cfg.node_id)).await?;
        let lease = Lease::start(link.clone(), cfg.node_id.clone(), cfg.lease);
        let role = lease.role();
        info!(node = %cfg.node_id, redis = %cfg.url, "joined the cluster");
        Ok(Arc::new(Self {
            log: TimelineLog::new(link.clone(), ring_batches.max(16)),
            link,
            lease,
            role,
            leader: watch::channel(None).0,
            cursor: Mutex::new(TimelineCursor::default()),
            downs: Mutex::new(HashMap::new()),
            totals: Mutex::new(ClusterTotals::default()),
            tunnelled: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            relayed_head: Mutex::new(None),
            folded: Mutex::new(inputs::Folded::default()),
            nonce: rand::random(),
            pushes: AtomicU64::new(0),
            carrying: Arc::new(tokio::sync::Semaphore::new(CARRIES_HELD)),
            unfolded: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(BTreeMap::new()),
            cfg,
        }))
    }

    /// Starts the node's tasks: roles, appending `commits` (every batch
    /// the broadcaster publishes) while leading, the leader poll, the down
    /// stream, the heartbeat and the totals. They stop with `shutdown`.
    pub fn start(
        self: &Arc<Self>,
        deps: NodeDeps,
        commits: mpsc::UnboundedReceiver<Batch>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let deps = &Arc::new(deps);
        let beat = Heartbeat::start(self.link.clone(), self.cfg.node_id.clone(), {
            let (deps, node) = (Arc::clone(deps), Arc::downgrade(self));
            move || figures(&deps, node.upgrade().as_deref())
        });
        let tasks = vec![
            tokio::spawn(Arc::clone(self).roles(Arc::clone(deps), shutdown.clone())),
            tokio::spawn(Arc::clone(self).append(Arc::clone(deps), commits)),
            tokio::spawn(Arc::clone(self).poll_leader()),
            tokio::spawn(Arc::clone(self).read_downs()),
            tokio::spawn(Arc::clone(self).poll_totals(beat)),
            tokio::spawn(Arc::clone(self).sweep_inputs(Arc::clone(deps))),
        ];
        let node = Arc::clone(self);
        let mut stop = shutdown;
        let handles: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            // A quick hand-over: append nothing more, then free the lease so
            // a follower takes it at its next poll, not after the lease.
            node.stopping.store(true, Ordering::Relaxed);
            let _ = node.lease.resign().await;
            let _ = registry::leave(&node.link, &node.cfg.node_id).await;
            for h in handles {
                h.abort();
            }
        });
        tasks
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.cfg.node_id
    }

    /// The link to the cluster's Redis.
    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    /// Worker connections with a socket on this node: the fleet's, less
    /// the other nodes' workers tunnelled to this one while it leads.
    pub fn local_workers(&self, fleet: &Fleet) -> u64 {
        fleet
            .workers()
            .saturating_sub(self.tunnelled.load(Ordering::Relaxed))
    }

    /// Counts a tunnelled worker in (`true`) or out.
    pub(crate) fn count_tunnel(&self, open: bool) {
        if open {
            self.tunnelled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.tunnelled.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader { .. })
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// The cluster's playback head as the timeline stream says it, moved
    /// on to `now` at `fps` frames a second: what a follower's telemetry
    /// tells its pages, so they play in step with the leader's (its idle
    /// core's head is not the show's), and the end of what the stream
    /// committed (frame numbers). `None` before any entry.
    pub fn cluster_head(&self, now: Instant, fps: u16) -> Option<(u64, u64)> {
        lock(&self.relayed_head).map(|h| (h.at(now, fps), h.end.max(h.head)))
    }

    /// The current version's change (frame, version, scene there) and the
    /// input-log position the committed timeline folded, as the entries
    /// this node took tell it: what its steering pages are told
    /// (`Keyframe`, [`crate::stream::timeline::acks`]). `None` until an
    /// entry of the current version carried its change.
    pub fn keyframe(&self) -> Option<((u64, u32, Scene), LogPosition)> {
        lock(&self.cursor)
            .keyframe()
            .map(|(change, at)| (change, (at.ms, at.seq)))
    }

    /// Records the head carried by `entry`, taken now.
    fn note_head(&self, entry: &TimelineEntry) {
        *lock(&self.relayed_head) = Some(RelayedHead {
            head: entry.head,
            end: entry.start.saturating_add(u64::from(entry.count)),
            at: Instant::now(),
        });
    }

    /// Who leads, as last read (updated every 200 ms).
    pub fn leader(&self) -> watch::Receiver<Option<Leader>> {
        self.leader.subscribe()
    }

    /// The cluster's totals, as last read.
    pub fn totals(&self) -> ClusterTotals {
        *lock(&self.totals)
    }

    /// A viewer of this node (`viewer`, its connection id) pushed the
    /// donut: the push goes to the cluster's input log
    /// ([`inputs`]), whoever leads (or none), and the
    /// leader folds it from there, so it survives a change of leader.
    ///
    /// While Redis does not take it (away, frozen) it is retried for up to
    /// [`INPUT_CARRY`]; then it is refused and the viewer is told why on
    /// `notices` (an encoded `InputRefused`). Counted as
    /// `cluster_inputs_forwarded` (stored) or `cluster_inputs_lost` and
    /// `cluster_inputs_refused_unreachable` (refused). While
    /// 1,024 pushes (`CARRIES_HELD`) are being carried already, a push is refused
    /// at once. What became of it (its position in the log, or refused)
    /// is reported on `ticket`, for the viewer's `Keyframe`s.
    pub fn input(
        self: &Arc<Self>,
        stats: &Arc<Stats>,
        viewer: u64,
        push: Impulse,
        notices: &Notices,
        ticket: PushTicket,
    ) {
        let node = Arc::clone(self);
        let stats = Arc::clone(stats);
        let notices = notices.clone();
        let Ok(carry_slot) = Arc::clone(&self.carrying).try_acquire_owned() else {
            warn!("an input was refused: {CARRIES_HELD} pushes are being carried already");
            stats.cluster_inputs_lost.inc();
            stats.cluster_inputs_refused_unreachable.inc();
            ticket.refused();
            refuse(&notices, Refusal::Unreachable);
            return;
        };
        let seq = self.pushes.fetch_add(1, Ordering::Relaxed);
        let once = format!("{}:{:x}:{seq}", self.id(), self.nonce);
        let from = inputs::LoggedPush {
            node: self.id().to_owned(),
            viewer,
            push,
        };
        tokio::spawn(async move {
            let _slot = carry_slot;
            let give_up = tokio::time::Instant::now() + INPUT_CARRY;
            // Redis refuses the append past this (its clock), so a command
            // stuck behind a frozen Redis never stores a refused push.
            let carry = INPUT_CARRY.saturating_sub(inputs::CLOCK_MARGIN);
            let deadline = inputs::unix_ms().saturating_add(carry.as_millis() as u64);
            // Whether an attempt may have reached Redis (timed out): then
            // only Redis's answer to a retry says whether it was stored.
            let mut unsure = false;
            let last_resort = give_up + INPUT_UNSURE;
            loop {
                match inputs::append(&node.link, &once, deadline, &from).await {
                    Ok(inputs::Stored::Id(id)) => {
                        stats.cluster_inputs_forwarded.inc();
                        ticket.stored((id.ms, id.seq));
                        let mut unfolded = lock(&node.unfolded);
                        if unfolded.len() < UNFOLDED_HELD {
                            unfolded.insert(id, (notices, ticket));
                        }
                        return;
                    }
                    Ok(inputs::Stored::TooLate) => break,
                    Err(e) => {
                        unsure |= e.is_timeout();
                        debug!(unsure, "an input was not stored (retrying): {e}");
                    }
                }
                let now = tokio::time::Instant::now();
                if (now >= give_up && !unsure) || now >= last_resort {
                    break;
                }
                tokio::time::sleep(RETRY).await;
            }
            warn!("an input was refused: Redis did not take it in {INPUT_CARRY:?}");
            stats.cluster_inputs_lost.inc();
            stats.cluster_inputs_refused_unreachable.inc();
            ticket.refused();
            refuse(&notices, Refusal::Unreachable);
        });
    }

    /// Every second: forgets this node's pushes the timeline has folded
    /// (its entries' input position reached them), and refuses, oldest
    /// first, those the input log no longer holds unfolded (Redis lost its
    /// data, a failover lost the last writes, or the log was trimmed past
    /// them while no node led): their viewers are told
    /// (`InputRefused { Lost }`, `cluster_inputs_refused_lost`).
    async fn sweep_inputs(self: Arc<Self>, deps: Arc<NodeDeps>) {
        loop {
            tokio::time::sleep(SWEEP).await;
            let folded = lock(&self.cursor)
                .resume_point()
                .map_or(EntryId::ZERO, |r| r.inputs);
            let oldest = {
                let mut unfolded = lock(&self.unfolded);
                let kept = unfolded.split_off(&EntryId {
                    ms: folded.ms,
                    seq: folded.seq.saturating_add(1),
                });
                *unfolded = kept;
                unfolded.retain(|_, (n, _)| !n.is_closed());
                unfolded.keys().copied().collect::<Vec<_>>()
            };
            // A push just stored is not looked for yet: the leader folds
            // it within milliseconds.
            let young = inputs::unix_ms().saturating_sub(SWEEP.as_millis() as u64);
            for id in oldest.into_iter().filter(|id| id.ms < young) {
                match inputs::holds(&self.link, id).await {
                    Ok(true) | Err(_) => break,
                    Ok(false) => {}
                }
                // Folded meanwhile (a timeline entry read since)?
                let folded = lock(&self.cursor).resume_point().map(|r| r.inputs);
                if folded.is_some_and(|f| f >= id) {
                    continue;
                }
                if let Some((notices, ticket)) = lock(&self.unfolded).remove(&id) {
                    warn!(%id, "an input was lost from the input log before any leader folded it");
                    deps.stats.cluster_inputs_lost.inc();
                    deps.stats.cluster_inputs_refused_lost.inc();
                    ticket.refused();
                    refuse(&notices, Refusal::Lost);
                }
            }
        }
    }

    /// Works on the record of which version folded which pushes.
    pub(crate) fn folded<R>(&self, f: impl FnOnce(&mut inputs::Folded) -> R) -> R {
        f(&mut lock(&self.folded))
    }

    /// `key` was banned here for `length`: every node refuses it too.
    pub fn ban(&self, key: AddrKey, length: Duration) {
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(e) = bans::ban(&link, &key, length).await {
                warn!(addr = %key, "the ban was not shared with the cluster: {e}");
            }
        });
    }

    /// The refusal for a worker from `key` if the cluster has banned it.
    /// Redis slow or away: no refusal (this node's own bans still hold).
    pub async fn refusal(&self, key: AddrKey) -> Option<CloseReason> {
        let left = tokio::time::timeout(BAN_CHECK, bans::banned(&self.link, &key))
            .await
            .ok()?
            .ok()??;
        Some(CloseReason::new(
            POLICY,
            format!(
                "address {key} banned for cheating (cluster), retry in {} s",
                left.as_secs() + 1
            ),
        ))
    }

    /// Registers tunnelled worker `conn` of this node: down messages for it
    /// (the leader's term, the message) arrive on the receiver.
    pub(crate) fn open_down(&self, conn: u64) -> mpsc::Receiver<(u64, Bytes)> {
        let (tx, rx) = mpsc::channel(256);
        lock(&self.downs).insert(conn, tx);
        rx
    }

    /// Forgets tunnelled worker `conn`.
    pub(crate) fn close_down(&self, conn: u64) {
        lock(&self.downs).remove(&conn);
    }

    /// Runs the role the lease gives, switching as it changes.
    async fn roles(self: Arc<Self>, deps: Arc<NodeDeps>, mut shutdown: watch::Receiver<bool>) {
        let mut role = self.role.clone();
        let mut current: Option<JoinHandle<()>> = None;
        loop {
            let now = *role.borrow_and_update();
            if let Some(task) = current.take() {
                task.abort();
            }
            current = Some(match now {
                Role::Leader { term } => {
                    self.catch_up(&deps).await;
                    let at = self.resume_point(&deps);
                    info!(
                        term,
                        frame = at.frame,
                        version = at.version,
                        "leading the cluster"
                    );
                    deps.core
                        .resume(at.frame, at.version, at.scene, Instant::now());
                    // The resumed version's change is what the entries
                    // told, if they did: never the resume frame.
                    let told = lock(&self.cursor)
                        .keyframe()
                        .map(|((frame, _, scene), _)| (frame, scene));
                    lock(&self.changes).insert(at.version, told);
                    let (node, deps) = (Arc::clone(&self), Arc::clone(&deps));
                    tokio::spawn(async move {
                        tokio::join!(
                            tunnel::lead(Arc::clone(&node), Arc::clone(&deps), term),
                            inputs::lead(node, deps, at),
                        );
                    })
                }
                Role::Follower => {
                    // Stop rendering and broadcasting: the leader's stream
                    // takes over from the last committed batch.
                    let at = self.resume_point(&deps);
                    deps.core
                        .resume(at.frame, at.version, at.scene, Instant::now());
                    info!("following the cluster's leader");
                    tokio::spawn(Arc::clone(&self).follow(Arc::clone(&deps)))
                }
            });
            tokio::select! {
                changed = role.changed() => if changed.is_err() { break },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        if let Some(task) = current {
            task.abort();
        }
    }

    /// Where the committed timeline ends, or the configured start.
    fn resume_point(&self, deps: &NodeDeps) -> ResumePoint {
        lock(&self.cursor).resume_point().unwrap_or(ResumePoint {
            frame: deps.start_frame,
            version: 0,
            scene: Scene::idle(deps.start_frame),
            inputs: EntryId::ZERO,
        })
    }

    /// Reads the timeline stream to its end (as a new leader, before
    /// resuming), passing what this node missed to its viewers. Redis away:
    /// resumes from what the node has.
    async fn catch_up(&self, deps: &NodeDeps) {
        loop {
            let after = lock(&self.cursor).last_id();
            let reply: redis::RedisResult<StreamRangeReply> = redis::cmd("XRANGE")
                .arg(self.link.keys().timeline())
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(256)
                .query_async(&mut self.link.conn())
                .await;
            let Ok(reply) = reply else { return };
            if reply.ids.is_empty() {
                return;
            }
            for raw in reply.ids {
                let Ok(id) = raw.id.parse::<EntryId>() else {
                    return;
                };
                match TimelineEntry::from_fields(&raw.map) {
                    Ok(entry) => self.relay_entry(deps, id, entry),
                    Err(e) => warn!(%id, "garbled timeline entry skipped: {e:?}"),
                }
            }
        }
    }

    /// As a follower: passes each new timeline entry to the fan-out.
    async fn follow(self: Arc<Self>, deps: Arc<NodeDeps>) {
        let mut reader = self.log.reader(lock(&self.cursor).last_id());
        loop {
            match reader.next().await {
                Ok(ReadEvent::Entry { id, entry }) => self.relay_entry(&deps, id, entry),
                Ok(ReadEvent::Garbled { id, error }) => {
                    warn!(%id, "garbled timeline entry skipped: {error:?}");
                }
                Ok(ReadEvent::Reset { last_seen }) => {
                    warn!(%last_seen, "the timeline stream lost entries (Redis lost its data?): reading it again");
                    lock(&self.cursor).reset();
                }
                Err(e) => {
                    debug!("timeline read failed (retrying): {e}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// One entry read from the stream: to the fan-out, if the cursor takes it.
    fn relay_entry(&self, deps: &NodeDeps, id: EntryId, entry: TimelineEntry) {
        match lock(&self.cursor).offer(id, &entry) {
            EntryVerdict::Drop => return,
            EntryVerdict::TakeAfterGap { missing } => {
                warn!(
                    missing,
                    start = entry.start,
                    "frames lost from the timeline stream"
                );
                deps.stats.cluster_frames_lost.add(missing);
            }
            EntryVerdict::Take => {}
        }
        self.note_head(&entry);
        let Ok(scene) = Scene::from_bytes(&entry.scene) else {
            return;
        };
        deps.fanout.publish(Batch {
            start: entry.start,
            count: entry.count,
            timeline: entry.version,
            head: entry.head,
            scene,
            msg: entry.msg,
            digest: Default::default(),
        });
    }

    /// Appends each batch the broadcaster published, in order, while this
    /// node leads; retries while Redis is away (and the lease holds).
    async fn append(
        self: Arc<Self>,
        deps: Arc<NodeDeps>,
        mut commits: mpsc::UnboundedReceiver<Batch>,
    ) {
        while let Some(batch) = commits.recv().await {
            let Role::Leader { term } = self.role() else {
                continue;
            };
            if self.stopping.load(Ordering::Relaxed) {
                continue;
            }
            let change = self.change_of(&deps, batch.timeline);
            let entry = TimelineEntry {
                term,
                start: batch.start,
                count: batch.count,
                version: batch.timeline,
                head: batch.head,
                scene: batch.scene.to_bytes(),
                msg: batch.msg.clone(),
                inputs: self.folded(|f| f.at(batch.timeline)),
                change: change.map(|(frame, scene)| (frame, scene.to_bytes())),
            };
            let token = Token::leader(self.id(), term);
            loop {
                match self.log.append_fenced(&token, &entry).await {
                    Ok(Appended::Id(id)) => {
                        // Durable in the shared log: now, and only now,
                        // this node's viewers may see it.
                        if lock(&self.cursor).offer(id, &entry) != EntryVerdict::Drop {
                            self.note_head(&entry);
                            deps.fanout.publish(batch.clone());
                        }
                        break;
                    }
                    Ok(Appended::Fenced { holder }) => {
                        // Redis says our term is over: nothing more of it
                        // can be written; the lease driver learns it at its
                        // next renewal.
                        warn!(
                            term,
                            ?holder,
                            start = entry.start,
                            "append refused: the term no longer holds the lease"
                        );
                        deps.stats.cluster_appends_fenced.inc();
                        break;
                    }
                    Err(e) if self.is_leader() => {
                        debug!(
                            start = entry.start,
                            "timeline append failed (retrying): {e}"
                        );
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// The change (frame, scene there) of `version` as this leader's core
    /// told it: its current change is noted at every append, so every
    /// version with a batch appended before the next change is known.
    fn change_of(&self, deps: &NodeDeps, version: u32) -> Option<(u64, Scene)> {
        let (frame, current, scene) = deps.core.keyframe();
        let mut changes = lock(&self.changes);
        // The version a new leader resumed at is already there (what the
        // entries told of its change, or nothing): the core's last change
        // is then the resume frame, not the version's change.
        changes.entry(current).or_insert(Some((frame, scene)));
        while changes.len() > CHANGES_KEPT {
            changes.pop_first();
        }
        changes.get(&version).copied().flatten()
    }

    /// Reads who leads, every [`LEADER_POLL`].
    async fn poll_leader(self: Arc<Self>) {
        loop {
            if let Ok(holder) = lease::holder(&self.link).await {
                let leader = holder.map(|(node, term)| Leader { node, term });
                if let Some(l) = &leader {
                    self.lease.observe_term(l.term);
                }
                self.leader.send_if_modified(|current| {
                    let changed = *current != leader;
                    *current = leader;
                    changed
                });
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// Hands each message of this node's down stream to its tunnel.
    async fn read_downs(self: Arc<Self>) {
        let key = self.link.keys().down(self.id());
        let mut reader = TunnelReader::new(self.link.clone(), key);
        loop {
            let (term, msg) = match reader.next().await {
                Ok((term, Ok(msg))) => (term, msg),
                Ok((_, Err(why))) => {
                    warn!("unreadable down message skipped: {why}");
                    continue;
                }
                Err(e) => {
                    debug!("down stream read failed (retrying): {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let conn = match Down::decode(&msg) {
                Ok(Down::Data { conn, .. } | Down::Close { conn, .. }) => conn,
                Err(e) => {
                    warn!("undecodable down message skipped: {e}");
                    continue;
                }
            };
            let tx = lock(&self.downs).get(&conn).cloned();
            if let Some(tx) = tx {
                // Full: the worker's socket is stuck; its own send limit
                // ends it.
                let _ = tx.try_send((term, msg));
            }
        }
    }

    /// Reads the cluster's totals every heartbeat period; holds `beat`
    /// (the heartbeat stops with this task).
    async fn poll_totals(self: Arc<Self>, beat: Heartbeat) {
        let _beat = beat;
        loop {
            if let Ok(t) = registry::cluster_totals(&self.link).await {
                *lock(&self.totals) = t;
            }
            tokio::time::sleep(registry::BEAT_PERIOD).await;
        }
    }
}

/// What telemetry reads of the cluster (the stream's side of the seam).
impl ClusterView for Node {
    fn is_leader(&self) -> bool {
        Node::is_leader(self)
    }

    fn cluster_head(&self, now: Instant, fps: u16) -> Option<(u64, u64)> {
        Node::cluster_head(self, now, fps)
    }

    fn totals(&self) -> (u64, u64, f64) {
        let t = Node::totals(self);
        (t.workers, t.viewers, t.fleet_fps)
    }
}

/// Tells a viewer (its `notices`) one of its pushes was refused, and why.
fn refuse(notices: &Notices, reason: Refusal) {
    let msg = InputRefused { reason }.to_bytes();
    // Full: the viewer is not reading; the refusal is counted anyway.
    let _ = notices.try_send(Bytes::copy_from_slice(&msg));
}

/// This node's figures for its heartbeat.
fn figures(deps: &NodeDeps, node: Option<&Node>) -> NodeFigures {
    let role = node.map_or(Role::Follower, Node::role);
    NodeFigures {
        role,
        workers: node.map_or(0, |n| n.local_workers(&deps.fleet)),
        viewers: deps.fleet.viewers(),
        // The leader's core accepts every frame of the cluster; a follower
        // shows the leader's rate and reports none of its own.
        fleet_fps: match role {
            Role::Leader { .. } => f64::from(deps.telemetry.borrow().telemetry.fleet_fps),
            Role::Follower => 0.0,
        },
        frames: deps.stats.frames_accepted.get(),
    }
}

/// The core's key for viewer `viewer` of node `node`: the node id's
/// FNV-1a hash in the high half, the viewer's id in the low half (pushes
/// are summed per key and folded in key order, so it must be stable).
pub fn viewer_key(node: &str, viewer: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash & 0xffff_ffff_0000_0000) | (viewer & 0xffff_ffff)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its value whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_head_moves_with_time_up_to_the_committed_end() {
        let t0 = Instant::now();
        let h = RelayedHead {
            head: 1_000,
            end: 1_180,
            at: t0,
        };
        assert_eq!(h.at(t0, 60), 1_000);
        assert_eq!(h.at(t0 + Duration::from_millis(500), 60), 1_030);
        // Frames ran out: the leader's head waits at the end, so does this.
        assert_eq!(h.at(t0 + Duration::from_secs(10), 60), 1_180);
        // Unpaced: the head carried.
        assert_eq!(h.at(t0 + Duration::from_secs(1), 0), 1_000);
        // A clock read before the entry was taken: no time has passed.
        assert_eq!(
            h.at(t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0), 60),
            1_000
        );
    }
}
