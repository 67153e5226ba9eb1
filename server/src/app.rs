//! The HTTP application: shared state, the router,
//! the operations endpoints, and starting and stopping the server.
//! The embedded web client is served by [`crate::assets`].
//!
//! Shared state is one [`App`] in an `Arc`, handed to handlers by axum's
//! `State` extractor; there is no global mutable state. Background work is
//! two tasks: the [`broadcaster`] (the stream's clock)
//! and the [`telemetry`] publisher.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use donut_shared::wire::{MAX_WORKER_MESSAGE_LEN, Telemetry};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::client_addr::ClientAddr;
use crate::config::{ServeConfig, VerifyPolicy};
use crate::core::{Core, CoreConfig};
use crate::fleet::{Caps, Fleet, Role};
use crate::handshake::Handshake;
use crate::limits::{CloseReason, GOING_AWAY};
use crate::metrics::{Readings, Snapshot, Stats};
use crate::origin::OriginPolicy;
use crate::scheduler::SchedulerConfig;
use crate::send_queue::SendQueue;
use crate::telemetry::{self, TelemetryMsg};
use crate::trust::quorum::Referee;
use crate::trust::reputation::{Reputation, ReputationConfig};
use crate::trust::verifier::Verifier;
use crate::{broadcaster, viewer_conn, worker_conn, ws};

/// Largest message a viewer may send (viewers send nothing; this only
/// bounds what is read before the connection is closed for sending).
const MAX_VIEWER_INBOUND: usize = 1024;

/// State shared by every handler and connection.
pub struct App {
    /// Configuration.
    pub cfg: ServeConfig,
    /// Scheduler, ring and broadcast.
    pub core: Arc<Core>,
    /// Connections and admission.
    pub fleet: Arc<Fleet>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Result checking.
    pub verifier: Verifier,
    /// Settles quorum disputes and lone votes.
    pub referee: Referee,
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
}

/// The close sent to every peer when the server stops.
pub fn shutdown_reason() -> CloseReason {
    CloseReason::new(GOING_AWAY, "server shutting down")
}

impl App {
    /// Every figure now, for `/metrics` and `/api/stats`.
    pub fn snapshot(&self) -> Snapshot {
        let pos = self.core.position();
        let buffered = pos.contiguous.saturating_sub(pos.head);
        let read = Readings {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            workers: self.fleet.workers(),
            viewers: self.fleet.viewers(),
            fps: if self.cfg.paced() { self.cfg.fps } else { 0 },
            head: pos.head,
            contiguous: pos.contiguous,
            broadcast_cursor: pos.cursor,
            buffered_frames: buffered,
            buffered_secs: if self.cfg.paced() {
                buffered as f64 / f64::from(self.cfg.fps)
            } else {
                0.0
            },
            fleet_fps: u64::from(self.telemetry.borrow().telemetry.fleet_fps),
            ring_frames: pos.ring_frames,
            ring_bytes: pos.ring_bytes,
            outstanding_ranges: pos.outstanding,
            tasks_dispatched: pos.sched.dispatched,
            tasks_hedged: pos.sched.hedged,
            tasks_reassigned: pos.sched.reassigned,
            tasks_expired: pos.sched.expired,
            tasks_presumed_lost: pos.sched.presumed_lost,
            verify_policy: match self.verifier.policy() {
                VerifyPolicy::Full => "full",
                VerifyPolicy::Quorum => "quorum",
                VerifyPolicy::Sample => "sample",
                VerifyPolicy::Off => "off-benchmark-only",
            },
        };
        Snapshot::new(read, &self.stats)
    }
}

/// The router over an [`App`].
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws/worker", get(worker_ws))
        .route("/ws/viewer", get(viewer_ws))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(stats))
        .fallback(crate::assets::route())
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
        .on_upgrade(move |mut socket| async move {
            match admit(&app, Role::Worker, client) {
                Ok(a) => worker_conn::run(socket, app, a).await,
                Err(reason) => ws::close(&mut socket, &reason).await,
            }
        })
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
    // with go out in one write (see `viewer_conn`); a batch alone is
    // written at once.
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(256)
        .max_message_size(MAX_VIEWER_INBOUND)
        .max_frame_size(MAX_VIEWER_INBOUND)
        .on_upgrade(move |mut socket| async move {
            match admit(&app, Role::Viewer, client) {
                Ok(a) => viewer_conn::run(socket, app, a, SendQueue::of(peer)).await,
                Err(reason) => ws::close(&mut socket, &reason).await,
            }
        })
}

