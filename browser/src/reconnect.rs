//! The reconnect state machine of a browser client's WebSocket, sans-IO.
//!
//! Both clients (the viewer and the worker) keep one socket to the server
//! and follow the same rules: connect when wanted; when the socket closes,
//! retry after a backoff delay (`donut_shared::backoff`, jittered so a
//! restarted server is not hammered in lockstep); forget the backoff once
//! the server proved healthy; never retry while the owner does not want a
//! connection (a hidden page, a switched-off worker); and stop for good when
//! the server speaks another protocol version, because retrying would loop
//! forever. This module holds those rules with no browser types: the caller
//! feeds it events, the time and a random number, and does what it answers
//! (open a socket, arm a timer). [`crate::socket`] is that caller in the
//! browser; the tests here drive it natively.
//!
//! Every socket gets a *generation*; events carry it, so an event of an
//! older socket (already replaced) is recognised and ignored.

use donut_shared::backoff::Backoff;
use donut_shared::wire;

/// Close code of a normal close (the owner stops, or the page is outdated).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a protocol violation by the server. Browsers only let a
/// page close with 1000 or 3000..=4999 (1002 would throw and leave the
/// socket open), so this is an application code.
pub const CLOSE_PROTOCOL_ERROR: u16 = 4002;

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    /// Not wanted (never started, stopped, page hidden): no socket, no
    /// retries until [`Reconnect::start`].
    Off,
    /// A socket is opening.
    Connecting,
    /// The socket is open.
    Open,
    /// Waiting to retry until `until_ms` (on the caller's clock).
    Waiting {
        /// When the retry is due, in the caller's milliseconds.
        until_ms: f64,
    },
    /// The server speaks protocol version `server` (`None`: it said so
    /// without a number we could read): no retries, the page must be
    /// reloaded.
    Outdated {
        /// The server's protocol version, if known.
        server: Option<u8>,
    },
}

/// Why the owner closes the connection, with its close code and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close<'a> {
    /// The owner no longer wants a connection (the page is hidden, the
    /// worker stops contributing): 1000 with this reason, and no retries
    /// until [`Reconnect::start`].
    Stop(&'a str),
    /// The server broke the protocol: 4002 with this reason (at most 123
    /// bytes, or the browser closes without one), then retry with backoff.
    Protocol(&'a str),
    /// The server speaks protocol version `server`: 1000 "page out of
    /// date", and no retries.
    Outdated {
        /// The version byte the server sent.
        server: u8,
    },
}

impl Close<'_> {
    /// The WebSocket close code.
    pub fn code(&self) -> u16 {
        match self {
            Self::Stop(_) | Self::Outdated { .. } => CLOSE_NORMAL,
            Self::Protocol(_) => CLOSE_PROTOCOL_ERROR,
        }
    }

    /// The WebSocket close reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Stop(r) | Self::Protocol(r) => r,
            Self::Outdated { .. } => "page out of date",
        }
    }
}

/// How a connection ended without the owner closing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The socket could not even be created (a malformed URL, a blocked
    /// port); a retry is scheduled.
    Unreachable,
    /// The server (or the network) closed it with `code` and `reason`; a
    /// retry is scheduled.
    Closed {
        /// The close code (1006 when the connection just dropped).
        code: u16,
        /// The close reason, often empty.
        reason: String,
    },
    /// The server refused this client's protocol version (1002 with
    /// "protocol version …"): the link is [`State::Outdated`], no retry.
    RefusedVersion {
        /// The server's version, read from the reason, if it names one.
        server: Option<u8>,
    },
    /// The server sent a text message, which is not part of the protocol:
    /// closed with 4002 and a retry is scheduled.
    Text,
}

