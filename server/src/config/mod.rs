//! Command-line and environment configuration (clap with `env`).
//!
//! Every knob of the server has a flag and a `DONUT_*` environment variable,
//! so the same binary is configured the same way on a laptop, in a container
//! and in the tests. Defaults are what a public deployment wants; the
//! benchmarks turn pacing and verification off explicitly.

use std::net::SocketAddr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use donut_shared::wire::Codec;

mod derive;

use crate::edge::client_addr::ForwardedHeader;
// The domains' own enums, read from flags (each lives in its domain).
pub use crate::p2p::P2pMode;
pub use crate::trust::reputation::BanScope;
pub use crate::trust::verifier::VerifyPolicy;

/// Distributed Donut: a browser render farm for a1k0n's spinning donut.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands of `donut`.
#[derive(Subcommand, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing would only complicate every use"
)]
pub enum Command {
    /// Run the server: HTTP, the embedded web client and both WebSocket endpoints.
    Serve(ServeConfig),
    /// Contribute this machine's cores as a native worker.
    Work(WorkConfig),
    /// Write frames to stdout as plain text, 1760 bytes each (80×22 with newlines).
    Render {
        /// First absolute frame number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many frames to write.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

/// What a first-time visitor's page does about contributing
/// (`--contribute-default`), before the visitor chose: a choice they made
/// (stored by the page) or `?contribute=0|1` in the address always wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ContributeDefault {
    /// Ask, in a sentence saying what it does and costs; no worker starts
    /// until the visitor agrees.
    Ask,
    /// Contribute without asking (a kiosk or a demo the operator owns).
    On,
    /// Only watch, without asking (a watch-only deployment); the switch
    /// still lets a visitor opt in.
    Off,
}

impl ContributeDefault {
    /// Its name, as in the flag and in `/api/page`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ask => "ask",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// Parses `--codec` / `DONUT_CODEC`: one of the names of [`Codec::name`],
/// listed as the possible values in `--help`.
fn codec_parser() -> impl TypedValueParser<Value = Codec> {
    PossibleValuesParser::new(Codec::ALL.map(Codec::name))
        .try_map(|name| Codec::from_name(&name).ok_or("unknown codec"))
}

/// Configuration of `donut serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "DONUT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Playback rate in frames per second; 0 turns pacing off (the head
    /// advances as fast as frames arrive, for benchmarks).
    #[arg(long, env = "DONUT_FPS", default_value_t = 60)]
    pub fps: u16,
    /// Same as `--fps 0`.
    #[arg(long, env = "DONUT_NO_PACING")]
    pub no_pacing: bool,
    /// Seconds of frames kept rendered ahead of the playback head.
    #[arg(long, env = "DONUT_LEAD_SECS", default_value_t = 3.0)]
    pub lead_secs: f64,
    /// Seconds of frames sent to viewers ahead of the playback head (their
    /// jitter buffer, and what a new viewer receives at once).
    #[arg(long, env = "DONUT_VIEWER_LEAD_SECS", default_value_t = 1.0)]
    pub viewer_lead_secs: f64,
    /// Capacity of the frame ring in frames (880 bytes each, allocated at
    /// start). Must hold the lead; 0 picks `max(2 × lead, 600)` frames, or
    /// 65,536 with pacing off.
    #[arg(long, env = "DONUT_RING_FRAMES", default_value_t = 0)]
    pub ring_frames: usize,
    /// First absolute frame number of the stream.
    #[arg(long, env = "DONUT_START_FRAME", default_value_t = 0)]
    pub start_frame: u64,
    /// Target duration of one task in milliseconds: each worker's measured
    /// pace turns this into the size of the ranges it is given.
    #[arg(long, env = "DONUT_TASK_MS", default_value_t = 100)]
    pub task_ms: u64,
    /// Frames in a worker's first task, before its pace is known.
    #[arg(long, env = "DONUT_FIRST_TASK_FRAMES", default_value_t = 30)]
    pub first_task_frames: u32,
    /// Milliseconds before a task of a worker whose pace is unknown is
    /// hedged to another worker (later tasks use the worker's own pace).
    #[arg(long, env = "DONUT_FIRST_TASK_TIMEOUT_MS", default_value_t = 2000)]
    pub first_task_timeout_ms: u64,
    /// Encoding of viewer batches: `primed` (context-modelled range
    /// coding from a trained prior, about 88 bytes a frame idle, costs CPU;
    /// protocol 6), `context` (the same from even odds, about 90 idle and
    /// up to a fifth more under a crowd of steerers) or `nibble` (plain 880-byte
    /// packing, 10x the bytes, almost no CPU).
    #[arg(
        long,
        env = "DONUT_CODEC",
        value_parser = codec_parser(),
        default_value = Codec::DEFAULT.name()
    )]
    pub codec: Codec,
    /// Most frames in one viewer batch.
    #[arg(long, env = "DONUT_BATCH_FRAMES", default_value_t = 600)]
    pub batch_frames: u32,
    /// Batches a viewer may fall behind before it is skipped ahead to live.
    #[arg(long, env = "DONUT_VIEWER_QUEUE", default_value_t = 64)]
    pub viewer_queue: usize,
    /// Most worker connections.
    #[arg(long, env = "DONUT_MAX_WORKERS", default_value_t = 1000)]
    pub max_workers: usize,
    /// Most viewer connections.
    #[arg(long, env = "DONUT_MAX_VIEWERS", default_value_t = 10_000)]
    pub max_viewers: usize,
    /// Most connections (both roles) from one IP address; 0 = no limit.
    #[arg(long, env = "DONUT_MAX_PER_IP", default_value_t = 64)]
    pub max_per_ip: usize,
    /// Seconds between pings to an idle peer.
    #[arg(long, env = "DONUT_PING_SECS", default_value_t = 10)]
    pub ping_secs: u64,
    /// Seconds of silence (no message, no pong) before a peer is reaped.
    #[arg(long, env = "DONUT_IDLE_SECS", default_value_t = 30)]
    pub idle_secs: u64,
    /// Seconds a send to one peer may take before it is dropped.
    #[arg(long, env = "DONUT_SEND_TIMEOUT_SECS", default_value_t = 10)]
    pub send_timeout_secs: u64,
    /// A viewer's push applies this many frames past the playback head:
    /// the input lag (8 frames, 133 ms at 60 fps) traded for the time
    /// workers get to render the changed frames before playback needs them.
    #[arg(long, env = "DONUT_INPUT_LEAD_FRAMES", default_value_t = 8)]
    pub input_lead_frames: u64,
    /// The least input lead in frames. The lead used is measured: the
    /// slowest of the last 8 changes' commit → broadcast of their first
    /// frames, plus a frame, between this floor and `--input-lead-frames`
    /// (the ceiling, used until a change has been measured). Equal to the
    /// ceiling, the lead is fixed.
    #[arg(long, env = "DONUT_INPUT_LEAD_MIN_FRAMES", default_value_t = 2)]
    pub input_lead_min_frames: u64,
    /// Least milliseconds between two scene changes. Inputs arriving sooner
    /// wait and fold into the next change, so a player spinning
    /// continuously costs at most 1000 / this many re-renders of the
    /// render-ahead a second; an input after a quiet spell still commits at
    /// once. 0 = a change at every broadcaster tick with input.
    #[arg(long, env = "DONUT_INPUT_COMMIT_MS", default_value_t = 100)]
    pub input_commit_ms: u64,
    /// Milliseconds the timeline stays *hot* after its last scene change:
    /// while hot, workers render and viewers are sent only up to the
    /// earliest frame the next change can land on (a few frames past the
    /// last change), so steering costs watchers and workers what changes,
    /// not the render-ahead; once quiet this long, the full `--lead-secs`
    /// and `--viewer-lead-secs` come back. 0 = never hot (every change
    /// supersedes the whole render-ahead).
    #[arg(long, env = "DONUT_INPUT_HOT_MS", default_value_t = 500)]
    pub input_hot_ms: u64,
    /// Inputs a second one viewer may send on average (a token bucket); a
    /// viewer over it is closed with 1008. A drag sends far fewer.
    #[arg(long, env = "DONUT_INPUT_RATE", default_value_t = 30.0)]
    pub input_rate: f64,
    /// Inputs one viewer may send at once before the rate applies.
    #[arg(long, env = "DONUT_INPUT_BURST", default_value_t = 30)]
    pub input_burst: u32,
    /// Most bytes one viewer may leave unread (written to its socket and not
    /// acknowledged) before it is closed, however it answers pings; also
    /// its socket's fixed send buffer (`SO_SNDBUF`). Paced streams only.
    #[arg(long, env = "DONUT_VIEWER_MAX_UNSENT", default_value_t = 256 * 1024)]
    pub viewer_max_unsent: usize,
    /// Verification policy for worker results.
    #[arg(long, env = "DONUT_VERIFY", value_enum, default_value_t = VerifyPolicy::Full)]
    pub verify: VerifyPolicy,
    /// Under `quorum`, milliseconds a first vote waits for a worker of
    /// another address before the server re-renders it to settle it.
    #[arg(long, env = "DONUT_QUORUM_WAIT_MS", default_value_t = 1000)]
    pub quorum_wait_ms: u64,
    /// Lowest fraction of a batch's frames checked for a long-honest worker
    /// under `sample` (at least one frame of every batch is always checked).
    #[arg(long, env = "DONUT_SAMPLE_FLOOR", default_value_t = 0.1)]
    pub sample_floor: f64,
    /// Consecutive clean batches after which a worker's checking rate has
    /// decayed from 1 to the floor under `sample`.
    #[arg(long, env = "DONUT_SAMPLE_TRUST_BATCHES", default_value_t = 20)]
    pub sample_trust_batches: u32,
    /// Strikes (failed checks or protocol violations) an address may earn
    /// before it is banned; they survive reconnects.
    #[arg(long, env = "DONUT_MAX_STRIKES", default_value_t = 3)]
    pub max_strikes: u32,
    /// Seconds an address's first ban lasts; each later one doubles, up to
    /// `--max-ban-secs`. 0 disables bans.
    #[arg(long, env = "DONUT_BAN_SECS", default_value_t = 60)]
    pub ban_secs: u64,
    /// Longest ban in seconds.
    #[arg(long, env = "DONUT_MAX_BAN_SECS", default_value_t = 86_400)]
    pub max_ban_secs: u64,
    /// What one reputation record (strikes, trust, bans, the per-address
    /// cap) covers: the exact address, or for IPv6 its /64.
    #[arg(long, env = "DONUT_BAN_SCOPE", value_enum, default_value_t = BanScope::Address)]
    pub ban_scope: BanScope,
    /// Misses a worker or its address may run up before the worker is
    /// closed: a task dropped unanswered after a second of silence, counted
    /// once a second (each quarters its next task).
    #[arg(long, env = "DONUT_MAX_MISSES", default_value_t = 3)]
    pub max_misses: u32,
    /// Largest share of the render-ahead window one address may hold in
    /// flight (it may always hold one task).
    #[arg(long, env = "DONUT_ADDR_SHARE", default_value_t = 0.5)]
    pub addr_share: f64,
    /// Origins whose pages may open the WebSockets besides the server's
    /// own (`scheme://host[:port]`, comma-separated), or `*` for any page
    /// anywhere. Handshakes without `Origin` (native clients) are always
    /// let through; others from elsewhere get 403.
    #[arg(long, env = "DONUT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose forwarded client address is believed: CIDR
    /// networks or addresses, comma-separated (`127.0.0.1,10.0.0.0/8`).
    /// Only a TCP peer inside one of them has its `--forwarded-header`
    /// read; with none (the default) the header is never read.
    #[arg(
        long,
        env = "DONUT_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = crate::edge::client_addr::parse_proxy
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write the client's address into.
    #[arg(
        long,
        env = "DONUT_FORWARDED_HEADER",
        value_enum,
        default_value_t = ForwardedHeader::XForwardedFor
    )]
    pub forwarded_header: ForwardedHeader,
    /// Join a cluster of nodes sharing one timeline and one pool of work
    /// through this Redis (`redis://HOST:PORT`, see [`crate::cluster`]), or
    /// through the primary Redis Sentinels name, followed across failovers
    /// (`redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`).
    /// Absent: a single node, exactly as without Redis.
    #[arg(long, env = "DONUT_CLUSTER", value_parser = crate::cluster::parse_redis_url)]
    pub cluster: Option<String>,
    /// Prefix of every Redis key the cluster uses, so several clusters (or
    /// test runs) can share one Redis.
    #[arg(long, env = "DONUT_CLUSTER_PREFIX", default_value = "dd:")]
    pub cluster_prefix: String,
    /// This node's name in the cluster (letters, digits, `-`, `_`, `.`; at
    /// most 64). Default: 16 random hex digits, new at every start.
    #[arg(long, env = "DONUT_NODE_ID", default_value_t = crate::cluster::random_node_id(), hide_default_value = true)]
    pub node_id: String,
    /// Milliseconds the leader's lease lasts without a renewal (renewed
    /// every third of it): how long a dead leader is waited for.
    #[arg(long, env = "DONUT_LEADER_LEASE_MS", default_value_t = 2000)]
    pub leader_lease_ms: u64,
    /// The peer relay: viewers that allow it relay the broadcast to each
    /// other over WebRTC (`off`, `auto`: from `--p2p-min-viewers`, `on`).
    #[arg(long, env = "DONUT_P2P", value_enum, default_value_t = P2pMode::Auto)]
    pub p2p: P2pMode,
    /// Networks viewers may show peers as ICE candidates (CIDRs or
    /// addresses, comma-separated); others (and mDNS names) are dropped.
    /// Empty: all.
    #[arg(
        long,
        env = "DONUT_P2P_CANDIDATES",
        value_delimiter = ',',
        value_parser = crate::p2p::filter::parse_net
    )]
    pub p2p_candidates: Vec<ipnet::IpNet>,
    /// ICE servers sent to relaying viewers (comma-separated `stun:` or
    /// `turn:` URLs). Empty: host candidates only.
    #[arg(long, env = "DONUT_P2P_ICE_SERVERS", default_value = "")]
    pub p2p_ice_servers: String,
    /// Children a relaying viewer starts with.
    #[arg(long, env = "DONUT_P2P_FANOUT", default_value_t = 3)]
    pub p2p_fanout: u32,
    /// Most children a relaying viewer earns by relaying well.
    #[arg(long, env = "DONUT_P2P_MAX_FANOUT", default_value_t = 6)]
    pub p2p_max_fanout: u32,
    /// Deepest relay chain (a server-fed viewer is at depth 1).
    #[arg(long, env = "DONUT_P2P_MAX_DEPTH", default_value_t = 3)]
    pub p2p_max_depth: u32,
    /// Under `--p2p auto`, relaying viewers needed before peers are used.
    #[arg(long, env = "DONUT_P2P_MIN_VIEWERS", default_value_t = 3)]
    pub p2p_min_viewers: usize,
    /// What a first-time visitor's page does about contributing: `ask`
    /// (no worker until they agree), `on` (a kiosk or demo), `off`
    /// (watch-only). A stored choice or `?contribute=` wins.
    #[arg(long, env = "DONUT_CONTRIBUTE_DEFAULT", value_enum, default_value_t = ContributeDefault::Ask)]
    pub contribute_default: ContributeDefault,
    /// Most a contributing tab's Web Worker may use, in percent of one CPU
    /// core (1..=100; a duty cycle); halved while the device's battery
    /// discharges, where the browser says so.
    #[arg(long, env = "DONUT_CONTRIBUTE_BUDGET", default_value_t = 25)]
    pub contribute_budget: u8,
}

