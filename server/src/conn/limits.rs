//! WebSocket close codes, and the reasons that go with them.
//!
//! Every connection the server ends gets a close frame with one of these
//! codes and a human-readable reason of at most 123 bytes (the limit RFC 6455
//! sets), so a client, a test or a person with devtools open can tell
//! exactly why.

use donut_shared::wire::DecodeError;

/// Normal closure (idle timeout, client went away).
pub const NORMAL: u16 = 1000;
/// The server is shutting down.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol (malformed, truncated, wrong version).
pub const PROTOCOL_ERROR: u16 = 1002;
/// The peer sent a kind of message this endpoint does not take.
pub const UNSUPPORTED: u16 = 1003;
/// The peer cheated or was refused by policy (strikes, bans).
pub const POLICY: u16 = 1008;
/// The message was larger than the endpoint allows.
pub const TOO_BIG: u16 = 1009;
/// The service is restarting: reconnect (RFC 6455's registry, IANA).
pub const SERVICE_RESTART: u16 = 1012;
/// A cap is reached; come back later.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code.
    pub code: u16,
    /// The reason, at most 123 bytes.
    pub reason: String,
}

impl CloseReason {
    /// A close reason, truncated on a character boundary to 123 bytes.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Self { code, reason }
    }

    /// The close for a message that failed to decode.
    pub fn for_decode_error(e: &DecodeError) -> Self {
        let code = match e {
            DecodeError::TooLarge { .. } => TOO_BIG,
            DecodeError::WrongDirection(_) => UNSUPPORTED,
            _ => PROTOCOL_ERROR,
        };
        Self::new(code, e.to_string())
    }
}

/// The close sent to every peer when the server stops.
pub fn shutdown_reason() -> CloseReason {
    CloseReason::new(GOING_AWAY, "server shutting down")
}

/// The close sent to a worker of a cluster node that stopped leading: its
/// tasks now come from another node, reached by reconnecting.
pub fn handover_reason() -> CloseReason {
    CloseReason::new(SERVICE_RESTART, "cluster leader changed: reconnect")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let r = CloseReason::new(POLICY, long);
        assert!(r.reason.len() <= 123);
        let d = CloseReason::for_decode_error(&DecodeError::UnknownTag(0x77));
        assert_eq!(d.code, PROTOCOL_ERROR);
        assert_eq!(d.reason, "unknown message tag 0x77");
    }
}