/// The reconnect state machine of one client socket.
#[derive(Debug)]
pub struct Reconnect {
    state: State,
    backoff: Backoff,
    generation: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

impl Reconnect {
    /// A link that is [`State::Off`].
    pub fn new() -> Self {
        Self {
            state: State::Off,
            backoff: Backoff::new(),
            generation: 0,
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current socket's generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Whether an event of socket `generation` is still for the current
    /// socket (one that is opening or open).
    pub fn is_current(&self, generation: u32) -> bool {
        generation == self.generation && matches!(self.state, State::Connecting | State::Open)
    }

    /// The owner wants a connection. Returns true if the caller must
    /// connect now (the link was [`State::Off`]; the backoff starts over);
    /// otherwise nothing changes (already connecting, open, waiting to
    /// retry, or outdated).
    pub fn start(&mut self) -> bool {
        if self.state != State::Off {
            return false;
        }
        self.backoff.reset();
        true
    }

    /// The caller is opening a new socket: returns its generation.
    pub fn connecting(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.state = State::Connecting;
        self.generation
    }

    /// Socket `generation` opened. Returns whether it is the current one.
    pub fn opened(&mut self, generation: u32) -> bool {
        if !self.is_current(generation) {
            return false;
        }
        self.state = State::Open;
        true
    }

    /// The server proved healthy (a valid message arrived): the next
    /// failure retries after the base delay again.
    pub fn healthy(&mut self) {
        self.backoff.reset();
    }

    /// Socket `generation` closed with `code` and `reason`. Returns `None`
    /// for an older socket's event, else how it ended and, unless the
    /// server refused our version, the delay before the retry.
    pub fn closed(
        &mut self,
        generation: u32,
        code: u16,
        reason: &str,
        now_ms: f64,
        jitter: f64,
    ) -> Option<(End, Option<f64>)> {
        if !self.is_current(generation) {
            return None;
        }
        if wire::refuses_version(code, reason) {
            let server = server_version(reason);
            self.state = State::Outdated { server };
            return Some((End::RefusedVersion { server }, None));
        }
        let end = End::Closed {
            code,
            reason: reason.to_owned(),
        };
        Some((end, self.retry(now_ms, jitter)))
    }

    /// The owner closes the socket (see [`Close`]). Returns the delay
    /// before the retry, if one is due.
    pub fn close(&mut self, why: Close<'_>, now_ms: f64, jitter: f64) -> Option<f64> {
        match why {
            Close::Stop(_) => {
                self.state = State::Off;
                None
            }
            Close::Outdated { server } => {
                self.state = State::Outdated {
                    server: Some(server),
                };
                None
            }
            Close::Protocol(_) => self.retry(now_ms, jitter),
        }
    }

    /// The connection is gone (or never came): schedule a retry unless the
    /// owner does not want one, the server is of another version, or one is
    /// already scheduled. Returns the delay, in milliseconds.
    pub fn retry(&mut self, now_ms: f64, jitter: f64) -> Option<f64> {
        if matches!(
            self.state,
            State::Off | State::Outdated { .. } | State::Waiting { .. }
        ) {
            return None;
        }
        let delay = self.backoff.next_delay_ms(jitter);
        self.state = State::Waiting {
            until_ms: now_ms + delay,
        };
        Some(delay)
    }

    /// The retry timer fired. Returns true if the caller must connect now.
    pub fn retry_due(&self) -> bool {
        matches!(self.state, State::Waiting { .. })
    }

    /// Milliseconds until the retry, if one is scheduled (never negative).
    pub fn retry_in_ms(&self, now_ms: f64) -> Option<f64> {
        match self.state {
            State::Waiting { until_ms } => Some((until_ms - now_ms).max(0.0)),
            _ => None,
        }
    }
}

/// The server's version in a refusal reason ("protocol version X
/// unsupported, this server speaks Y"): its last word.
fn server_version(reason: &str) -> Option<u8> {
    reason.rsplit(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use donut_shared::backoff::{BASE_MS, MAX_MS};
    use donut_shared::wire::DecodeError;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A link that started and whose socket `generation` is open.
    fn open() -> (Reconnect, u32) {
        let mut l = Reconnect::new();
        assert!(l.start());
        let g = l.connecting();
        assert!(l.opened(g));
        (l, g)
    }

    #[test]
    fn starts_once_and_opens() {
        let mut l = Reconnect::new();
        assert_eq!(l.state(), State::Off);
        assert!(l.start());
        let g = l.connecting();
        assert_eq!(l.state(), State::Connecting);
        assert!(!l.start(), "already connecting");
        assert!(l.opened(g));
        assert_eq!(l.state(), State::Open);
        assert!(!l.start(), "already open");
    }

    #[test]
    fn a_close_schedules_a_retry_with_growing_backoff() {
        let (mut l, g) = open();
        let (end, delay) = l.closed(g, 1006, "", 1_000.0, 1.0).expect("current");
        assert_eq!(
            end,
            End::Closed {
                code: 1006,
                reason: String::new()
            }
        );
        assert_eq!(delay, Some(BASE_MS));
        assert_eq!(
            l.state(),
            State::Waiting {
                until_ms: 1_000.0 + BASE_MS
            }
        );
        assert_eq!(l.retry_in_ms(1_100.0), Some(BASE_MS - 100.0));
        assert_eq!(l.retry_in_ms(9_999.0), Some(0.0));
        // No second timer while one is pending.
        assert_eq!(l.retry(1_000.0, 1.0), None);
        assert!(l.retry_due());
        // The retry fails at once: the next delay doubles.
        let g = l.connecting();
        let (_, delay) = l.closed(g, 1006, "", 2_000.0, 1.0).expect("current");
        assert_eq!(delay, Some(2.0 * BASE_MS));
        // A healthy server resets it.
        let g = l.connecting();
        assert!(l.opened(g));
        l.healthy();
        let (_, delay) = l
            .closed(g, 1001, "going away", 3_000.0, 1.0)
            .expect("current");
        assert_eq!(delay, Some(BASE_MS));
    }

    #[test]
    fn delays_stay_capped() {
        let mut l = Reconnect::new();
        assert!(l.start());
        for _ in 0..40 {
            l.connecting();
            let delay = l.retry(0.0, 0.99).expect("a retry");
            assert!(delay <= MAX_MS);
        }
    }

    #[test]
    fn events_of_an_older_socket_are_ignored() {
        let (mut l, old) = open();
        assert!(l.close(Close::Protocol("bad"), 0.0, 0.5).is_some());
        assert!(l.retry_due());
        let new = l.connecting();
        assert_ne!(old, new);
        assert!(!l.opened(old));
        assert_eq!(l.closed(old, 1006, "", 0.0, 0.5), None);
        assert_eq!(l.state(), State::Connecting);
        assert!(l.opened(new));
    }

    #[test]
    fn stop_silences_everything_until_start() {
        let (mut l, g) = open();
        assert_eq!(l.close(Close::Stop("page hidden"), 0.0, 0.5), None);
        assert_eq!(l.state(), State::Off);
        // The old socket's close arrives late: nothing happens.
        assert_eq!(l.closed(g, 1000, "", 0.0, 0.5), None);
        assert_eq!(l.retry(0.0, 0.5), None);
        assert!(!l.retry_due(), "a timer that fires late does not connect");
        assert!(l.start());
    }

    #[test]
    fn a_stop_while_waiting_cancels_the_retry() {
        let (mut l, g) = open();
        assert!(l.closed(g, 1006, "", 0.0, 0.5).is_some());
        assert_eq!(l.close(Close::Stop("off"), 0.0, 0.5), None);
        assert!(!l.retry_due());
        assert!(l.start(), "a fresh start after the stop");
    }

    #[test]
    fn a_version_refusal_stops_for_good() {
        let (mut l, g) = open();
        let reason = DecodeError::Version { got: 9 }.to_string();
        let (end, delay) = l.closed(g, 1002, &reason, 0.0, 0.5).expect("current");
        let server = Some(wire::PROTOCOL_VERSION);
        assert_eq!(end, End::RefusedVersion { server });
        assert_eq!(delay, None);
        assert_eq!(l.state(), State::Outdated { server });
        assert_eq!(l.retry(0.0, 0.5), None);
        assert!(!l.start(), "an outdated page does not reconnect on its own");
        // Only a stop (and a later start) leaves it, as a reload would.
        assert_eq!(l.close(Close::Stop("hidden"), 0.0, 0.5), None);
        assert!(l.start());
    }

    #[test]
    fn a_message_of_another_version_makes_the_page_outdated() {
        let (mut l, _) = open();
        assert_eq!(l.close(Close::Outdated { server: 2 }, 0.0, 0.5), None);
        assert_eq!(l.state(), State::Outdated { server: Some(2) });
        assert!(!l.retry_due());
    }

    #[test]
    fn close_codes_are_ones_a_page_may_send() {
        for why in [
            Close::Stop("s"),
            Close::Protocol("p"),
            Close::Outdated { server: 3 },
        ] {
            let code = why.code();
            assert!(code == 1000 || (3000..=4999).contains(&code), "{why:?}");
            assert!(why.reason().len() <= 123);
        }
        assert_eq!(Close::Outdated { server: 3 }.reason(), "page out of date");
        assert_eq!(server_version("no number here"), None);
    }
}
