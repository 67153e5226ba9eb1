//! The file-descriptor budget: every connection is a socket, and a process
//! out of descriptors cannot even refuse politely.
//!
//! At start the soft `RLIMIT_NOFILE` (often 1,024) is raised to the hard
//! limit (often 524,288 or 1,048,576): the soft limit exists for programs
//! that use `select(2)`, which tokio does not. The budget is logged.
//!
//! The connection caps (`--max-workers` + `--max-viewers`) must then fit
//! under it with headroom for everything else that holds a descriptor: the
//! listener, epoll and the runtime's own, page and `/metrics` requests,
//! handshakes not yet admitted, and refused connections while their close
//! frame is delivered. Headroom is an eighth of the budget, at least 64.
//!
//! When the caps do not fit they are scaled down, in proportion, with a
//! warning naming the limit and how to raise it, rather than refusing to
//! start: the defaults (11,000 connections) must run on any host, the
//! binding limit is the operating system's, and a clamped cap still
//! refuses the excess the right way: admission closes it with 1013 and
//! "viewer connection cap of N", where running out of descriptors would
//! leave it hanging in the accept queue (the listener cannot `accept` with
//! `EMFILE`, and axum retries once a second). Only a budget too small for
//! one connection of each role stops the server, with the numbers.

use tracing::{info, warn};

/// Descriptors kept free of connection caps: an eighth of the budget, at
/// least this many.
pub const MIN_HEADROOM: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the
/// resulting soft limit: the process's descriptor budget.
///
/// # Errors
/// The `getrlimit`/`setrlimit` failure.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    // An infinite hard limit cannot be set as the soft one on Linux
    // (`fs.nr_open`, 1,048,576 by default, caps it).
    let want = hard.min(1 << 20);
    let now = rlimit::increase_nofile_limit(want)?;
    info!(
        soft_before = soft,
        hard,
        budget = now,
        "file descriptors (RLIMIT_NOFILE)"
    );
    Ok(now)
}

/// Headroom kept free of connections under a budget.
pub fn headroom(budget: u64) -> u64 {
    (budget / 8).max(MIN_HEADROOM)
}

/// `(workers, viewers)` caps that fit `budget` with [`headroom`]: the
/// given ones when they fit, else both scaled down in proportion (each
/// at least 1), with a warning.
///
/// # Errors
/// When not one connection of each role fits, with the numbers.
pub fn fit_caps(workers: usize, viewers: usize, budget: u64) -> Result<(usize, usize), String> {
    let room = budget.saturating_sub(headroom(budget));
    let total = workers as u64 + viewers as u64;
    if total <= room {
        return Ok((workers, viewers));
    }
    if room < 2 {
        return Err(format!(
            "RLIMIT_NOFILE is {budget} file descriptors, too few to serve any \
             connection after {} kept for the server itself: raise it \
             (ulimit -n, or LimitNOFILE= in a systemd unit)",
            headroom(budget)
        ));
    }
    let scaled = |n: usize| -> usize {
        let s = u128::from(n as u64) * u128::from(room) / u128::from(total);
        usize::try_from(s).unwrap_or(usize::MAX).max(1)
    };
    let w = scaled(workers);
    let v = scaled(viewers).min(usize::try_from(room).unwrap_or(usize::MAX) - w);
    warn!(
        budget,
        headroom = headroom(budget),
        max_workers = workers,
        max_viewers = viewers,
        now_workers = w,
        now_viewers = v,
        "connection caps exceed the file-descriptor budget; lowered to fit \
         (raise the hard RLIMIT_NOFILE: ulimit -Hn, or LimitNOFILE= in a systemd unit)"
    );
    Ok((w, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(fit_caps(1000, 10_000, 1 << 20), Ok((1000, 10_000)));
        assert_eq!(fit_caps(10, 100, 1024), Ok((10, 100)));
    }

    #[test]
    fn caps_that_do_not_fit_are_scaled_below_the_budget() {
        let (w, v) = fit_caps(1000, 10_000, 1024).expect("fits");
        assert_eq!(headroom(1024), 128);
        assert!(w as u64 + v as u64 <= 1024 - 128, "{w} + {v}");
        assert_eq!((w, v), (81, 814));
        let (w, v) = fit_caps(1000, 10_000, 256).expect("fits");
        assert!(w >= 1 && v >= 1 && (w + v) as u64 <= 256 - 64, "{w} + {v}");
        // A tiny budget keeps one of each.
        let (w, v) = fit_caps(1, 10_000, 66).expect("fits");
        assert_eq!((w, v), (1, 1));
    }

    #[test]
    fn a_budget_without_room_refuses_to_start() {
        let err = fit_caps(1, 1, 64).expect_err("no room");
        assert!(err.contains("RLIMIT_NOFILE is 64"), "{err}");
    }
}