impl ServeConfig {
    /// Whether the playback head is paced in real time.
    pub fn paced(&self) -> bool {
        self.fps > 0 && !self.no_pacing
    }

    /// Frames rendered ahead of playback.
    pub fn lead_frames(&self) -> u64 {
        if self.paced() {
            secs_to_frames(self.lead_secs, self.fps).max(1)
        } else {
            self.ring_capacity() as u64
        }
    }

    /// Frames sent to viewers ahead of playback.
    pub fn viewer_lead_frames(&self) -> u64 {
        if self.paced() {
            secs_to_frames(self.viewer_lead_secs, self.fps).clamp(1, self.lead_frames())
        } else {
            u64::MAX
        }
    }

    /// The ring capacity in frames, resolving the `0 = automatic` default.
    pub fn ring_capacity(&self) -> usize {
        if self.ring_frames > 0 {
            self.ring_frames
        } else if self.paced() {
            let lead = secs_to_frames(self.lead_secs, self.fps).max(1);
            usize::try_from(lead.saturating_mul(2))
                .unwrap_or(usize::MAX)
                .max(600)
        } else {
            65_536
        }
    }

    /// Checks the combination of values, with a message saying what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lead_secs.is_finite() && self.lead_secs > 0.0) {
            return Err("--lead-secs must be a positive number".into());
        }
        if !(self.viewer_lead_secs.is_finite() && self.viewer_lead_secs > 0.0) {
            return Err("--viewer-lead-secs must be a positive number".into());
        }
        if !(0.0..=1.0).contains(&self.sample_floor) {
            return Err("--sample-floor must be within 0..=1".into());
        }
        if self.batch_frames == 0 || self.batch_frames > donut_shared::wire::MAX_BATCH_FRAMES {
            return Err(format!(
                "--batch-frames must be within 1..={}",
                donut_shared::wire::MAX_BATCH_FRAMES
            ));
        }
        if self.first_task_frames == 0
            || self.first_task_frames > donut_shared::wire::MAX_TASK_FRAMES
        {
            return Err(format!(
                "--first-task-frames must be within 1..={}",
                donut_shared::wire::MAX_TASK_FRAMES
            ));
        }
        if !(self.input_rate.is_finite() && self.input_rate >= 0.0) {
            return Err("--input-rate must be a number of inputs a second, 0 or more".into());
        }
        if self.viewer_queue == 0 {
            return Err("--viewer-queue must be at least 1".into());
        }
        if self.viewer_max_unsent < 4096 {
            return Err("--viewer-max-unsent must be at least 4096 bytes".into());
        }
        if self.max_strikes == 0 {
            return Err("--max-strikes must be at least 1".into());
        }
        if self.max_misses == 0 {
            return Err("--max-misses must be at least 1".into());
        }
        if !(self.addr_share > 0.0 && self.addr_share <= 1.0) {
            return Err("--addr-share must be within (0, 1]".into());
        }
        crate::edge::origin::OriginPolicy::new(&self.allowed_origins)?;
        crate::cluster::check_node_id(&self.node_id)?;
        if self.leader_lease_ms < 300 {
            return Err("--leader-lease-ms must be at least 300".into());
        }
        self.validate_p2p()?;
        if !(1..=100).contains(&self.contribute_budget) {
            return Err("--contribute-budget must be within 1..=100 (% of one core)".into());
        }
        let cap = self.ring_capacity() as u64;
        if self.paced() && self.lead_frames() > cap {
            return Err(format!(
                "--ring-frames {cap} cannot hold --lead-secs {} at {} fps ({} frames)",
                self.lead_secs,
                self.fps,
                self.lead_frames()
            ));
        }
        Ok(())
    }

    fn validate_p2p(&self) -> Result<(), String> {
        let max_ice = donut_shared::wire::p2p::MAX_ICE_TEXT;
        if self.p2p_ice_servers.len() > max_ice {
            return Err(format!("--p2p-ice-servers must be at most {max_ice} bytes"));
        }
        if self.p2p_fanout == 0 {
            return Err("--p2p-fanout must be at least 1".into());
        }
        if self.p2p_max_fanout < self.p2p_fanout {
            return Err("--p2p-max-fanout must be at least --p2p-fanout".into());
        }
        if self.p2p_max_depth < 2 {
            return Err("--p2p-max-depth must be at least 2".into());
        }
        Ok(())
    }

    /// A configuration for tests and benchmarks: listen on an ephemeral
    /// loopback port, everything else at its default.
    pub fn for_tests() -> Self {
        match defaults_only(&["serve", "--listen", "127.0.0.1:0"]) {
            Some(Command::Serve(c)) => c,
            _ => unreachable!("the literal arguments above always parse as `serve`"),
        }
    }
}

