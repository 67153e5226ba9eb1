//! Worker tunnels: a worker connected to a follower, scheduled by the
//! leader's core.
//!
//! The follower keeps the worker's socket (a [`Connection`]: keep-alive,
//! size limit, timeouts) and forwards each binary message, unchanged, to
//! the leader's up stream ([`serve`]); the leader runs the worker protocol
//! (the worker endpoint's `serve`, handed over in `NodeDeps`) over a [`Pipe`] whose far end is fed from that
//! stream and answers on the follower's down stream ([`lead`]). So tasks,
//! strikes and bans are decided once, by the one core that schedules, and
//! a worker cannot tell which node it reached.
//!
//! **Verification stays on the worker's node.** The follower remembers
//! the tasks it passed down and checks each answer natively (the same
//! verifier and policy as one node; its own reputation sets `sample`'s
//! rate) before it reaches the timeline: a right answer goes up as it came,
//! a wrong one goes up as `Rejected` (task, frame) and never leaves the
//! node; the leader strikes the worker for it as for a check of its own.
//! The leader does not check tunnelled answers again
//! ([`Transport::CHECKED_UPSTREAM`](crate::conn::transport::Transport::CHECKED_UPSTREAM)).
//! Under `quorum` the leader settles the votes, which need every address's
//! answer in one place.
//!
//! **A new leader.** The follower watches who leads; when the term changes
//! it opens the tunnel again on the new leader's up stream and replays the
//! worker's `Hello`, so the worker keeps its socket and simply gets tasks
//! from the new core (answers to the old leader's tasks are needless
//! there, within the allowance `endpoint::worker` gives late answers). Down
//! messages of an older term are ignored.
//!
//! **A dead follower.** The leader checks the registry every second: the
//! tunnels of a node whose heartbeat lapsed end as vanished, and their
//! ranges go to other workers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use donut_shared::wire::tunnel::{Down, Up};
use donut_shared::wire::{FromWorker, RESULT_HEADER_LEN, Task, TaskResult, ToWorker};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use super::fence::Token;
use super::node::{Leader, Node};
use super::registry;
use super::tunnel_log::{self, TunnelReader};
use crate::cluster::deps::{Checks, NodeDeps};
use crate::conn::connection::{Connection, End, Event};
use crate::conn::fleet::{Admission, ConnKind};
use crate::conn::limits::{CloseReason, NORMAL, UNSUPPORTED};
use crate::conn::pipe::{Outbound, Pipe, PipeEnd};
use crate::trust::reputation::AddrKey;
use crate::trust::verifier::VerifyPolicy;

/// Tasks a follower remembers per tunnelled worker (a worker has a few
/// outstanding at once).
const MAX_TASKS_HELD: usize = 1024;

/// Messages a tunnel holds in each direction before it counts as stalled.
const PIPE_CAPACITY: usize = 256;

/// How often the leader looks for tunnels of dead nodes.
const NODE_CHECK: Duration = Duration::from_secs(1);

/// Runs a worker admitted on this follower to its end, tunnelled to
/// whichever node leads.
pub async fn serve(mut ws: Connection, checks: Checks, node: Arc<Node>, admission: Admission) {
    let conn = admission.id;
    let mut downs = node.open_down(conn);
    let mut leader = node.leader();
    let mut tunnel = Tunnel {
        node: &node,
        checks: &checks,
        conn,
        ip: admission.ip,
        key: admission.key,
        term: None,
        hello: None,
        tasks: HashMap::new(),
    };
    let now = leader.borrow_and_update().clone();
    tunnel.follow(now).await;
    info!(leader = ?tunnel.term, "worker connected (tunnelled)");
    let end = loop {
        tokio::select! {
            event = ws.next() => match event {
                Ok(Event::Binary(msg)) => tunnel.up(msg).await,
                Ok(Event::Text | Event::Rejected { .. }) => {
                    checks.stats.protocol_errors.inc();
                    break End::Closed(CloseReason::new(UNSUPPORTED, "binary messages only"));
                }
                Err(end) => break end,
            },
            Some((term, msg)) = downs.recv() => {
                if tunnel.term.is_some_and(|t| term < t) {
                    continue;
                }
                match Down::decode(&msg) {
                    Ok(Down::Data { msg: data, .. }) => {
                        tunnel.given(data);
                        if let Err(end) = ws.send(msg.slice_ref(data)).await {
                            break end;
                        }
                    }
                    Ok(Down::Close { code, reason, .. }) => {
                        break End::Closed(CloseReason::new(code, reason));
                    }
                    Err(_) => {}
                }
            }
            Ok(()) = leader.changed() => {
                let now = leader.borrow_and_update().clone();
                tunnel.follow(now).await;
            }
        }
    };
    tunnel.close().await;
    node.close_down(conn);
    drop(admission);
    if let Some(reason) = end.close_reason() {
        info!(code = reason.code, reason = %reason.reason, "closing worker");
    }
    ws.finish(&end).await;
    info!(?end, "worker disconnected");
}

