//! The state every handler and connection shares: one [`App`] in an `Arc`,
//! handed to handlers by axum's `State` extractor (there is no global
//! mutable state), and the [`Snapshot`] of its figures.
//!
//! It lives apart from the router and the server's start and stop
//! (`app.rs`) so that imports point one way: `app` builds the state
//! and the connections, the connections use the state, and nothing
//! imports `app` back.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::WebSocket;
use tokio::sync::watch;

use crate::cluster::lease::Role;
use crate::config::ServeConfig;
use crate::conn::connection::Connection;
use crate::conn::fleet::Fleet;
use crate::conn::limits::CloseReason;
use crate::edge::client_addr::ClientAddr;
use crate::edge::handshake::Gatekeeper;
use crate::edge::origin::OriginPolicy;
use crate::engine::Engine;
use crate::metrics::{Readings, Snapshot, Stats};
use crate::p2p::hub::Hub;
use crate::stream::core::Core;
use crate::stream::fanout::Fanout;
use crate::stream::telemetry::TelemetryMsg;
use crate::trust::quorum::Referee;
use crate::trust::sanction::Sanctions;
use crate::trust::verifier::Verifier;

/// State shared by every handler and connection.
pub struct App {
    /// Configuration.
    pub cfg: ServeConfig,
    /// Scheduler, ring and the stream's positions.
    pub core: Arc<Core>,
    /// The committed stream out to this node's viewers.
    pub fanout: Arc<Fanout>,
    /// What runs the stream: this process alone, or a cluster.
    pub engine: Engine,
    /// Connections and admission.
    pub fleet: Arc<Fleet>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Result checking.
    pub verifier: Verifier,
    /// Settles quorum disputes and lone votes.
    pub referee: Referee,
    /// The one sanctions rule (strike, ban, evict, share) every judge of
    /// an address uses.
    pub sanctions: Sanctions,
    /// Latest telemetry.
    pub telemetry: watch::Receiver<TelemetryMsg>,
    /// Turns true when the server is stopping.
    pub shutdown: watch::Receiver<bool>,
    /// When the server started.
    pub started: Instant,
    /// Which pages may open the WebSockets.
    pub origins: OriginPolicy,
    /// Whose forwarded client address is believed.
    pub client_addr: ClientAddr,
    /// The peer relay's tree and its members' control channels.
    pub hub: Arc<Hub>,
}

impl App {
    /// An upgraded socket as a [`Connection`] with the configured timings;
    /// `oversize` is the endpoint's close for a message over its limit.
    pub fn connection(&self, socket: WebSocket, oversize: CloseReason) -> Connection {
        Connection::new(
            socket,
            self.cfg.conn_limits(),
            Arc::clone(&self.stats),
            self.shutdown.clone(),
            oversize,
        )
    }

    /// Every figure now, for `/metrics` and `/api/stats`.
    pub fn snapshot(&self) -> Snapshot {
        let pos = self.core.position();
        let buffered = pos.contiguous.saturating_sub(pos.head);
        let cluster = self.engine.figures(&self.fleet);
        let (cluster_role, cluster_term) = match cluster.as_ref().map(|c| c.role) {
            None => (0, 0),
            Some(Role::Follower) => (1, 0),
            Some(Role::Leader { term }) => (2, term),
        };
        let totals = cluster.as_ref().map(|c| c.totals);
        let tree = self.hub.counts();
        let offload = self.hub.offload(std::time::Instant::now());
        let read = Readings {
            p2p_peering: tree.peering as u64,
            p2p_linked: tree.linked as u64,
            p2p_relays: tree.relays as u64,
            p2p_depth: u64::from(tree.depth),
            p2p_offload_permille: u64::from(offload.confirmed),
            p2p_claimed_permille: u64::from(offload.claimed),
            p2p_barred: tree.barred as u64,
            p2p_suspects: tree.suspects as u64,
            cluster_role,
            cluster_term,
            cluster_nodes: totals.map_or(1, |t| t.nodes),
            cluster_workers: totals.map_or(self.fleet.workers(), |t| t.workers),
            cluster_viewers: totals.map_or(self.fleet.viewers(), |t| t.viewers),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            workers: cluster
                .as_ref()
                .map_or(self.fleet.workers(), |c| c.local_workers),
            viewers: self.fleet.viewers(),
            fps: if self.cfg.paced() { self.cfg.fps } else { 0 },
            // A cluster follower's core idles: the leader's head is the one
            // its batches carry.
            head: pos.head.max(self.fanout.head()),
            contiguous: pos.contiguous,
            broadcast_cursor: pos.cursor,
            buffered_frames: buffered,
            buffered_secs: if self.cfg.paced() {
                buffered as f64 / f64::from(self.cfg.fps)
            } else {
                0.0
            },
            input_lead_frames: pos.input_lead,
            change_broadcast_ms: pos
                .change_to_broadcast
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            timeline_hot: u64::from(pos.hot),
            fleet_fps: u64::from(self.telemetry.borrow().telemetry.fleet_fps),
            ring_frames: pos.ring_frames,
            ring_bytes: pos.ring_bytes,
            outstanding_ranges: pos.outstanding,
            tasks_dispatched: pos.sched.dispatched,
            tasks_hedged: pos.sched.hedged,
            tasks_reassigned: pos.sched.reassigned,
            tasks_expired: pos.sched.expired,
            tasks_presumed_lost: pos.sched.presumed_lost,
            verify_policy: self.verifier.policy().name(),
        };
        Snapshot::new(read, &self.stats)
    }
}

/// What the handshake checks before an upgrade (see
/// [`crate::edge::handshake`]).
impl Gatekeeper for App {
    fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    fn client_addr(&self) -> &ClientAddr {
        &self.client_addr
    }
}
