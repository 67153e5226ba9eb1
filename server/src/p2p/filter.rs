//! The ICE candidate filter (`--p2p-candidates`): which addresses a viewer
//! may show its peers.
//!
//! A candidate carries an address of the viewer's (a LAN address, its
//! public one). An operator who runs the relay inside one network lists its
//! CIDRs, and every other candidate is dropped at the server, whether it
//! came trickled in a `Signal { Candidate }` or inside an SDP offer or
//! answer (`a=candidate:` lines). An mDNS `.local` name is not an address
//! inside any network, so it is dropped too. Without CIDRs everything
//! passes. The end-of-candidates signal (empty text) always passes.

use std::net::IpAddr;

use donut_shared::wire::p2p::candidate_address;
use ipnet::IpNet;

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct CandidateFilter {
    /// Allowed networks; empty: all.
    nets: Vec<IpNet>,
}

impl CandidateFilter {
    /// A filter allowing `nets` (empty: everything).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether the filter lets everything through.
    pub fn is_open(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether a candidate line (`candidate:…`, with or without `a=`) may
    /// go to a peer.
    pub fn allows(&self, line: &str) -> bool {
        if self.is_open() {
            return true;
        }
        candidate_address(line)
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| self.nets.iter().any(|n| n.contains(&ip)))
    }

    /// A trickled candidate's text, if it may pass (an empty text ends the
    /// candidates and always passes).
    pub fn allows_candidate(&self, text: &str) -> bool {
        text.is_empty() || self.allows(text)
    }

    /// `sdp` without the `a=candidate:` lines the filter refuses, and how
    /// many it took out; everything else byte-identical (line ends kept).
    pub fn strip_sdp(&self, sdp: &str) -> (String, usize) {
        let mut out = String::with_capacity(sdp.len());
        let mut removed = 0;
        for line in sdp.split_inclusive('\n') {
            let bare = line.trim_end_matches(['\r', '\n']);
            if bare.starts_with("a=candidate:") && !self.allows(bare) {
                removed += 1;
            } else {
                out.push_str(line);
            }
        }
        (out, removed)
    }
}

/// Parses `--p2p-candidates` (one CIDR or address).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR network or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> CandidateFilter {
        CandidateFilter::new(vec![
            parse_net("127.0.0.1/32").expect("cidr"),
            parse_net("10.0.0.0/8").expect("cidr"),
        ])
    }

    #[test]
    fn candidates_outside_the_networks_and_mdns_names_are_refused() {
        let f = local();
        assert!(f.allows("candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host"));
        assert!(f.allows("a=candidate:1 1 udp 2122260223 10.1.2.3 5000 typ host"));
        assert!(!f.allows("candidate:1 1 udp 2122260223 192.0.2.7 5000 typ host"));
        assert!(!f.allows("candidate:1 1 udp 2122260223 0b7a.local 5000 typ host"));
        assert!(!f.allows("garbage"));
        assert!(f.allows_candidate(""));
        assert!(CandidateFilter::default().allows("garbage"));
    }

    #[test]
    fn sdp_keeps_everything_but_refused_candidate_lines() {
        let sdp = "v=0\r\na=candidate:1 1 udp 1 192.0.2.7 5000 typ host\r\n\
                   a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\na=mid:0\r\n";
        let (out, removed) = local().strip_sdp(sdp);
        assert_eq!(removed, 1);
        assert_eq!(
            out,
            "v=0\r\na=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\na=mid:0\r\n"
        );
        assert_eq!(
            CandidateFilter::default().strip_sdp(sdp),
            (sdp.to_owned(), 0)
        );
    }

    #[test]
    fn networks_parse_as_cidrs_or_addresses() {
        assert_eq!(
            parse_net("127.0.0.1").expect("address").to_string(),
            "127.0.0.1/32"
        );
        assert!(parse_net("10.0.0.0/8").is_ok());
        assert!(parse_net("nope").is_err());
    }
}