/// The follower's side of one tunnel.
struct Tunnel<'a> {
    node: &'a Arc<Node>,
    checks: &'a Checks,
    conn: u64,
    ip: IpAddr,
    key: AddrKey,
    /// The term of the leader it is open on.
    term: Option<u64>,
    /// The worker's `Hello`, replayed to each new leader.
    hello: Option<Bytes>,
    /// The tasks the leader gave the worker, not yet answered: what its
    /// answers are checked against here.
    tasks: HashMap<u32, Task>,
}

impl Tunnel<'_> {
    /// Opens the tunnel on `leader`'s up stream if it is a new one.
    async fn follow(&mut self, leader: Option<Leader>) {
        let Some(Leader { term, .. }) = leader else {
            return;
        };
        if self.term == Some(term) {
            return;
        }
        if let Some(old) = self.term {
            self.close().await;
            debug!(old, term, "leader changed: tunnel reopened");
        }
        self.term = Some(term);
        // The new leader numbers its own tasks: answers are checked only
        // against tasks of the term they were given under.
        self.tasks.clear();
        let (node, conn, ip) = (self.node.id(), self.conn, self.ip);
        self.send(Up::Open { node, conn, ip }.to_vec()).await;
        if let Some(msg) = &self.hello {
            self.send(Up::Data { node, conn, msg }.to_vec()).await;
        }
    }

    /// Tells the current leader the tunnel is closed.
    async fn close(&self) {
        let (node, conn) = (self.node.id(), self.conn);
        self.send(Up::Close { node, conn }.to_vec()).await;
    }

    /// Notes a task the leader sent the worker.
    fn given(&mut self, msg: &[u8]) {
        if let Ok(ToWorker::Task(task)) = ToWorker::decode(msg) {
            if self.tasks.len() >= MAX_TASKS_HELD {
                // A worker this far behind is missing its tasks anyway.
                self.tasks.clear();
            }
            self.tasks.insert(task.task_id, task);
        }
    }

    /// Forwards a message from the worker; an answer is checked natively
    /// first (unless the policy is `quorum`, which the leader settles), and
    /// a wrong one is reported instead of forwarded.
    async fn up(&mut self, msg: Bytes) {
        let (node, conn) = (self.node.id(), self.conn);
        match FromWorker::decode(&msg) {
            Ok(FromWorker::Hello(_)) if self.hello.is_none() => self.hello = Some(msg.clone()),
            Ok(FromWorker::Result(r)) if self.checks.verifier.policy() != VerifyPolicy::Quorum => {
                let Some(task) = self.tasks.remove(&r.task_id) else {
                    // Not a task of this tunnel's leader (a late answer
                    // across a change of leader): nothing to take.
                    return;
                };
                if let Some(frame) = self.check(&task, r, &msg).await {
                    let task_id = r.task_id;
                    self.send(
                        Up::Rejected {
                            node,
                            conn,
                            task_id,
                            frame,
                        }
                        .to_vec(),
                    )
                    .await;
                    return;
                }
            }
            _ => {}
        }
        self.send(
            Up::Data {
                node,
                conn,
                msg: &msg,
            }
            .to_vec(),
        )
        .await;
    }

    /// Checks answer `r` (the whole message `msg`) to `task` natively, at
    /// the positions the policy and this node's trust in the address pick;
    /// the first wrong frame, if any. A header that does not match the
    /// task is left to the leader (a strike there).
    async fn check(&self, task: &Task, r: TaskResult<'_>, msg: &Bytes) -> Option<u64> {
        if r.start != task.start || r.count != task.count {
            return None;
        }
        let frames = msg.slice(RESULT_HEADER_LEN..);
        crate::trust::check::check_answer(
            &self.checks.verifier,
            &self.checks.reputation,
            &self.checks.stats,
            self.key,
            (task.start, task.scene),
            frames,
        )
        .await
    }

    /// Appends one message to the current leader's up stream. Without a
    /// leader, or with Redis away, it is lost: the leader's core then
    /// treats the task as unanswered, as for a lost packet.
    async fn send(&self, msg: Vec<u8>) {
        let Some(term) = self.term else { return };
        let key = self.node.link().keys().up(term);
        let token = Token::term(term);
        if let Err(e) = tunnel_log::append(self.node.link(), &key, &token, &msg).await {
            debug!("tunnel message lost: {e}");
        }
    }
}