fn secs_to_frames(secs: f64, fps: u16) -> u64 {
    // Saturating float-to-int cast: absurd values clamp instead of wrapping.
    (secs * f64::from(fps)).ceil() as u64
}

/// Configuration of `donut work`.
#[derive(Args, Debug, Clone)]
pub struct WorkConfig {
    /// The server to work for: `ws://host:port` (the `/ws/worker` path is
    /// added when missing).
    #[arg(long, env = "DONUT_SERVER", default_value = "ws://127.0.0.1:8080")]
    pub server: String,
    /// Render threads; 0 uses every available core.
    #[arg(long, env = "DONUT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Tasks kept outstanding at once; 0 picks twice the thread count.
    #[arg(long, env = "DONUT_SLOTS", default_value_t = 0)]
    pub slots: u16,
    /// Longest wait between reconnection attempts, in milliseconds.
    #[arg(long, env = "DONUT_MAX_BACKOFF_MS", default_value_t = 10_000)]
    pub max_backoff_ms: u64,
    /// Stop after this many connection attempts in a row fail; 0 = never.
    #[arg(long, env = "DONUT_MAX_ATTEMPTS", default_value_t = 0)]
    pub max_attempts: u32,
    /// Local IP address to connect from (a multi-homed host choosing its
    /// source; the tests use 127.0.0.x to be several addresses).
    #[arg(long, env = "DONUT_LOCAL_ADDR")]
    pub local_addr: Option<std::net::IpAddr>,
    /// Fraction of finished tasks silently dropped instead of returned. For
    /// churn benchmarks and tests only.
    #[arg(long, env = "DONUT_DROP_FRACTION", default_value_t = 0.0, hide = true)]
    pub drop_fraction: f64,
}

