//! A network namespace joined to the test's own by a veth pair, made by the
//! test and removed when dropped: how a headless Firefox takes part in the
//! peer relay on one machine.
//!
//! Firefox's ICE agent gathers no loopback candidate (no preference turns
//! it on for a page that holds no media permission: tried
//! `media.peerconnection.ice.loopback`, `…force_interface`,
//! `…default_address_only`), only host candidates on the interface of its
//! default route. Inside this namespace that interface is the veth end
//! `inner` (a /30 with `host` on the other end, in the test's namespace),
//! so Firefox's candidates carry `inner`, the Chromium pages' carry `host`
//! among their others, and every packet between them crosses the pair and
//! nothing else. A server listening on `host` is reachable from both.
//!
//! Needs root (`CAP_NET_ADMIN`) and iproute2's `ip`; a test that needs one
//! fails when either is missing.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The namespace and the veth pair; both removed on drop.
pub struct Netns {
    /// The namespace's name (`ip netns`).
    pub name: String,
    /// The veth end in the test's namespace.
    host_if: String,
    /// Its address.
    pub host: Ipv4Addr,
    /// The veth end's address inside the namespace.
    pub inner: Ipv4Addr,
}

impl Netns {
    /// A namespace `donut-<pid>` with a veth pair on a /30 of 10.213/16
    /// picked from the process id, its end up with a default route through
    /// `host`, and its loopback up.
    pub fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let sub = (pid % 16_000) * 4;
        let (a, b) = (((sub >> 8) & 0xff) as u8, (sub & 0xff) as u8);
        let ns = Self {
            name: format!("donut-{pid}"),
            host_if: format!("dnt{}h", pid % 100_000),
            host: Ipv4Addr::new(10, 213, a, b + 1),
            inner: Ipv4Addr::new(10, 213, a, b + 2),
        };
        let inner_if = format!("dnt{}n", pid % 100_000);
        let (host, inner) = (format!("{}/30", ns.host), format!("{}/30", ns.inner));
        let gateway = ns.host.to_string();
        let name = ns.name.as_str();
        ip(&["netns", "add", name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
        ])?;
        ip(&["link", "set", &inner_if, "netns", name])?;
        ip(&["addr", "add", &host, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&["-n", name, "addr", "add", &inner, "dev", &inner_if])?;
        ip(&["-n", name, "link", "set", &inner_if, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&["-n", name, "route", "add", "default", "via", &gateway])?;
        Ok(ns)
    }

    /// `program` to be run inside the namespace (`ip netns exec`, which
    /// execs it: the child's id is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// The /30 both ends are on, for `--p2p-candidates`.
    pub fn net(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.host) - 1))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair;
        // the host end is deleted too in case the pair was half made.
        let _ = quiet(&["netns", "del", &self.name]);
        let _ = quiet(&["link", "del", &self.host_if]);
    }
}

/// Runs `ip args…`; an error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run ip (iproute2, needs root): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {} (needs root and iproute2)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip args…`, ignoring what it says.
fn quiet(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