/// The leader's tunnels of one term: each open tunnel's inbound channel,
/// by (node, connection).
type Tunnels = Arc<Mutex<HashMap<(String, u64), mpsc::Sender<Result<Event, End>>>>>;

/// As leader under `term`: runs the tunnelled workers of every follower
/// until aborted (the term ended). (Viewers' pushes come through the input
/// log, [`super::inputs`]; an `Up::Input` from a follower of an earlier
/// release is moved there.)
pub async fn lead(node: Arc<Node>, deps: Arc<NodeDeps>, term: u64) {
    let key = node.link().keys().up(term);
    let mut reader = TunnelReader::new(node.link().clone(), key);
    let tunnels: Tunnels = Arc::default();
    let mut check = tokio::time::interval(NODE_CHECK);
    let mut shutdown = deps.shutdown.clone();
    loop {
        tokio::select! {
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                // The node stops: its tunnelled workers end as its own
                // sockets do (their followers reconnect them elsewhere).
                for (_, tx) in lock(&tunnels).drain() {
                    let _ = tx.try_send(Err(End::Shutdown));
                }
                return;
            }
            read = reader.next() => match read {
                Ok((_, Ok(msg))) => on_up(&node, &deps, term, &tunnels, &msg),
                Ok((_, Err(why))) => warn!("unreadable up message skipped: {why}"),
                Err(e) => {
                    debug!("up stream read failed (retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = check.tick() => drop_dead_nodes(&node, &tunnels).await,
        }
    }
}

/// Handles one up message.
fn on_up(node: &Arc<Node>, deps: &Arc<NodeDeps>, term: u64, tunnels: &Tunnels, msg: &Bytes) {
    let up = match Up::decode(msg) {
        Ok(up) => up,
        Err(e) => {
            deps.stats.protocol_errors.inc();
            warn!("undecodable up message skipped: {e}");
            return;
        }
    };
    match up {
        Up::Open {
            node: from,
            conn,
            ip,
        } => open(node, deps, term, tunnels, from, conn, ip),
        Up::Data {
            node: from,
            conn,
            msg: data,
        } => {
            let tx = lock(tunnels).get(&(from.to_owned(), conn)).cloned();
            if let Some(tx) = tx
                && tx.try_send(Ok(Event::Binary(msg.slice_ref(data)))).is_err()
            {
                // Stuck or gone: end it; its ranges go elsewhere.
                lock(tunnels).remove(&(from.to_owned(), conn));
            }
        }
        Up::Close { node: from, conn } => {
            if let Some(tx) = lock(tunnels).remove(&(from.to_owned(), conn)) {
                let _ = tx.try_send(Err(End::PeerClosed(None)));
            }
        }
        Up::Rejected {
            node: from,
            conn,
            task_id,
            frame,
        } => {
            let tx = lock(tunnels).get(&(from.to_owned(), conn)).cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send(Ok(Event::Rejected { task_id, frame }));
            }
        }
        Up::Input {
            node: from,
            viewer,
            a,
            b,
        } => {
            // Sent by a follower of an earlier release: into the input
            // log like every push, so it is folded once whoever leads.
            let from = super::inputs::LoggedPush {
                node: from.to_owned(),
                viewer,
                push: donut_shared::scene::Impulse {
                    a: i32::from(a),
                    b: i32::from(b),
                },
            };
            let (link, term) = (node.link().clone(), term);
            tokio::spawn(async move {
                let once = format!("up:{term}:{}:{:x}", from.node, rand::random::<u64>());
                let deadline = super::inputs::unix_ms().saturating_add(2_000);
                if let Err(e) = super::inputs::append(&link, &once, deadline, &from).await {
                    debug!("a forwarded input was not stored: {e}");
                }
            });
        }
    }
}

/// A follower's worker connected: admits it here (the cluster-wide caps
/// and bans) and runs the worker protocol over a pipe.
fn open(
    node: &Arc<Node>,
    deps: &Arc<NodeDeps>,
    term: u64,
    tunnels: &Tunnels,
    from: &str,
    conn: u64,
    ip: IpAddr,
) {
    let key = (from.to_owned(), conn);
    if lock(tunnels).contains_key(&key) {
        return;
    }
    let down = node.link().keys().down(from);
    let admission = match deps.fleet.admit(ConnKind::Worker, ip) {
        Ok(a) => a,
        Err(reason) => {
            deps.stats.connections_refused.inc();
            let msg = Down::Close {
                conn,
                code: reason.code,
                reason: &reason.reason,
            }
            .to_vec();
            let link = node.link().clone();
            let token = Token::leader(node.id(), term);
            tokio::spawn(async move {
                let _ = tunnel_log::append(&link, &down, &token, &msg).await;
            });
            return;
        }
    };
    let (pipe, far) = Pipe::new(PIPE_CAPACITY, deps.send_limit);
    lock(tunnels).insert(key, far.inbound.clone());
    let span = tracing::info_span!("conn", role = "worker", ip = %ip, id = admission.id, node = from, tunnel = conn);
    node.count_tunnel(true);
    let (serve_worker, counted) = (Arc::clone(&deps.serve_worker), Arc::clone(node));
    let serve = async move {
        serve_worker(pipe, admission).await;
        counted.count_tunnel(false);
    };
    tokio::spawn(serve.instrument(span.clone()));
    let token = Token::leader(node.id(), term);
    tokio::spawn(forward(node.link().clone(), down, token, conn, far).instrument(span));
}

/// Sends what the worker protocol says to the follower's down stream.
async fn forward(link: super::RedisLink, down: String, token: Token, conn: u64, far: PipeEnd) {
    let PipeEnd {
        mut outbound,
        inbound,
    } = far;
    while let Some(out) = outbound.recv().await {
        let msg = match &out {
            Outbound::Message(m) => Down::Data { conn, msg: m }.to_vec(),
            Outbound::Close(end) => {
                let reason = end
                    .close_reason()
                    .unwrap_or_else(|| CloseReason::new(NORMAL, ""));
                Down::Close {
                    conn,
                    code: reason.code,
                    reason: &reason.reason,
                }
                .to_vec()
            }
        };
        if let Err(e) = tunnel_log::append(&link, &down, &token, &msg).await {
            debug!("down message lost: {e}");
        }
        if matches!(out, Outbound::Close(_)) {
            break;
        }
    }
    drop(inbound);
}

/// Ends the tunnels of nodes whose heartbeat lapsed.
async fn drop_dead_nodes(node: &Arc<Node>, tunnels: &Tunnels) {
    let Ok(live) = registry::live_nodes(node.link()).await else {
        return;
    };
    let live: HashSet<String> = live.into_iter().map(|n| n.id).collect();
    let mut t = lock(tunnels);
    let dead: Vec<_> = t
        .keys()
        .filter(|(n, _)| !live.contains(n))
        .cloned()
        .collect();
    for key in dead {
        if let Some(tx) = t.remove(&key) {
            info!(node = %key.0, conn = key.1, "tunnel of a dead node ended");
            let _ = tx.try_send(Err(End::PeerVanished));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the map whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
