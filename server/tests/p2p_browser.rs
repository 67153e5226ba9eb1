//! The peer relay (issue 16) in real headless Chromium tabs: real WebRTC
//! data channels between tabs, over 127.0.0.1 only.
//!
//! Chromium gathers loopback host candidates only with
//! `--allow-loopback-in-peer-connection` and a granted media permission
//! (`--use-fake-ui-for-media-stream`); the pages use no ICE servers, and the
//! server passes on only 127.0.0.1 candidates (`--p2p-candidates`), so no
//! packet leaves the machine. Every test starts the real `donut` binary and
//! one native worker; the tabs only watch (`?contribute=0&steer=0`).
//!
//! What is checked: every frame any tab painted is the native render of its
//! frame (the stream is idle, so that is `render(frame)`), whoever relayed
//! it; most batches come over data channels and the server's egress falls;
//! a relay leaving, or relaying altered bytes, costs its children no frame.

mod chromium;
mod firefox;
mod pages;

use std::collections::BTreeMap;
use std::time::Duration;

use firefox::netns::Netns;
use pages::*;
use serde_json::Value;

/// The server's P2P flags for every test here: peers always, two children
/// per relay (so four tabs make a tree three deep), loopback candidates
/// only.
const P2P: [&str; 6] = [
    "--p2p",
    "on",
    "--p2p-fanout",
    "2",
    "--p2p-candidates",
    "127.0.0.1/32",
];

/// The page of a tab that only watches and relays.
const WATCH: &str = "/?contribute=0&steer=0&p2p=1";

/// Chromium with what two tabs need to connect over loopback.
async fn webrtc_browser() -> Browser {
    Browser::chromium(&[
        "--allow-loopback-in-peer-connection".to_owned(),
        "--use-fake-ui-for-media-stream".to_owned(),
    ])
    .await
}

/// Tab `tab`'s relay state (`DonutViewer::relayStats`).
async fn relay(browser: &Browser, tab: usize) -> Value {
    browser.focus(tab).await;
    browser.js("return window.donutViewer.relayStats()").await
}

/// The relay state of every tab.
async fn relays(browser: &Browser) -> Vec<Value> {
    let mut all = Vec::new();
    for tab in 0..browser.tabs.len() {
        all.push(relay(browser, tab).await);
    }
    all
}

/// Waits until `linked` tabs are fed over an open data channel.
async fn wait_linked(browser: &Browser, linked: usize) -> Vec<Value> {
    eventually(&format!("{linked} tabs fed by a peer"), async || {
        let all = relays(browser).await;
        let n = all.iter().filter(|r| num(r, "parentOpen") == 1).count();
        (n >= linked).then_some(all)
    })
    .await
}

/// Asserts that every frame tab `tab` painted is the idle donut's frame:
/// the native render, hashed as the page hashes it. Returns how many.
async fn check_painted(browser: &Browser, tab: usize) -> usize {
    browser.focus(tab).await;
    let log = browser.js("return window.donutViewer.painted()").await;
    let log = log.as_array().expect("painted() is an array");
    let mut text = [0u8; donut_shared::FRAME_LEN];
    for e in log {
        let frame = e[0].as_f64().expect("a frame number") as u64;
        let digest = e[2].as_str().expect("a digest");
        donut_shared::render(frame, &mut text);
        let want = format!("{:016x}", donut_shared::digest::fnv1a64(&text));
        assert_eq!(digest, want, "tab {tab} painted a wrong frame {frame}");
    }
    log.len()
}

/// Tab `tab`'s player counters.
async fn player(browser: &Browser, tab: usize) -> Value {
    browser.viewer_stats(tab).await
}

/// Opens `n` watching tabs and waits until each plays.
async fn open_tabs(browser: &mut Browser, server: &Server, n: usize) {
    for _ in 0..n {
        let tab = browser.open(&server.url(WATCH)).await;
        let f = eventually("a frame", async || browser.current_frame(tab).await).await;
        browser.wait_playing_past(tab, f, 10).await;
    }
}

