//! `InputRefused` (server → viewer, tag `0x31`): the server could not
//! carry one of this viewer's pushes to the timeline, and says why, so the
//! page can show that the push did nothing instead of leaving the player to
//! guess.
//!
//! Layout after `[PROTOCOL_VERSION, tag]`: `reason:u8` (see [`Refusal`]).
//! One such message per refused push; pushes are rate-limited per viewer
//! (`--input-rate`), so refusals are too. A single node never refuses a
//! push it accepted; a cluster node refuses one it could not store in the
//! cluster's input log in time (Redis away) or that the log lost before any
//! leader committed it.

use super::{DecodeError, PREFIX_LEN, Reader, Writer, tag};

/// Length of an `InputRefused` message.
pub const INPUT_REFUSED_LEN: usize = PREFIX_LEN + 1;

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The cluster's shared store (Redis) could not be reached to record
    /// the push before the carry deadline (3 s).
    Unreachable = 1,
    /// The push was recorded, but the store lost it (a restart without
    /// persistence, a failover) before any leader committed it.
    Lost = 2,
}

impl Refusal {
    /// Every reason, in wire order.
    pub const ALL: [Self; 2] = [Self::Unreachable, Self::Lost];

    /// A short sentence for a page or a log.
    pub const fn text(self) -> &'static str {
        match self {
            Self::Unreachable => "not applied: the cluster's store is unreachable",
            Self::Lost => "not applied: the cluster's store lost it",
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == b)
    }
}

/// See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputRefused {
    /// Why.
    pub reason: Refusal,
}

impl InputRefused {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; INPUT_REFUSED_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, INPUT_REFUSED_LEN, tag::INPUT_REFUSED)?;
            w.put(&[self.reason as u8]);
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let byte = r.u8()?;
        r.finish()?;
        let reason = Refusal::from_byte(byte).ok_or(DecodeError::InvalidValue {
            field: "reason",
            value: byte,
        })?;
        Ok(Self { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ToViewer;
    use super::*;

    #[test]
    fn every_reason_round_trips_and_unknown_ones_are_errors() {
        for reason in Refusal::ALL {
            let bytes = InputRefused { reason }.to_bytes();
            assert_eq!(
                ToViewer::decode(&bytes),
                Ok(ToViewer::InputRefused(InputRefused { reason }))
            );
            assert!(!reason.text().is_empty());
        }
        let mut bad = InputRefused {
            reason: Refusal::Lost,
        }
        .to_bytes();
        bad[2] = 0;
        assert_eq!(
            ToViewer::decode(&bad),
            Err(DecodeError::InvalidValue {
                field: "reason",
                value: 0
            })
        );
        assert!(matches!(
            ToViewer::decode(&bad[..2]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = bad.to_vec();
        long[2] = 1;
        long.push(0);
        assert!(matches!(
            ToViewer::decode(&long),
            Err(DecodeError::TooLarge { .. })
        ));
        // A worker is never sent one; a viewer never sends one.
        assert_eq!(
            super::super::FromViewer::decode(&long[..3]),
            Err(DecodeError::WrongDirection(tag::INPUT_REFUSED))
        );
    }
}
