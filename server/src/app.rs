//! The HTTP application: the router, the operations endpoints, and
//! starting and stopping the server. The shared state it builds is
//! [`App`] ([`crate::state`]); the embedded web client is served by
//! [`crate::edge::assets`].
//!
//! Background work is two tasks: the [`broadcaster`]
//! (the stream's clock) and the [`telemetry`] publisher.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocket;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use donut_shared::wire::p2p::MAX_FROM_VIEWER_LEN;
use donut_shared::wire::{MAX_WORKER_MESSAGE_LEN, Telemetry};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, info};

use crate::cluster::deps::{Checks, NodeDeps};
use crate::config::{ServeConfig, VerifyPolicy};
use crate::conn::connection;
use crate::conn::fleet::{Admission, ConnKind, Fleet};
use crate::conn::limits::shutdown_reason;
use crate::edge::client_addr::ClientAddr;
use crate::edge::handshake::Handshake;
use crate::edge::origin::OriginPolicy;
use crate::edge::send_queue::SendQueue;
use crate::endpoint::{viewer, worker};
use crate::engine::{Commits, Engine, Route};
use crate::metrics::Stats;
use crate::p2p::hub::Hub;
use crate::state::App;
use crate::stream::broadcaster;
use crate::stream::core::Core;
use crate::stream::fanout::{Batch, Fanout};
use crate::stream::telemetry::{self, TelemetryMsg};
use crate::trust::quorum::Referee;
use crate::trust::reputation::Reputation;
use crate::trust::sanction::Sanctions;

