//! Every component's config, derived from the flags in one place.
//!
//! Each domain owns its config type (and its enums: [`VerifyPolicy`] in
//! `trust`, `P2pMode` in `p2p`) and never sees [`ServeConfig`]; this file
//! turns `donut serve`'s flags into them, as centrifuge's engines each take
//! their own `…Config`. The duration clamps are written once, here: a
//! period or timeout flag that drives a timer and is 0 means the shortest
//! one (1 ms or 1 s), never a timer that spins. (`--ban-secs 0` is not a
//! period: it disables bans. The timeline's `--input-commit-ms` and
//! `--input-hot-ms` are not timers: 0 means "commit at once" and "never
//! hot"; the cluster's lease is refused at 0 by `ServeConfig::validate`.)
//!
//! [`VerifyPolicy`]: crate::trust::verifier::VerifyPolicy

use std::time::Duration;

use super::ServeConfig;
use crate::cluster::ClusterConfig;
use crate::conn::connection::ConnLimits;
use crate::conn::fleet::Caps;
use crate::p2p::hub::HubConfig;
use crate::p2p::tree::TreeConfig;
use crate::stream::core::CoreConfig;
use crate::stream::scheduler::SchedulerConfig;
use crate::trust::reputation::ReputationConfig;
use crate::trust::verifier::Verifier;

/// `ms` milliseconds, at least one.
fn at_least_ms(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

/// `secs` seconds, at least one.
fn at_least_secs(secs: u64) -> Duration {
    Duration::from_secs(secs.max(1))
}

impl ServeConfig {
    /// Frames a second the stream plays at (0: unpaced, as fast as the
    /// fleet renders; see [`ServeConfig::paced`]).
    pub fn stream_fps(&self) -> u16 {
        if self.paced() { self.fps } else { 0 }
    }

    /// The stream's core: pacing, the ring, the timeline, the scheduler.
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            fps: self.stream_fps(),
            lead_frames: self.lead_frames(),
            viewer_lead_frames: self.viewer_lead_frames(),
            ring_frames: self.ring_capacity(),
            start_frame: self.start_frame,
            batch_frames: self.batch_frames,
            codec: self.codec,
            input_lead_frames: self.input_lead_frames,
            input_lead_min_frames: self.input_lead_min_frames,
            input_commit_interval: Duration::from_millis(self.input_commit_ms),
            hot_quiet: Duration::from_millis(self.input_hot_ms),
            scheduler: self.scheduler_config(),
        }
    }

    /// Task sizing, first tasks, and the share one address may hold.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            task_target: at_least_ms(self.task_ms),
            first_task_frames: self.first_task_frames,
            first_task_timeout: at_least_ms(self.first_task_timeout_ms),
            min_new_frames: u32::try_from(self.lead_frames() / 4)
                .unwrap_or(u32::MAX)
                .clamp(1, donut_shared::wire::MAX_TASK_FRAMES),
            addr_cap_frames: (self.lead_frames() as f64 * self.addr_share).ceil() as u64,
            ..SchedulerConfig::default()
        }
    }

    /// Strikes, bans and trust by address.
    pub fn reputation_config(&self) -> ReputationConfig {
        ReputationConfig {
            scope: self.ban_scope,
            max_strikes: self.max_strikes,
            ban: Duration::from_secs(self.ban_secs),
            max_ban: Duration::from_secs(self.max_ban_secs.max(self.ban_secs)),
            max_trust: self.sample_trust_batches,
        }
    }

    /// The result checker (`--verify`, `--sample-*`).
    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.verify, self.sample_floor, self.sample_trust_batches)
    }

    /// How long a lone quorum vote waits before the server settles it.
    pub fn quorum_wait(&self) -> Duration {
        at_least_ms(self.quorum_wait_ms)
    }

    /// The cluster settings, or `None` for a single node.
    pub fn cluster_config(&self) -> Option<ClusterConfig> {
        Some(ClusterConfig {
            url: self.cluster.clone()?,
            prefix: self.cluster_prefix.clone(),
            node_id: self.node_id.clone(),
            lease: Duration::from_millis(self.leader_lease_ms),
        })
    }

    /// The relay tree's limits.
    pub fn tree_config(&self) -> TreeConfig {
        TreeConfig {
            fanout: self.p2p_fanout,
            max_fanout: self.p2p_max_fanout,
            max_depth: self.p2p_max_depth,
            min_viewers: self.p2p_min_viewers,
        }
    }

    /// The peer relay's hub (`--p2p*`).
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            mode: self.p2p,
            ice_servers: self.p2p_ice_servers.clone(),
            candidates: self.p2p_candidates.clone(),
            tree: self.tree_config(),
        }
    }

    /// The connection caps (after [`crate::edge::fds::fit_caps`]).
    pub fn caps(&self) -> Caps {
        Caps {
            workers: self.max_workers,
            viewers: self.max_viewers,
            per_ip: self.max_per_ip,
        }
    }

    /// Every connection's keep-alive and send timings.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            ping: at_least_secs(self.ping_secs),
            idle: at_least_secs(self.idle_secs),
            send_limit: at_least_secs(self.send_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_flags_parse_and_default_to_a_single_node() {
        assert_eq!(ServeConfig::for_tests().cluster_config(), None);
        let mut cfg = ServeConfig::for_tests();
        cfg.cluster =
            Some(crate::cluster::parse_redis_url("redis://127.0.0.1:6390").expect("a valid URL"));
        let cluster = cfg.cluster_config().expect("cluster settings");
        assert_eq!(cluster.prefix, "dd:");
        assert_eq!(cluster.lease, Duration::from_millis(2000));
        assert!(cfg.validate().is_ok());
        assert!(crate::cluster::parse_redis_url("http://127.0.0.1").is_err());
        assert!(
            crate::cluster::parse_redis_url(
                "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/donut"
            )
            .is_ok()
        );
        assert!(crate::cluster::parse_redis_url("redis+sentinel://127.0.0.1:26379").is_err());
    }
}
