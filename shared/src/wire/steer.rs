//! The steering page's message (issue 25): which change a timeline version
//! starts with, and which of the page's own pushes it already folded in.
//!
//! | tag | message | direction | body |
//! |---|---|---|---|
//! | `0x24` | [`Keyframe`] | server → viewer | `frame:u64 timeline:u32 acked:u32` + scene (32 bytes) |
//!
//! Sent only to a viewer that has pushed (a watch-only page never gets
//! one, so watching costs no extra byte), whenever the timeline's version
//! or the count of its pushes committed changed. With the keyframes of
//! the versions it plays and its own pushes not yet committed, the page
//! draws the frames the server will send ([`crate::steer`]).

use super::{DecodeError, Reader, Writer, tag};
use crate::scene::{SCENE_LEN, Scene};

/// Length of a `Keyframe` message.
pub const KEYFRAME_LEN: usize = super::PREFIX_LEN + 16 + SCENE_LEN;

/// Server → viewer: timeline version `timeline` differs from the version
/// before it from frame `frame` on, where its scene is `scene` (the change
/// applied); and the first `acked` `Input`s this viewer sent are folded
/// into `timeline` or an earlier version (later ones are still queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyframe {
    /// The change frame: the first frame this version draws differently.
    pub frame: u64,
    /// The timeline version the change made.
    pub timeline: u32,
    /// How many of this connection's `Input`s are folded into versions up
    /// to `timeline`.
    pub acked: u32,
    /// The scene at `frame`, the change applied.
    pub scene: Scene,
}

impl Keyframe {
    /// The encoded message.
    pub fn to_bytes(&self) -> [u8; KEYFRAME_LEN] {
        super::fixed(|out| {
            let mut w = Writer::start(out, KEYFRAME_LEN, tag::KEYFRAME)?;
            w.u64(self.frame);
            w.u32(self.timeline);
            w.u32(self.acked);
            w.put(&self.scene.to_bytes());
            Ok(w.done())
        })
    }

    pub(super) fn decode_body(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let frame = r.u64()?;
        let timeline = r.u32()?;
        let acked = r.u32()?;
        let scene =
            Scene::from_bytes(&r.bytes::<SCENE_LEN>()?).map_err(|_| DecodeError::InvalidScene)?;
        r.finish()?;
        Ok(Self {
            frame,
            timeline,
            acked,
            scene,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Spin;
    use crate::wire::ToViewer;

    #[test]
    fn a_keyframe_round_trips_and_bad_ones_are_refused() {
        let mut scene = Scene::idle(99);
        scene.spin = Spin {
            a: 5 << 48,
            b: -(7 << 48),
        };
        let k = Keyframe {
            frame: 1_000,
            timeline: 3,
            acked: 12,
            scene,
        };
        let bytes = k.to_bytes();
        assert_eq!(ToViewer::decode(&bytes), Ok(ToViewer::Keyframe(k)));
        assert!(ToViewer::decode(&bytes[..KEYFRAME_LEN - 1]).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(ToViewer::decode(&long).is_err());
        let mut spun = bytes;
        spun[KEYFRAME_LEN - 8..].copy_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(ToViewer::decode(&spun), Err(DecodeError::InvalidScene));
        // A viewer-bound message from a viewer is refused.
        assert!(crate::wire::FromViewer::decode(&bytes).is_err());
    }
}