/// The router over an [`App`].
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws/worker", get(worker_ws))
        .route("/ws/viewer", get(viewer_ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .route("/api/page", get(page_config))
        .fallback(crate::edge::assets::route())
        .with_state(app)
}

async fn worker_ws(
    State(app): State<Arc<App>>,
    Handshake {
        upgrade, client, ..
    }: Handshake,
) -> Response {
    upgrade
        .max_message_size(MAX_WORKER_MESSAGE_LEN)
        .max_frame_size(MAX_WORKER_MESSAGE_LEN)
        .on_upgrade(move |mut socket| {
            async move {
                if let Some(a) = admit(&app, ConnKind::Worker, client, &mut socket).await {
                    if let Some(reason) = app.engine.refusal(a.key).await {
                        app.stats.connections_refused.inc();
                        info!(reason = %reason.reason, "connection refused");
                        connection::close(&mut socket, &reason).await;
                        return;
                    }
                    serve_worker(socket, app, a).await;
                }
            }
            .instrument(span(ConnKind::Worker, client))
        })
}

/// Runs an admitted worker's upgraded socket to its end, where the engine
/// routes it: this node's core, or the leader's through a tunnel.
async fn serve_worker(socket: WebSocket, app: Arc<App>, admission: Admission) {
    let ws = worker::connection(socket, &app);
    match app.engine.route_worker() {
        Route::Local => worker::serve(ws, app, admission).await,
        Route::Tunnel(tunnel) => tunnel.serve(ws, checks(&app), admission).await,
    }
}

/// What a follower checks a worker's answers with before they go up.
fn checks(app: &App) -> Checks {
    Checks {
        verifier: app.verifier.clone(),
        reputation: Arc::clone(app.fleet.reputation()),
        stats: Arc::clone(&app.stats),
    }
}

async fn viewer_ws(
    State(app): State<Arc<App>>,
    Handshake {
        upgrade,
        client,
        peer,
        ..
    }: Handshake,
) -> Response {
    // Viewers only receive: small buffers keep thousands of them cheap
    // (the 128 KiB defaults cost about 140 KiB resident per viewer). The
    // write threshold is above a telemetry message (66 bytes framed) and
    // below a batch, so a held telemetry update and the batch it rides
    // with go out in one write (see `endpoint::viewer`); a batch alone is
    // written at once.
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(256)
        .max_message_size(MAX_FROM_VIEWER_LEN)
        .max_frame_size(MAX_FROM_VIEWER_LEN)
        .on_upgrade(move |mut socket| {
            async move {
                if let Some(a) = admit(&app, ConnKind::Viewer, client, &mut socket).await {
                    viewer::run(socket, app, a, SendQueue::of(peer)).await;
                }
            }
            .instrument(span(ConnKind::Viewer, client))
        })
}

/// The span a connection's task runs in for its whole life, so its log
/// lines carry its role, its client address and (once admitted) its id.
fn span(role: ConnKind, client: IpAddr) -> Span {
    tracing::info_span!(
        "conn",
        role = role.name(),
        ip = %client,
        id = tracing::field::Empty
    )
}

/// Admission after the upgrade, so a refusal is a close frame with a
/// reason rather than a bare HTTP status: `None` once `socket` has been
/// closed with it.
///
/// `client` is the resolved client address (`crate::edge::client_addr`), not
/// necessarily the TCP peer.
async fn admit(
    app: &Arc<App>,
    role: ConnKind,
    client: IpAddr,
    socket: &mut WebSocket,
) -> Option<Admission> {
    let admitted = if *app.shutdown.borrow() {
        Err(shutdown_reason())
    } else {
        app.fleet.admit(role, client).inspect_err(|r| {
            app.stats.connections_refused.inc();
            info!(reason = %r.reason, "connection refused");
        })
    };
    match admitted {
        Ok(a) => {
            Span::current().record("id", a.id);
            Some(a)
        }
        Err(reason) => {
            connection::close(socket, &reason).await;
            None
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.snapshot().prometheus(),
    )
        .into_response()
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    match serde_json::to_string_pretty(&app.snapshot()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// What the page needs from the operator before it starts a worker:
/// `{"contribute": "ask"|"on"|"off", "budget": PERCENT}` (the first-visit
/// default, `--contribute-default`, and a contributing tab's CPU budget in
/// percent of one core, `--contribute-budget`). Never cached, so a changed
/// flag reaches the next page load.
async fn page_config(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({
        "contribute": app.cfg.contribute_default.name(),
        "budget": app.cfg.contribute_budget,
        // The commit throttle a steering page predicts with (issue 25).
        "inputCommitMs": app.cfg.input_commit_ms,
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The parts a cluster node drives, and the worker endpoint it runs a
/// tunnelled worker with.
fn node_deps(app: &Arc<App>) -> NodeDeps {
    // Weak: the node's tasks must not keep the state alive past shutdown.
    let state = Arc::downgrade(app);
    NodeDeps {
        core: Arc::clone(&app.core),
        fanout: Arc::clone(&app.fanout),
        stats: Arc::clone(&app.stats),
        fleet: Arc::clone(&app.fleet),
        telemetry: app.telemetry.clone(),
        shutdown: app.shutdown.clone(),
        start_frame: app.cfg.start_frame,
        send_limit: app.cfg.conn_limits().send_limit,
        serve_worker: Arc::new(move |pipe, admission| {
            let state = state.clone();
            Box::pin(async move {
                if let Some(app) = state.upgrade() {
                    worker::serve(pipe, app, admission).await;
                }
            })
        }),
    }
}

/// Raises the file-descriptor limit and lowers the connection caps to fit
/// it (see [`crate::edge::fds`]).
fn fit_descriptor_budget(cfg: &mut ServeConfig) -> anyhow::Result<()> {
    let budget = crate::edge::fds::raise_nofile_limit().unwrap_or_else(|e| {
        tracing::warn!("RLIMIT_NOFILE not read or raised ({e}); connection caps left as set");
        u64::MAX
    });
    (cfg.max_workers, cfg.max_viewers) =
        crate::edge::fds::fit_caps(cfg.max_workers, cfg.max_viewers, budget)
            .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// What the background tasks take that the state does not hold.
struct Wiring {
    /// The fan-out the core publishes to (the viewers', or in a cluster
    /// one of its own).
    core_fanout: Arc<Fanout>,
    /// The broadcaster's batches up to the cluster node, if any.
    commit_tx: Option<mpsc::UnboundedSender<Batch>>,
    /// Their receiving end, for the node.
    commits: Commits,
    /// Where the telemetry task publishes.
    telemetry_tx: watch::Sender<TelemetryMsg>,
}

/// The shared state for `cfg`, every part built from its derived config
/// (joining the cluster if `--cluster`).
async fn build(
    cfg: &ServeConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<App>, Wiring)> {
    let stats = Arc::new(Stats::default());
    let fanout = Arc::new(Fanout::new(cfg.viewer_queue, Arc::clone(&stats)));
    // In a cluster the core publishes to a fan-out of its own, which no
    // viewer reads: the node passes each batch on to the viewers' once
    // Redis has appended it (durability before visibility, see
    // `cluster::node`).
    let core_fanout = if cfg.cluster.is_some() {
        Arc::new(Fanout::new(cfg.viewer_queue, Arc::new(Stats::default())))
    } else {
        Arc::clone(&fanout)
    };
    let core = Arc::new(Core::new(
        cfg.core_config(),
        Arc::clone(&stats),
        Arc::clone(&core_fanout),
        Instant::now(),
    ));
    let reputation = Arc::new(Reputation::new(cfg.reputation_config()));
    let fleet = Arc::new(Fleet::new(cfg.caps(), Arc::clone(&reputation)));
    let (telemetry_tx, telemetry) = watch::channel(TelemetryMsg::new(Telemetry {
        fps: cfg.stream_fps(),
        ..Telemetry::default()
    }));
    let (engine, commit_tx, commits) =
        Engine::join(cfg.cluster_config(), cfg.ring_capacity()).await?;
    let sanctions = Sanctions::new(Arc::clone(&core), reputation, Arc::clone(&stats))
        .sharing(engine.ban_share());
    let app = Arc::new(App {
        cfg: cfg.clone(),
        engine,
        hub: Arc::new(Hub::new(cfg.hub_config(), Arc::clone(&stats))),
        core,
        fanout,
        fleet,
        stats,
        verifier: cfg.verifier(),
        referee: Referee::new(sanctions.clone()),
        sanctions,
        telemetry,
        shutdown,
        started: Instant::now(),
        origins: OriginPolicy::new(&cfg.allowed_origins).map_err(anyhow::Error::msg)?,
        client_addr: ClientAddr::new(cfg.trusted_proxies.clone(), cfg.forwarded_header),
    });
    let wiring = Wiring {
        core_fanout,
        commit_tx,
        commits,
        telemetry_tx,
    };
    Ok((app, wiring))
}

/// The background tasks: the broadcaster, the telemetry publisher, the
/// cluster's, the relay tree's tick and the quorum referee's, as
/// configured. They stop with `stop`.
fn spawn_tasks(
    app: &Arc<App>,
    wiring: Wiring,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(broadcaster::run(
            Arc::clone(&app.core),
            wiring.core_fanout,
            wiring.commit_tx,
            stop.clone(),
        )),
        tokio::spawn(telemetry::run(
            telemetry::Sources {
                core: Arc::clone(&app.core),
                fleet: Arc::clone(&app.fleet),
                stats: Arc::clone(&app.stats),
                fps: app.cfg.stream_fps(),
                cluster: app.engine.cluster_view(),
                hub: Arc::clone(&app.hub),
            },
            wiring.telemetry_tx,
            stop.clone(),
        )),
    ];
    tasks.extend(
        app.engine
            .start(|| node_deps(app), wiring.commits, stop.clone()),
    );
    if app.hub.enabled() {
        tasks.push(tokio::spawn(crate::p2p::hub::tick(
            Arc::clone(&app.hub),
            stop.clone(),
        )));
    }
    if app.cfg.verify == VerifyPolicy::Quorum {
        let referee = app.referee.clone();
        tasks.push(tokio::spawn(
            referee.run(app.cfg.quorum_wait(), stop.clone()),
        ));
    }
    tasks
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds `cfg.listen` and starts serving.
    ///
    /// Raises the file-descriptor limit first and lowers the connection
    /// caps to fit it (see [`crate::edge::fds`]).
    pub async fn start(mut cfg: ServeConfig) -> anyhow::Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        fit_descriptor_budget(&mut cfg)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (shutdown, stop) = watch::channel(false);
        let (app, wiring) = build(&cfg, stop.clone()).await?;
        let tasks = spawn_tasks(&app, wiring, &stop);
        let service = router(Arc::clone(&app))
            .into_make_service_with_connect_info::<crate::edge::send_queue::Peer>();
        let http = tokio::spawn(async move {
            let mut stop = stop;
            axum::serve(crate::edge::send_queue::Listener(listener), service)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        info!(
            %addr,
            fps = cfg.stream_fps(),
            ring_frames = cfg.ring_capacity(),
            verify = ?cfg.verify,
            trusted_proxies = ?cfg.trusted_proxies,
            "serving"
        );
        Ok(Self {
            addr,
            app,
            shutdown,
            http,
            tasks,
        })
    }

    /// The shared state, for tests and benchmarks that look inside.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Closes every socket with "server shutting down" and stops, waiting
    /// at most `grace` for peers to go (woken when the last one leaves the
    /// fleet, not polled).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        let _ = tokio::time::timeout(grace, self.app.fleet.emptied()).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.max(Duration::from_millis(100)), self.http).await;
        for t in self.tasks {
            t.abort();
        }
        info!("stopped");
    }
}
