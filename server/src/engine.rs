//! The engine: what the connections hand the stream's work to, in one
//! process or across a cluster, without knowing which.
//!
//! Like Centrifugo's memory and Redis engines (or Socket.IO's in-memory and
//! Redis Streams adapters), the single node and the cluster differ here and
//! nowhere else in the connection code:
//!
//! | the connections ask | [`Engine::Memory`] (one node) | [`Engine::Cluster`] (`--cluster`) |
//! |---|---|---|
//! | serve a worker | the node's own [`Core`](crate::core::Core) | the leader's: here if this node leads, else tunnelled to it ([`cluster::tunnel`]) |
//! | a viewer's push | the node's timeline | the leader's timeline (sent up if this node follows) |
//! | a ban ([`Engine::ban_share`]) | the node's reputation | also every node's, through Redis |
//! | admit a worker | the node's bans | also the cluster's |
//!
//! Viewers need no engine: every node's viewers subscribe to its
//! [`Fanout`](crate::fanout::Fanout), fed by its core (one node, or the
//! leader) or by the timeline stream (a follower).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use donut_shared::scene::{Impulse, Scene};

use crate::cluster::{self, Node};
use crate::fleet::Admission;
use crate::limits::CloseReason;
use crate::state::App;
use crate::trust::reputation::AddrKey;
use crate::trust::sanction::Share;
use crate::worker_conn;

/// See the module docs.
pub enum Engine {
    /// One process: today's single node, no Redis.
    Memory,
    /// A node of a cluster sharing one timeline through Redis.
    Cluster(Arc<Node>),
}

impl Engine {
    /// Runs an admitted worker's upgraded socket to its end.
    pub async fn serve_worker(&self, socket: WebSocket, app: Arc<App>, admission: Admission) {
        let conn = worker_conn::connection(socket, &app);
        match self {
            Self::Cluster(node) if !node.is_leader() => {
                cluster::tunnel::serve(conn, app, Arc::clone(node), admission).await;
            }
            _ => worker_conn::serve(conn, app, admission).await,
        }
    }

    /// Viewer `viewer` (this node's connection id) pushed the donut;
    /// returns the timeline version it was queued under when this node's
    /// core holds the timeline (one node), `None` on a cluster.
    pub fn input(&self, app: &App, viewer: u64, push: Impulse) -> Option<u32> {
        match self {
            Self::Memory => Some(app.core.input(viewer, push)),
            Self::Cluster(node) => {
                node.input(app, viewer, push);
                None
            }
        }
    }

    /// The current version's change (frame, version, scene) for a steering
    /// page's prediction; `None` on a cluster, whose timeline lives in the
    /// leader's core (its pages do not predict).
    pub fn keyframe(&self, app: &App) -> Option<(u64, u32, Scene)> {
        match self {
            Self::Memory => Some(app.core.keyframe()),
            Self::Cluster(_) => None,
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

    /// The cluster node, if any.
    pub fn node(&self) -> Option<&Arc<Node>> {
        match self {
            Self::Memory => None,
            Self::Cluster(node) => Some(node),
        }
    }
}
