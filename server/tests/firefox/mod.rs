//! Headless Firefox behind its own geckodriver, for the browser tests
//! (`tests/browser.rs`): the same W3C WebDriver client (fantoccini) as
//! Chromium, so the tests drive both engines alike. Debian's `firefox-esr`
//! and `geckodriver` from crates.io (`./build.sh test` installs both).
//!
//! Each session gets a fresh profile directory with the network services a
//! browser starts on its own switched off, so a test talks to the server
//! under test and nothing else.
#![allow(dead_code)] // each user takes a part

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::chromium::{
    Proc, Session, env_path, free_port, open_session, open_session_at, start_driver, wait_for_addr,
};

pub mod netns;
use netns::Netns;

/// The Firefox binary: `DONUT_FIREFOX`, or Debian's `firefox-esr`.
pub fn firefox() -> PathBuf {
    env_path("DONUT_FIREFOX", "/usr/bin/firefox-esr")
}

/// The geckodriver binary: `DONUT_GECKODRIVER`, or the one `cargo install`
/// put in `~/.cargo/bin`, or the first on `PATH`.
pub fn geckodriver() -> PathBuf {
    if let Some(p) = std::env::var_os("DONUT_GECKODRIVER") {
        return PathBuf::from(p);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut candidates: Vec<PathBuf> = cargo_home.into_iter().map(|h| h.join("bin")).collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for dir in candidates {
        let c = dir.join("geckodriver");
        if c.is_file() {
            return c;
        }
    }
    PathBuf::from("geckodriver")
}

/// Preferences that keep Firefox from reaching out on its own (updates,
/// telemetry, safe browsing lists, captive portal and connectivity checks,
/// remote settings), plus `extra`.
fn prefs(extra: &[(&str, Value)]) -> Map<String, Value> {
    let quiet: [(&str, Value); 18] = [
        ("app.update.auto", json!(false)),
        ("app.update.enabled", json!(false)),
        ("browser.shell.checkDefaultBrowser", json!(false)),
        ("browser.startup.homepage_override.mstone", json!("ignore")),
        ("browser.safebrowsing.malware.enabled", json!(false)),
        ("browser.safebrowsing.phishing.enabled", json!(false)),
        ("browser.safebrowsing.downloads.enabled", json!(false)),
        ("browser.safebrowsing.update.enabled", json!(false)),
        ("datareporting.policy.dataSubmissionEnabled", json!(false)),
        ("datareporting.healthreport.uploadEnabled", json!(false)),
        ("toolkit.telemetry.enabled", json!(false)),
        ("network.captive-portal-service.enabled", json!(false)),
        ("network.connectivity-service.enabled", json!(false)),
        ("extensions.update.enabled", json!(false)),
        ("extensions.getAddons.cache.enabled", json!(false)),
        ("media.gmp-manager.updateEnabled", json!(false)),
        ("browser.search.update", json!(false)),
        ("services.settings.server", json!("http://127.0.0.1:9/")),
    ];
    quiet
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Starts geckodriver on a free port and a headless Firefox with a fresh
/// profile, a 1280x720 window and the quiet preferences plus `extra_prefs`.
pub async fn launch(extra_prefs: &[(&str, Value)], limit: Duration) -> Result<Session, String> {
    let (driver, port) = start_driver(&geckodriver(), limit)?;
    let profile = fresh_profile(port)?;
    open_session(
        caps(&profile, extra_prefs),
        (driver, port),
        profile,
        "Firefox",
    )
    .await
}

/// [`launch`] inside the network namespace `ns`: geckodriver (and so the
/// Firefox it starts) runs there, listening on the namespace's end of the
/// veth pair, so the browser's only non-loopback interface, the one its
/// ICE agent gathers host candidates on, is that end.
pub async fn launch_in(
    ns: &Netns,
    extra_prefs: &[(&str, Value)],
    limit: Duration,
) -> Result<Session, String> {
    let port = free_port()?;
    let gecko = geckodriver();
    let driver = Proc(
        ns.command(&gecko)
            .arg(format!("--host={}", ns.inner))
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("start {} in {}: {e}", gecko.display(), ns.name))?,
    );
    let addr = std::net::SocketAddr::from((ns.inner, port));
    wait_for_addr(addr, "geckodriver in the namespace", limit)?;
    let profile = fresh_profile(port)?;
    open_session_at(
        caps(&profile, extra_prefs),
        (driver, addr),
        profile,
        "Firefox",
    )
    .await
}

/// A fresh, empty profile directory named after this process and `port`.
fn fresh_profile(port: u16) -> Result<PathBuf, String> {
    let profile = std::env::temp_dir().join(format!("donut-firefox-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).map_err(|e| format!("create {}: {e}", profile.display()))?;
    Ok(profile)
}

/// The session's capabilities: headless, 1280x720, `profile`, the quiet
/// preferences plus `extra_prefs`.
fn caps(profile: &std::path::Path, extra_prefs: &[(&str, Value)]) -> Value {
    json!({
        "browserName": "firefox",
        "moz:firefoxOptions": {
            "binary": firefox().display().to_string(),
            "args": [
                "-headless",
                "--window-size=1280,720",
                "-profile",
                profile.display().to_string(),
            ],
            "prefs": prefs(extra_prefs),
        },
    })
}
