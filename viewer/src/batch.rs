//! A `Frames` message decoded once: its bytes, kept whole (they are what
//! a digest vouches for, what is passed on to children and what a
//! [`Proof`](donut_shared::wire::Proof) hashes), and its header, read once.
//!
//! A batch from the server is decoded by the runner's `route`; a batch
//! from a parent peer by [`Batch::decode`] at the gate. From then on the
//! player reads it through [`Batch::frames`], which rebuilds the borrowed
//! [`Frames`] view from the header already read: no message is decoded
//! twice on its way to the screen and the children.

use donut_shared::wire::{Codec, Frames, ToViewer};

/// A batch's identity: its first frame and timeline version.
pub type Key = (u64, u32);

/// A `Frames` header as decoded (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    start: u64,
    count: u32,
    timeline: u32,
    codec: Codec,
    /// The payload's length: it runs to the end of the message.
    payload_len: usize,
}

impl Head {
    /// The header of a decoded `Frames` message.
    pub fn of(f: &Frames<'_>) -> Self {
        Self {
            start: f.start,
            count: f.count,
            timeline: f.timeline,
            codec: f.codec,
            payload_len: f.payload.len(),
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    bytes: Vec<u8>,
    head: Head,
}

impl Batch {
    /// `bytes`, a `Frames` message whose header decoded as `head` (from
    /// [`Head::of`] on the same bytes).
    pub fn new(bytes: Vec<u8>, head: Head) -> Self {
        debug_assert!(head.payload_len <= bytes.len());
        Self { bytes, head }
    }

    /// Decodes untrusted `bytes` (from a peer); `None` unless they are a
    /// well-formed `Frames` message.
    pub fn decode(bytes: Vec<u8>) -> Option<Self> {
        let head = match ToViewer::decode(&bytes) {
            Ok(ToViewer::Frames(f)) => Head::of(&f),
            _ => return None,
        };
        Some(Self::new(bytes, head))
    }

    /// The batch as the wire's borrowed view, without decoding again.
    pub fn frames(&self) -> Frames<'_> {
        let h = &self.head;
        let at = self.bytes.len().saturating_sub(h.payload_len);
        Frames {
            start: h.start,
            count: h.count,
            timeline: h.timeline,
            codec: h.codec,
            payload: &self.bytes[at..],
        }
    }

    /// Its first frame and timeline version.
    pub fn key(&self) -> Key {
        (self.head.start, self.head.timeline)
    }

    /// Its first frame.
    pub fn start(&self) -> u64 {
        self.head.start
    }

    /// The whole message, as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_view_is_the_decoded_message() {
        let payload = vec![7u8; 40];
        let f = Frames {
            start: 1_000,
            count: 1,
            timeline: 3,
            codec: Codec::Context,
            payload: &payload,
        };
        let mut bytes = vec![0u8; f.encoded_len()];
        let n = f.encode(&mut bytes).expect("sized");
        bytes.truncate(n);
        let batch = Batch::decode(bytes.clone()).expect("a batch");
        assert_eq!(batch.frames(), f);
        assert_eq!(batch.key(), (1_000, 3));
        assert_eq!(batch.start(), 1_000);
        assert_eq!(batch.bytes(), bytes.as_slice());
        assert_eq!(Batch::decode(Vec::new()), None);
        assert_eq!(Batch::decode(bytes[..10].to_vec()), None);
    }
}