/// Admission after the upgrade, so a refusal is a close frame with a
/// reason rather than a bare HTTP status.
///
/// `client` is the resolved client address (`crate::client_addr`), not
/// necessarily the TCP peer.
fn admit(
    app: &Arc<App>,
    role: Role,
    client: IpAddr,
) -> Result<crate::fleet::Admission, CloseReason> {
    if *app.shutdown.borrow() {
        return Err(shutdown_reason());
    }
    app.fleet.admit(role, client).inspect_err(|r| {
        app.stats.connections_refused.inc();
        info!(ip = %client, ?role, reason = %r.reason, "connection refused");
    })
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
    /// caps to fit it (see [`crate::fds`]).
    pub async fn start(mut cfg: ServeConfig) -> anyhow::Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let budget = crate::fds::raise_nofile_limit().unwrap_or_else(|e| {
            tracing::warn!("RLIMIT_NOFILE not read or raised ({e}); connection caps left as set");
            u64::MAX
        });
        (cfg.max_workers, cfg.max_viewers) =
            crate::fds::fit_caps(cfg.max_workers, cfg.max_viewers, budget)
                .map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let listener = crate::send_queue::Listener(listener);
        let stats = Arc::new(Stats::default());
        let fps = if cfg.paced() { cfg.fps } else { 0 };
        let core = Arc::new(Core::new(
            CoreConfig {
                fps,
                lead_frames: cfg.lead_frames(),
                viewer_lead_frames: cfg.viewer_lead_frames(),
                ring_frames: cfg.ring_capacity(),
                start_frame: cfg.start_frame,
                batch_frames: cfg.batch_frames,
                codec: cfg.codec,
                viewer_queue: cfg.viewer_queue,
                scheduler: SchedulerConfig {
                    task_target: Duration::from_millis(cfg.task_ms.max(1)),
                    first_task_frames: cfg.first_task_frames,
                    first_task_timeout: Duration::from_millis(cfg.first_task_timeout_ms.max(1)),
                    min_new_frames: u32::try_from(cfg.lead_frames() / 4)
                        .unwrap_or(u32::MAX)
                        .clamp(1, donut_shared::wire::MAX_TASK_FRAMES),
                    addr_cap_frames: (cfg.lead_frames() as f64 * cfg.addr_share).ceil() as u64,
                    ..SchedulerConfig::default()
                },
            },
            Arc::clone(&stats),
        ));
        let reputation = Arc::new(Reputation::new(ReputationConfig {
            scope: cfg.ban_scope,
            max_strikes: cfg.max_strikes,
            ban: Duration::from_secs(cfg.ban_secs),
            max_ban: Duration::from_secs(cfg.max_ban_secs.max(cfg.ban_secs)),
            max_trust: cfg.sample_trust_batches,
        }));
        let caps = Caps {
            workers: cfg.max_workers,
            viewers: cfg.max_viewers,
            per_ip: cfg.max_per_ip,
        };
        let fleet = Arc::new(Fleet::new(caps, Arc::clone(&reputation)));
        let verifier = Verifier::new(cfg.verify, cfg.sample_floor, cfg.sample_trust_batches);
        let referee = Referee::new(Arc::clone(&core), reputation, Arc::clone(&stats));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (telemetry_tx, telemetry_rx) = watch::channel(TelemetryMsg::new(Telemetry {
            fps,
            ..Telemetry::default()
        }));
        let app = Arc::new(App {
            cfg: cfg.clone(),
            core: Arc::clone(&core),
            fleet: Arc::clone(&fleet),
            stats: Arc::clone(&stats),
            verifier,
            referee: referee.clone(),
            telemetry: telemetry_rx,
            shutdown: shutdown_rx.clone(),
            started: Instant::now(),
            origins: OriginPolicy::new(&cfg.allowed_origins).map_err(anyhow::Error::msg)?,
            client_addr: ClientAddr::new(cfg.trusted_proxies.clone(), cfg.forwarded_header),
        });
        let mut tasks = vec![
            tokio::spawn(broadcaster::run(Arc::clone(&core), shutdown_rx.clone())),
            tokio::spawn(telemetry::run(
                telemetry::Sources {
                    core,
                    fleet,
                    stats,
                    fps,
                },
                telemetry_tx,
                shutdown_rx.clone(),
            )),
        ];
        if cfg.verify == VerifyPolicy::Quorum {
            let wait = Duration::from_millis(cfg.quorum_wait_ms.max(1));
            tasks.push(tokio::spawn(referee.run(wait, shutdown_rx.clone())));
        }
        let mut stop = shutdown_rx;
        let service = router(Arc::clone(&app))
            .into_make_service_with_connect_info::<crate::send_queue::Peer>();
        let http = tokio::spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        info!(
            %addr,
            fps,
            ring_frames = cfg.ring_capacity(),
            verify = ?cfg.verify,
            trusted_proxies = ?cfg.trusted_proxies,
            "serving"
        );
        Ok(Self {
            addr,
            app,
            shutdown: shutdown_tx,
            http,
            tasks,
        })
    }

    /// The shared state, for tests and benchmarks that look inside.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Closes every socket with "server shutting down" and stops, waiting
    /// at most `grace` for peers to go.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while self.app.fleet.workers() + self.app.fleet.viewers() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.max(Duration::from_millis(100)), self.http).await;
        for t in self.tasks {
            t.abort();
        }
        info!("stopped");
    }
}