impl WorkConfig {
    /// A worker configuration for `server` (a `ws://` URL) with defaults.
    pub fn for_server(server: &str) -> Self {
        match defaults_only(&["work", "--server", server]) {
            Some(Command::Work(c)) => c,
            _ => unreachable!("the literal arguments above always parse as `work`"),
        }
    }
}

/// Parses `args` (after the program name) with every `DONUT_*` environment
/// variable ignored, so that the environment of whoever runs the tests or
/// benchmarks cannot change their configuration behind their back.
fn defaults_only(args: &[&str]) -> Option<Command> {
    use clap::{CommandFactory, FromArgMatches};
    let without_env = |c: clap::Command| c.mut_args(|a| a.env(None));
    let cmd = without_env(Cli::command()).mut_subcommands(without_env);
    let matches = cmd.get_matches_from(std::iter::once("donut").chain(args.iter().copied()));
    Cli::from_arg_matches(&matches).ok()?.command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_configurations_ignore_the_environment() {
        // SAFETY: no other test in this binary reads or writes the
        // environment, and this variable is only read by clap.
        unsafe { std::env::set_var("DONUT_CODEC", "nibble") };
        unsafe { std::env::set_var("DONUT_THREADS", "7") };
        let serve = ServeConfig::for_tests();
        let work = WorkConfig::for_server("ws://127.0.0.1:1");
        // The real command line still honours them.
        let from_env = Cli::parse_from(["donut", "serve"]);
        unsafe { std::env::remove_var("DONUT_CODEC") };
        unsafe { std::env::remove_var("DONUT_THREADS") };
        assert_eq!(serve.codec, Codec::Primed);
        assert_eq!(work.threads, 0);
        assert_eq!(work.server, "ws://127.0.0.1:1");
        match from_env.command {
            Some(Command::Serve(c)) => assert_eq!(c.codec, Codec::Nibble),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn p2p_flags_parse_and_validate() {
        let parse = |args: &[&str]| match defaults_only(
            &[&["serve", "--listen", "127.0.0.1:0"], args].concat(),
        ) {
            Some(Command::Serve(c)) => c,
            other => panic!("parsed as {other:?}"),
        };
        let c = parse(&[]);
        assert_eq!(c.p2p, P2pMode::Auto);
        assert!(c.p2p_candidates.is_empty() && c.p2p_ice_servers.is_empty());
        assert_eq!(c.tree_config(), crate::p2p::tree::TreeConfig::default());
        let c = parse(&["--p2p", "on", "--p2p-candidates", "127.0.0.1/32,10.0.0.0/8"]);
        assert_eq!(c.p2p, P2pMode::On);
        assert_eq!(c.p2p_candidates.len(), 2);
        assert!(c.validate().is_ok());
        let long = "x".repeat(donut_shared::wire::p2p::MAX_ICE_TEXT + 1);
        for (bad, what) in [
            (
                vec!["--p2p-ice-servers", long.as_str()],
                "--p2p-ice-servers",
            ),
            (vec!["--p2p-fanout", "0"], "--p2p-fanout"),
            (
                vec!["--p2p-fanout", "4", "--p2p-max-fanout", "3"],
                "--p2p-max-fanout",
            ),
            (vec!["--p2p-max-depth", "1"], "--p2p-max-depth"),
        ] {
            let err = parse(&bad).validate().expect_err(what);
            assert!(err.contains(what), "{err}");
        }
    }

    #[test]
    fn contribute_flags_parse_and_validate() {
        let parse = |args: &[&str]| match defaults_only(
            &[&["serve", "--listen", "127.0.0.1:0"], args].concat(),
        ) {
            Some(Command::Serve(c)) => c,
            other => panic!("parsed as {other:?}"),
        };
        let c = parse(&[]);
        assert_eq!(c.contribute_default, ContributeDefault::Ask);
        assert_eq!(c.contribute_budget, 25);
        for (flag, want) in [
            ("ask", ContributeDefault::Ask),
            ("on", ContributeDefault::On),
            ("off", ContributeDefault::Off),
        ] {
            let c = parse(&["--contribute-default", flag]);
            assert_eq!(c.contribute_default, want);
            assert_eq!(want.name(), flag);
        }
        assert!(parse(&["--contribute-budget", "100"]).validate().is_ok());
        for bad in ["0", "101"] {
            let err = parse(&["--contribute-budget", bad])
                .validate()
                .expect_err(bad);
            assert!(err.contains("--contribute-budget"), "{err}");
        }
    }
}
