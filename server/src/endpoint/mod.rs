//! The two endpoints, each a protocol over one [`crate::conn`]:
//!
//! - [`worker`]: tasks out, results in, checked before they reach the
//!   stream (was `worker_conn`);
//! - [`viewer`]: batches out, steering and peer-relay messages in (was
//!   `viewer_conn`).

pub mod viewer;
pub mod worker;
