//! What a node is given by the server that starts it: the parts of the
//! stream and the fleet it drives, and a way to run a worker connection,
//! never the whole state (centrifuge's `Run(h BrokerEventHandler)`: the
//! engine calls back through what it was handed at start).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::conn::fleet::{Admission, Fleet};
use crate::conn::pipe::Pipe;
use crate::metrics::Stats;
use crate::stream::core::Core;
use crate::stream::fanout::Fanout;
use crate::stream::telemetry::TelemetryMsg;
use crate::trust::reputation::Reputation;
use crate::trust::verifier::Verifier;

/// Runs the worker protocol over a pipe to its end (the worker endpoint,
/// registered by `app.rs`): how the leader serves a follower's worker.
pub type ServeWorker =
    Arc<dyn Fn(Pipe, Admission) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The parts a node's tasks drive (see the module docs).
pub struct NodeDeps {
    /// The stream's core: fed while leading, resumed on taking the lease.
    pub core: Arc<Core>,
    /// This node's viewers' fan-out: fed from the timeline stream.
    pub fanout: Arc<Fanout>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Connections and admission (a follower's workers are admitted here
    /// while this node leads).
    pub fleet: Arc<Fleet>,
    /// The latest telemetry (the leader's render rate, for the heartbeat).
    pub telemetry: watch::Receiver<TelemetryMsg>,
    /// Turns true when the server is stopping.
    pub shutdown: watch::Receiver<bool>,
    /// The frame an empty timeline starts at (`--start-frame`).
    pub start_frame: u64,
    /// How long a send may wait (a tunnel's pipe stalls after it).
    pub send_limit: Duration,
    /// Runs a tunnelled worker's protocol.
    pub serve_worker: ServeWorker,
}

/// What a follower checks a tunnelled worker's answers with, before they
/// go up (see `conn::transport::Transport::CHECKED_UPSTREAM`).
#[derive(Clone)]
pub struct Checks {
    /// The native re-render.
    pub verifier: Verifier,
    /// Trust and strikes by address.
    pub reputation: Arc<Reputation>,
    /// Counters.
    pub stats: Arc<Stats>,
}
