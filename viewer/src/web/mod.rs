//! The viewer on the page, split as eframe's web runner is: the handle
//! JS holds, the runner that owns the state and the loop, the DOM event
//! listeners, and the probes the tests read.
//!
//! - `handle.rs`: [`DonutViewer`] (`window.donutViewer`), the constructor
//!   and the page's switches (steering, relaying, pause, suspend/resume,
//!   the contribution panel); it only forwards to the runner.
//! - `runner.rs`: the state (player, screen, panel, socket, relay, input),
//!   the WebSocket's events, the `requestAnimationFrame` loop, and the one
//!   `route` that decodes each message from the server once.
//! - `events.rs`: the pointer and arrow-key listeners that steer.
//! - `probes.rs`: what the browser tests and benches read (`painted()`,
//!   `stats()`, `relayStats()`, `benchDecode()`…), behind one typed
//!   boundary.
//!
//! The socket feeds the runner; the animation loop asks the player which
//! frame is due and draws it when it changes. When the socket closes the
//! player keeps playing what it has buffered while the viewer reconnects
//! with backoff, and the panel shows the connection state; while it is not
//! live the panel's figures are marked stale. The reconnecting socket, its
//! callbacks and the re-entry-safe state are `donut_browser`'s, shared with
//! the worker.
//!
//! A page entering the back/forward cache or being frozen calls
//! [`DonutViewer::suspend`] (the shim forwards `pagehide` and `freeze`): the
//! socket is closed normally and nothing reconnects until
//! [`DonutViewer::resume`] (`pageshow`, `resume`). The server then does not
//! keep sending batches to a tab that cannot play them, and the clock lands
//! the returning tab on the live frame.
//!
//! Steering: pointer drags on the canvas and the arrow keys feed the
//! [`InputGate`](crate::input::InputGate) through `events.rs`. The
//! animation loop polls the gate once per refresh and sends what it
//! releases as one `Input` message, so a drag costs at most one message
//! per refresh and under 30 a second. Nothing is sent while nobody drags
//! or presses a key.

mod events;
mod handle;
mod prediction;
mod probes;
mod runner;

pub use handle::DonutViewer;
