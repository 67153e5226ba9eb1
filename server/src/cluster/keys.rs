//! The names of the cluster's Redis keys, in one place (the table is in the
//! [module docs](super)).
//!
//! Every key starts with the configured prefix, so several clusters, or
//! several test runs, share one Redis without seeing each other.

use crate::trust::reputation::AddrKey;

/// Builds the cluster's key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`dd:` by default).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}leader`: the lease, `<node>:<term>`.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// `{p}term`: the fencing epoch counter.
    pub fn term(&self) -> String {
        format!("{}term", self.prefix)
    }

    /// `{p}timeline`: the stream of committed batches.
    pub fn timeline(&self) -> String {
        format!("{}timeline", self.prefix)
    }

    /// `{p}node:<id>`: one node's heartbeat hash.
    pub fn node(&self, id: &str) -> String {
        format!("{}node:{id}", self.prefix)
    }

    /// `{p}nodes`: the sorted set of node ids by expiry.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// `{p}up:<term>`: what follower nodes send the leader of `term`
    /// (tunnelled workers' messages, viewers' pushes).
    pub fn up(&self, term: u64) -> String {
        format!("{}up:{term}", self.prefix)
    }

    /// `{p}down:<id>`: what the leader sends node `id`'s tunnelled workers.
    pub fn down(&self, id: &str) -> String {
        format!("{}down:{id}", self.prefix)
    }

    /// `{p}inputs`: the cluster's input log, every viewer's push
    /// ([`inputs`](super::inputs)).
    pub fn inputs(&self) -> String {
        format!("{}inputs", self.prefix)
    }

    /// `{p}push:<once>`: the once-only key of one push (`<node>:<nonce>:<seq>`),
    /// so a retried append stores it at most once.
    pub fn push_once(&self, once: &str) -> String {
        format!("{}push:{once}", self.prefix)
    }

    /// `{p}ban:<addr>`: a cluster-wide ban of one address key (its
    /// `Display` form, e.g. `203.0.113.7` or `2001:db8::/64`).
    pub fn ban(&self, addr: &AddrKey) -> String {
        format!("{}ban:{addr}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::trust::reputation::BanScope;

    #[test]
    fn ban_keys_use_the_stable_address_form() {
        // Changing these strings orphans every ban in a running cluster.
        let keys = Keys::new("dd:");
        let v4 = AddrKey::new(IpAddr::from([203, 0, 113, 7]), BanScope::Ipv6Slash64);
        assert_eq!(keys.ban(&v4), "dd:ban:203.0.113.7");
        let v6: IpAddr = "2001:db8::1:2:3:4".parse().expect("an IPv6 literal");
        assert_eq!(
            keys.ban(&AddrKey::new(v6, BanScope::Ipv6Slash64)),
            "dd:ban:2001:db8::/64"
        );
        assert_eq!(
            keys.ban(&AddrKey::new(v6, BanScope::Address)),
            "dd:ban:2001:db8::1:2:3:4"
        );
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().expect("a mapped literal");
        assert_eq!(
            keys.ban(&AddrKey::new(mapped, BanScope::Address)),
            keys.ban(&v4)
        );
    }
}
