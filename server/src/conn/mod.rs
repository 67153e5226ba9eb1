//! One connection: what every admitted socket (or pipe) runs over.
//!
//! - [`connection`]: keep-alive, size limits, the close and why it ended;
//! - [`transport`]: what a worker connection runs over, a [`connection`]
//!   or a [`pipe`] (channels to a socket on another node);
//! - [`limits`]: the caps and close codes;
//! - [`fleet`]: admission, the live connections by role, shutdown's wait
//!   for the last one.

pub mod connection;
pub mod fleet;
pub mod limits;
pub mod pipe;
pub mod transport;