/// Sums `key` over the relay states.
fn total(all: &[Value], key: &str) -> u64 {
    all.iter().map(|r| num(r, key)).sum()
}

/// Four watching tabs: a tree forms over real data channels, most batches
/// come from peers, every frame painted is right, and the server's egress
/// to viewers falls below a third of what four direct viewers cost.
#[test]
fn watching_tabs_take_most_batches_from_peers() {
    serial(async {
        let server = Server::start(&P2P);
        let _worker = server.native_worker();
        let mut browser = webrtc_browser().await;
        open_tabs(&mut browser, &server, 4).await;
        wait_linked(&browser, 3).await;

        let before = relays(&browser).await;
        let (sent0, offloaded0) = (
            server.stat("viewer_bytes_sent"),
            server.stat("p2p_batch_bytes_offloaded"),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = relays(&browser).await;
        let (sent, offloaded) = (
            server.stat("viewer_bytes_sent") - sent0,
            server.stat("p2p_batch_bytes_offloaded") - offloaded0,
        );
        let from_peer = total(&after, "batchesFromPeer") - total(&before, "batchesFromPeer");
        let from_server = total(&after, "batchesFromServer") - total(&before, "batchesFromServer");
        eprintln!(
            "10 s: {from_peer} batches from peers, {from_server} from the server; \
             server sent {sent} bytes to viewers, peers carried {offloaded}"
        );
        assert!(
            from_peer >= 2 * from_server,
            "most batches should come from peers: {from_peer} vs {from_server}: {after:?}"
        );
        // Four direct viewers would cost 4 × the batch bytes; the server
        // sent one tab's batches plus digests and telemetry.
        assert!(
            sent * 3 < offloaded + sent,
            "the server still sends most bytes: {sent} sent, {offloaded} carried by peers"
        );
        let mut painted = 0;
        for tab in 0..4 {
            painted += check_painted(&browser, tab).await;
            let p = player(&browser, tab).await;
            assert_eq!(num(&p, "gaps"), 0, "tab {tab} skipped frames: {p}");
        }
        assert!(painted > 400, "too few frames painted: {painted}");
        let stats = server.stats();
        assert_eq!(num(&stats, "p2p_digest_mismatches"), 0, "{stats}");
        assert_eq!(num(&stats, "protocol_errors"), 0, "{stats}");
        // The pages proved what peers delivered (issue 24): the offload
        // figure counts those proofs, none refused.
        assert!(num(&stats, "p2p_offload_permille") >= 300, "{stats}");
        assert_eq!(num(&stats, "p2p_proofs_refused"), 0, "{stats}");
        browser.quit().await;
    });
}

/// A relaying tab closes mid-stream: its children are moved at once (to
/// their backup or the server), fetch what it owed, and never skip a frame;
/// the tree heals.
#[test]
fn closing_a_relay_costs_its_children_no_frame() {
    serial(async {
        let server = Server::start(&P2P);
        let _worker = server.native_worker();
        let mut browser = webrtc_browser().await;
        open_tabs(&mut browser, &server, 4).await;
        let all = wait_linked(&browser, 3).await;
        // A relay fed by a peer (depth 2) with a child, else any relay.
        let ids: BTreeMap<u64, usize> = all
            .iter()
            .enumerate()
            .map(|(tab, r)| (num(r, "id"), tab))
            .collect();
        let relay_tab = all
            .iter()
            .position(|r| num(r, "children") > 0 && num(r, "parent") != 0)
            .or_else(|| all.iter().position(|r| num(r, "children") > 0))
            .expect("a tab relays");
        let relay_id = num(&all[relay_tab], "id");
        let children: Vec<usize> = all
            .iter()
            .filter(|r| num(r, "parent") == relay_id)
            .map(|r| ids[&num(r, "id")])
            .collect();
        assert!(
            !children.is_empty(),
            "relay {relay_id} has children: {all:?}"
        );
        eprintln!("closing tab {relay_tab} (viewer #{relay_id}), parent of tabs {children:?}");
        browser.close(relay_tab).await;
        // Tab indices after `relay_tab` shift down by one.
        let children: Vec<usize> = children
            .into_iter()
            .map(|t| if t > relay_tab { t - 1 } else { t })
            .collect();
        let missed: Vec<u64> = {
            let mut m = Vec::new();
            for &tab in &children {
                m.push(num(&player(&browser, tab).await, "misses"));
            }
            m
        };
        // The tree heals: every child has a new parent, linked or the server.
        eventually("the orphans to be moved", async || {
            let all = relays(&browser).await;
            children
                .iter()
                .all(|&t| {
                    let p = num(&all[t], "parent");
                    p != relay_id && (p == 0 || num(&all[t], "parentOpen") == 1)
                })
                .then_some(())
        })
        .await;
        for &tab in &children {
            let f = browser.current_frame(tab).await.unwrap_or(0);
            browser.wait_playing_past(tab, f, 120).await;
        }
        for (i, &tab) in children.iter().enumerate() {
            let p = player(&browser, tab).await;
            assert_eq!(num(&p, "gaps"), 0, "tab {tab} skipped frames: {p}");
            eprintln!(
                "orphan tab {tab}: {} misses across the move, relay {}",
                num(&p, "misses") - missed[i],
                relay(&browser, tab).await
            );
            check_painted(&browser, tab).await;
        }
        browser.quit().await;
    });
}

/// A hostile relay: tab 0 (fed by the server, relaying to others) alters
/// one byte of every batch it sends on its data channels. No tab plays a
/// wrong frame; its children report it, fetch the batches from the
/// server, and the server bars it from relaying.
#[test]
fn a_peer_relaying_altered_bytes_is_caught_and_dropped() {
    serial(async {
        let server = Server::start(&P2P);
        let _worker = server.native_worker();
        let mut browser = webrtc_browser().await;
        open_tabs(&mut browser, &server, 3).await;
        let all = wait_linked(&browser, 2).await;
        let hostile = all
            .iter()
            .position(|r| num(r, "children") > 0)
            .expect("a tab relays");
        let hostile_id = num(&all[hostile], "id");
        // The page's own code, subverted: every binary message sent on a
        // data channel has a payload byte flipped (the header stays valid,
        // so the batch still claims its frames).
        browser.focus(hostile).await;
        browser
            .js("const send = RTCDataChannel.prototype.send;
                 RTCDataChannel.prototype.send = function (data) {
                   const b = new Uint8Array(data.buffer ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data);
                   b[b.length - 1] ^= 0x55;
                   return send.call(this, b);
                 };
                 return true;")
            .await;
        eventually("the hostile relay to be reported and barred", async || {
            let stats = server.stats();
            let r = relay(&browser, hostile).await;
            (num(&stats, "p2p_digest_mismatches") >= 1 && num(&r, "children") == 0).then_some(())
        })
        .await;
        // Its former children play on, from someone else.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let all = relays(&browser).await;
        let mut reported = 0;
        for (tab, r) in all.iter().enumerate() {
            assert_ne!(
                num(r, "parent"),
                hostile_id,
                "tab {tab} still fed by the liar: {r}"
            );
            reported += num(r, "mismatches");
            let p = player(&browser, tab).await;
            assert_eq!(num(&p, "gaps"), 0, "tab {tab} skipped frames: {p}");
            check_painted(&browser, tab).await;
        }
        assert!(reported >= 1, "no tab saw a mismatch: {all:?}");
        browser.quit().await;
    });
}

/// `--p2p off`: a tab that asks to relay is served exactly as before: no
/// peer id, no parent, every batch from the server, nothing counted.
#[test]
fn with_p2p_off_tabs_are_served_as_before() {
    serial(async {
        let server = Server::start(&["--p2p", "off"]);
        let _worker = server.native_worker();
        let mut browser = webrtc_browser().await;
        open_tabs(&mut browser, &server, 2).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        for tab in 0..2 {
            let r = relay(&browser, tab).await;
            assert_eq!(num(&r, "id"), 0, "the server gave a peer id: {r}");
            assert_eq!(num(&r, "batchesFromPeer"), 0, "{r}");
            assert!(num(&r, "batchesFromServer") > 0, "{r}");
            check_painted(&browser, tab).await;
        }
        let stats = server.stats();
        assert_eq!(num(&stats, "p2p_batch_bytes_offloaded"), 0, "{stats}");
        assert_eq!(num(&stats, "protocol_errors"), 0, "{stats}");
        browser.quit().await;
    });
}

/// Four relaying tabs: every row of every tab's panel shows a figure
/// (none stays "–"), and the two relay rows say what the relay does.
#[test]
fn every_panel_row_of_every_relaying_tab_shows_a_figure() {
    serial(async {
        let server = Server::start(&P2P);
        let _worker = server.native_worker();
        let mut browser = webrtc_browser().await;
        open_tabs(&mut browser, &server, 4).await;
        wait_linked(&browser, 3).await;
        for tab in 0..4 {
            let rows = eventually(&format!("tab {tab}'s rows filled"), async || {
                let rows = browser.panel_rows(tab).await;
                let peers = rows
                    .iter()
                    .any(|(k, v)| k == "Peer relay" && v.contains("fed by peers"));
                let filled = rows
                    .iter()
                    .all(|(_, v)| !v.trim().is_empty() && v.trim() != "–");
                (filled && peers).then_some(rows)
            })
            .await;
            eprintln!("tab {tab}: {rows:?}");
            let relay = rows
                .iter()
                .find(|(k, _)| k == "This tab relays")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            assert!(
                relay.contains("fed by") && relay.contains("relaying to"),
                "tab {tab}: {rows:?}"
            );
        }
        browser.quit().await;
    });
}

/// The server under test listening on the veth end of a [`Netns`], where
/// Chromium (in the test's namespace) and Firefox (inside it) both reach
/// it; the relay flags make a chain (one child per relay, three deep, peers
/// from the second viewer on) and pass on only candidates on the pair.
struct ServerOnVeth {
    addr: std::net::SocketAddr,
    _proc: chromium::Proc,
}

impl ServerOnVeth {
    fn start(ns: &Netns) -> Self {
        let addr = std::net::SocketAddr::from((ns.host, free_port()));
        let net = ns.net();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["serve", "--listen", &addr.to_string(), "--verify", "full"])
            .args(["--p2p", "on", "--p2p-fanout", "1", "--p2p-max-fanout", "1"])
            .args(["--p2p-max-depth", "3", "--p2p-min-viewers", "0"])
            .args(["--p2p-candidates", &net])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the donut binary");
        let proc = chromium::Proc(child);
        chromium::wait_for_addr(addr, "the server", HANG).unwrap_or_else(|e| panic!("{e}"));
        Self { addr, _proc: proc }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn stats(&self) -> Value {
        let body =
            chromium::http_get_at(self.addr, "/api/stats", HANG).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&body).expect("/api/stats is JSON")
    }

    fn native_worker(&self) -> chromium::Proc {
        let server = format!("ws://{}", self.addr);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_donut"))
            .args(["work", "--server", &server, "--threads", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a native worker");
        chromium::Proc(child)
    }
}

/// Opens one watching tab on `url` in `browser` and waits until it plays.
async fn open_playing(browser: &mut Browser, url: &str) -> usize {
    let tab = browser.open(url).await;
    let f = eventually("a frame", async || browser.current_frame(tab).await).await;
    browser.wait_playing_past(tab, f, 10).await;
    tab
}

/// Cross-engine relay (issue 24): a Chromium page, a Firefox page and a
/// second Chromium page in one chain (one child per relay), so the Firefox
/// page is fed by a Chromium page and feeds the other. Firefox runs in a
/// network namespace of the test's own (see `firefox::netns`): its only
/// candidates are on the veth pair, and the server passes on only those.
///
/// What the server counts, not what pages claim: once Firefox joins, the
/// server receives proofs (`p2p_bytes_confirmed`) while the Chromium root
/// is the only other viewer, so a Chromium page fed the Firefox page; with
/// the second Chromium page, over 10 s the bytes proven exceed 1.5× the
/// bytes the server sent directly (one stream, the root's), so both peer-fed
/// pages proved most batches, the last one's from its only assigned peer,
/// the Firefox page. Every frame each page painted is the native render.
#[test]
fn a_firefox_page_relays_with_chromium_pages() {
    serial(async {
        require_prerequisites([firefox::firefox(), firefox::geckodriver()]);
        let ns = Netns::create().unwrap_or_else(|e| panic!("the test's namespace: {e}"));
        let server = ServerOnVeth::start(&ns);
        let _worker = server.native_worker();
        let url = server.url(WATCH);
        let mut chromium = webrtc_browser().await;
        open_playing(&mut chromium, &url).await;
        let proven = |s: &Value| num(s, "p2p_bytes_confirmed");
        assert_eq!(proven(&server.stats()), 0, "no peer yet");

        // Firefox, the second viewer: the root's only child.
        let prefs = [(
            "media.peerconnection.ice.obfuscate_host_addresses",
            serde_json::json!(false),
        )];
        let session = firefox::launch_in(&ns, &prefs, HANG)
            .await
            .unwrap_or_else(|e| panic!("{e}: {HOW_TO_FIX}"));
        let mut firefox = Browser::with(session);
        open_playing(&mut firefox, &url).await;
        let s = eventually(
            "the server to count the Firefox page's proofs",
            async || {
                let s = server.stats();
                (proven(&s) > 0).then_some(s)
            },
        )
        .await;
        eprintln!("Chromium → Firefox: {} bytes proven", proven(&s));
        let ff = relay(&firefox, 0).await;
        let root = relay(&chromium, 0).await;
        assert_eq!(num(&ff, "parent"), num(&root, "id"), "{ff} / {root}");

        // The second Chromium page goes under the Firefox page.
        open_playing(&mut chromium, &url).await;
        let ff_id = num(&ff, "id");
        eventually("the last page to be fed by the Firefox page", async || {
            let r = relay(&chromium, 1).await;
            (num(&r, "parent") == ff_id && num(&r, "parentOpen") == 1).then_some(())
        })
        .await;
        let s0 = server.stats();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s1 = server.stats();
        let d = |k: &str| num(&s1, k) - num(&s0, k);
        let (proved, direct) = (d("p2p_bytes_confirmed"), d("viewer_batch_bytes_direct"));
        eprintln!("10 s: {proved} bytes proven by peer-fed pages, {direct} sent directly");
        assert!(
            2 * proved > 3 * direct,
            "both peer-fed pages should prove most batches: {proved} proven, {direct} direct: {s1}"
        );

        let mut painted = 0;
        for (browser, tabs) in [(&chromium, 2), (&firefox, 1)] {
            for tab in 0..tabs {
                painted += check_painted(browser, tab).await;
                let p = player(browser, tab).await;
                assert_eq!(num(&p, "gaps"), 0, "tab {tab} skipped frames: {p}");
            }
        }
        assert!(painted > 600, "too few frames painted: {painted}");
        for k in [
            "p2p_digest_mismatches",
            "protocol_errors",
            "p2p_proofs_refused",
        ] {
            assert_eq!(num(&s1, k), 0, "{k}: {s1}");
        }
        firefox.quit().await;
        chromium.quit().await;
    });
}
