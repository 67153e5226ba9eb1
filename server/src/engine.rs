//! The engine: what the connections hand the stream's work to, in one
//! process or across a cluster, without knowing which.
//!
//! Like Centrifugo's memory and Redis engines (or Socket.IO's in-memory and
//! Redis Streams adapters), the single node and the cluster differ here and
//! nowhere else in the connection code:
//!
//! | the connections ask | [`Engine::Memory`] (one node) | [`Engine::Cluster`] (`--cluster`) |
//! |---|---|---|
//! | serve a worker ([`Engine::route_worker`]) | the node's own [`Core`] | the leader's: here if this node leads, else tunnelled to it ([`cluster::tunnel`]) |
//! | a viewer's push | the node's timeline | the leader's timeline (sent up if this node follows) |
//! | a ban ([`Engine::ban_share`]) | the node's reputation | also every node's, through Redis |
//! | admit a worker | the node's bans | also the cluster's |
//! | figures ([`Engine::figures`], [`Engine::cluster_view`]) | the node's own | the cluster's totals, role and term |
//!
//! Nothing outside this file and `cluster/` names the cluster's node type:
//! the cluster is handed the parts it drives ([`NodeDeps`], built by
//! `app.rs`, with the worker endpoint as a callback), never the state.
//!
//! Viewers need no engine: every node's viewers subscribe to its
//! [`Fanout`](crate::stream::fanout::Fanout), fed by its core (one node, or the
//! leader) or by the timeline stream (a follower).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use donut_shared::scene::Impulse;
use donut_shared::wire::Keyframe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cluster::deps::{Checks, NodeDeps};
use crate::cluster::lease::Role;
use crate::cluster::registry::ClusterTotals;
use crate::cluster::{self, ClusterConfig, Node};
use crate::conn::connection::Connection;
use crate::conn::fleet::{Admission, Fleet};
use crate::conn::limits::CloseReason;
use crate::metrics::Stats;
use crate::stream::core::Core;
use crate::stream::fanout::Batch;
use crate::stream::telemetry::ClusterView;
use crate::stream::timeline::acks::Acks;
use crate::trust::reputation::AddrKey;
use crate::trust::sanction::Share;

pub use crate::cluster::inputs::Notices;

/// See the module docs.
pub enum Engine {
    /// One process: today's single node, no Redis.
    Memory,
    /// A node of a cluster sharing one timeline through Redis.
    Cluster(Arc<Node>),
}

/// Where a worker admitted here runs its protocol.
pub enum Route {
    /// Against this node's core: the worker endpoint over its connection.
    Local,
    /// Tunnelled to the leader (this node follows).
    Tunnel(Tunnel),
}

/// A worker's way to the leader's core (see [`cluster::tunnel`]).
pub struct Tunnel(Arc<Node>);

impl Tunnel {
    /// Runs the worker on `ws` to its end through the tunnel, its answers
    /// checked here with `checks` first.
    pub async fn serve(self, ws: Connection, checks: Checks, admission: Admission) {
        cluster::tunnel::serve(ws, checks, self.0, admission).await;
    }
}

/// A cluster node's figures for `/metrics` (see [`Engine::figures`]).
pub struct ClusterFigures {
    /// Leader or follower, and the term.
    pub role: Role,
    /// The cluster's totals, as last read.
    pub totals: ClusterTotals,
    /// Workers with a socket on this node.
    pub local_workers: u64,
}

impl Engine {
    /// The engine `cluster` asks for: this process alone (`None`), or a
    /// node joined to the cluster's Redis (a ring of `ring_frames`), with
    /// the channel the broadcaster's batches go up to it by.
    pub async fn join(
        cluster: Option<ClusterConfig>,
        ring_frames: usize,
    ) -> anyhow::Result<(Self, Option<mpsc::UnboundedSender<Batch>>, Commits)> {
        let Some(cluster) = cluster else {
            return Ok((Self::Memory, None, Commits(None)));
        };
        let node = Node::connect(cluster, ring_frames)
            .await
            .context("joining the cluster")?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((Self::Cluster(node), Some(tx), Commits(Some(rx))))
    }

    /// Starts the cluster's tasks, given the parts they drive (nothing for
    /// one process). They stop with `shutdown`.
    pub fn start(
        &self,
        deps: impl FnOnce() -> NodeDeps,
        commits: Commits,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        match (self, commits.0) {
            (Self::Cluster(node), Some(rx)) => node.start(deps(), rx, shutdown),
            _ => Vec::new(),
        }
    }

    /// Where a worker admitted now runs (a follower tunnels it).
    pub fn route_worker(&self) -> Route {
        match self {
            Self::Cluster(node) if !node.is_leader() => Route::Tunnel(Tunnel(Arc::clone(node))),
            _ => Route::Local,
        }
    }

    /// The `Keyframe` for a steering viewer (`acks`, its pushes) now, if
    /// the version or its pushes folded in moved: from the core's current
    /// change (one node), or from the committed timeline this node read
    /// and the input-log positions of the viewer's pushes (a cluster node,
    /// leader or follower: every push goes through the input log).
    pub fn keyframe(&self, core: &Core, acks: &mut Acks) -> Option<Keyframe> {
        match self {
            Self::Memory => acks.update(Some(core.keyframe())),
            Self::Cluster(node) => acks.update_folded(node.keyframe()),
        }
    }

    /// Viewer `viewer` (this node's connection id) pushed the donut; noted
    /// on `acks` (its `Keyframe`s): the timeline version it was queued
    /// under (one node), or where the cluster's input log stored it. If the
    /// push is refused (a cluster could not store it), the encoded
    /// `InputRefused` goes to `notices` for the viewer.
    pub fn input(
        &self,
        core: &Core,
        stats: &Arc<Stats>,
        (viewer, push): (u64, Impulse),
        notices: &Notices,
        acks: &mut Acks,
    ) {
        match self {
            Self::Memory => acks.pushed(Some(core.input(viewer, push))),
            Self::Cluster(node) => node.input(stats, viewer, push, notices, acks.carry()),
        }
    }
    /// How a ban made here is shared: in a cluster, every node learns
    /// (`None`: one node, nothing to share).
    pub fn ban_share(&self) -> Option<Share> {
        match self {
            Self::Memory => None,
            Self::Cluster(node) => {
                let node = Arc::clone(node);
                Some(Arc::new(move |key: AddrKey, length: Duration| {
                    node.ban(key, length);
                }))
            }
        }
    }

    /// The refusal for a worker from `key` banned by another node of the
    /// cluster, if it is (this node's own bans are checked on admission).
    pub async fn refusal(&self, key: AddrKey) -> Option<CloseReason> {
        match self {
            Self::Memory => None,
            Self::Cluster(node) => node.refusal(key).await,
        }
    }

    /// The cluster as telemetry reads it, if any.
    pub fn cluster_view(&self) -> Option<Arc<dyn ClusterView>> {
        match self {
            Self::Memory => None,
            Self::Cluster(node) => Some(Arc::clone(node) as Arc<dyn ClusterView>),
        }
    }

    /// The cluster's figures, if in one (`fleet`: this node's).
    pub fn figures(&self, fleet: &Fleet) -> Option<ClusterFigures> {
        let Self::Cluster(node) = self else {
            return None;
        };
        Some(ClusterFigures {
            role: node.role(),
            totals: node.totals(),
            local_workers: node.local_workers(fleet),
        })
    }
}

/// The broadcaster's batches on their way to the cluster node (which
/// appends them to the timeline stream while it leads); empty for one
/// process.
pub struct Commits(Option<mpsc::UnboundedReceiver<Batch>>);
