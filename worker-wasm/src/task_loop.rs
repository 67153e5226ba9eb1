//! The worker's task loop as plain Rust: decode what the server sends, queue
//! tasks, render one frame per step straight into the outgoing `Result`.
//!
//! It holds no browser types, so the whole protocol side of the worker is
//! unit-tested natively (and under wasm-bindgen-test); `agent` only moves
//! bytes between this and a WebSocket and decides when to yield.
//!
//! A task's reply is allocated once, header first
//! ([`TaskResult::header`]), and every frame is rendered by
//! [`donut_shared::render_packed`] directly into its 880-byte slot, so a
//! finished task is sent without another copy. Rendering one frame per
//! [`TaskLoop::step`] lets the caller yield to the event loop between frames:
//! a "stop contributing" message never waits for a whole task.

use std::collections::VecDeque;

use donut_shared::PACKED_LEN;
use donut_shared::scene::Scene;
use donut_shared::wire::{
    DecodeError, HELLO_LEN, Hello, MAX_SLOTS, RESULT_HEADER_LEN, Task, TaskResult, Telemetry,
    ToWorker,
};

/// Tasks this worker asks to have outstanding: one rendering, one queued, so
/// the next task is already here when the current one is sent.
pub const SLOTS: u16 = 2;

/// What a server message meant for the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A task was queued.
    Task(Task),
    /// Fleet statistics arrived (also kept in [`TaskLoop::telemetry`]).
    Telemetry(Telemetry),
}

/// Why a server message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It did not decode.
    Decode(DecodeError),
    /// The server queued more than [`MAX_SLOTS`] tasks on this worker.
    TooManyTasks,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "{e}"),
            Self::TooManyTasks => write!(f, "more than {MAX_SLOTS} tasks queued"),
        }
    }
}

/// A task queued or being rendered: its reply, filled one frame at a time.
#[derive(Debug)]
struct Job {
    task: Task,
    /// The scene of the next frame to render: the task's, stepped once per
    /// frame done.
    scene: Scene,
    /// `Result` header followed by `task.count` packed frames; allocated
    /// when rendering starts, so queued tasks cost no memory.
    reply: Vec<u8>,
    /// Frames rendered so far.
    done: u32,
}

impl Job {
    fn new(task: Task) -> Self {
        Self {
            task,
            scene: task.scene,
            reply: Vec::new(),
            done: 0,
        }
    }

    /// Allocates the reply and writes its header, once.
    fn start(&mut self) {
        if self.reply.is_empty() {
            let t = self.task;
            self.reply = vec![0u8; RESULT_HEADER_LEN + t.count as usize * PACKED_LEN];
            self.reply[..RESULT_HEADER_LEN]
                .copy_from_slice(&TaskResult::header(t.task_id, t.start, t.count));
        }
    }
}

/// Counters the page shows for this tab.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames rendered by this worker since it started.
    pub frames_rendered: u64,
    /// Results sent.
    pub results_sent: u64,
    /// Frames the server credits this connection with (from telemetry).
    pub contributed: u64,
}

/// The worker's protocol state for one connection.
#[derive(Debug, Default)]
pub struct TaskLoop {
    jobs: VecDeque<Job>,
    stats: Stats,
    telemetry: Option<Telemetry>,
    /// Contribution credited on earlier connections (telemetry is per
    /// connection), so the tab's total survives reconnects.
    contributed_before: u64,
}

impl TaskLoop {
    /// An idle loop.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `Hello` to send when a connection opens.
    pub fn hello(&self) -> [u8; HELLO_LEN] {
        Hello { slots: SLOTS }.to_bytes()
    }

    /// Handles one binary message from the server. An error means the
    /// connection should be closed with the error as its reason.
    pub fn on_message(&mut self, bytes: &[u8]) -> Result<Inbound, Refused> {
        match ToWorker::decode(bytes).map_err(Refused::Decode)? {
            ToWorker::Task(task) => {
                // The server may send more than the slots announced (it frees
                // a slot when it gives up waiting on a task); queue them,
                // within the protocol's cap.
                if self.jobs.len() >= usize::from(MAX_SLOTS) {
                    return Err(Refused::TooManyTasks);
                }
                self.jobs.push_back(Job::new(task));
                Ok(Inbound::Task(task))
            }
            ToWorker::Telemetry(t) => {
                self.telemetry = Some(t);
                self.stats.contributed = self.contributed_before + t.contributed;
                Ok(Inbound::Telemetry(t))
            }
        }
    }

    /// Whether a frame is waiting to be rendered.
    pub fn has_work(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Tasks queued or in progress.
    pub fn pending_tasks(&self) -> usize {
        self.jobs.len()
    }

    /// Renders the next frame of the oldest task. Returns the encoded
    /// `Result` message when that frame completed its task.
    pub fn step(&mut self) -> Option<Vec<u8>> {
        let job = self.jobs.front_mut()?;
        job.start();
        let offset = RESULT_HEADER_LEN + job.done as usize * PACKED_LEN;
        if let Some(slot) = job
            .reply
            .get_mut(offset..offset + PACKED_LEN)
            .and_then(|s| <&mut [u8; PACKED_LEN]>::try_from(s).ok())
        {
            donut_shared::render_pose_packed(job.scene.pose, slot);
        }
        job.scene.step();
        job.done += 1;
        self.stats.frames_rendered += 1;
        if job.done < job.task.count {
            return None;
        }
        let job = self.jobs.pop_front()?;
        self.stats.results_sent += 1;
        Some(job.reply)
    }

    /// Drops every queued task, when the connection closed or the tab
    /// stopped contributing: the server reassigns them.
    pub fn disconnect(&mut self) {
        self.jobs.clear();
        self.contributed_before = self.stats.contributed;
        self.telemetry = None;
    }

    /// This tab's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The latest fleet statistics on this connection.
    pub fn telemetry(&self) -> Option<Telemetry> {
        self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donut_shared::wire::{FromWorker, PREFIX_LEN, TASK_LEN};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn task(task_id: u32, start: u64, count: u32) -> [u8; TASK_LEN] {
        Task::idle(task_id, start, count).to_bytes()
    }

    /// Steps until a result comes out, counting the steps.
    fn run_to_result(l: &mut TaskLoop) -> (Vec<u8>, u32) {
        let mut steps = 0;
        loop {
            steps += 1;
            if let Some(r) = l.step() {
                return (r, steps);
            }
            assert!(steps < 10_000, "task never finished");
        }
    }

    #[test]
    fn hello_announces_slots() {
        let l = TaskLoop::new();
        let hello = l.hello();
        assert_eq!(
            FromWorker::decode(&hello),
            Ok(FromWorker::Hello(Hello { slots: SLOTS }))
        );
    }

    #[test]
    fn renders_a_task_one_frame_per_step_into_a_valid_result() {
        let mut l = TaskLoop::new();
        let start = 1_000_000_007u64;
        assert!(matches!(
            l.on_message(&task(9, start, 5)),
            Ok(Inbound::Task(_))
        ));
        assert!(l.has_work());
        let (reply, steps) = run_to_result(&mut l);
        assert_eq!(steps, 5, "one frame per step");
        assert!(!l.has_work());
        let Ok(FromWorker::Result(r)) = FromWorker::decode(&reply) else {
            panic!("reply does not decode as a Result");
        };
        assert_eq!((r.task_id, r.start, r.count), (9, start, 5));
        for (i, packed) in r.packed_frames().enumerate() {
            let mut want = [0u8; PACKED_LEN];
            donut_shared::render_packed(start + i as u64, &mut want);
            assert_eq!(packed, &want, "frame {i}");
        }
        assert_eq!(
            l.stats(),
            Stats {
                frames_rendered: 5,
                results_sent: 1,
                contributed: 0
            }
        );
    }

    #[test]
    fn tasks_finish_in_arrival_order() {
        let mut l = TaskLoop::new();
        assert!(l.on_message(&task(1, 100, 2)).is_ok());
        assert!(l.on_message(&task(2, 50, 1)).is_ok());
        let ids: Vec<u32> = (0..2)
            .map(|_| match FromWorker::decode(&run_to_result(&mut l).0) {
                Ok(FromWorker::Result(r)) => r.task_id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn queues_extra_tasks_up_to_the_protocol_cap() {
        let mut l = TaskLoop::new();
        for id in 0..u32::from(MAX_SLOTS) {
            assert!(l.on_message(&task(id, 0, 600)).is_ok());
        }
        assert_eq!(l.on_message(&task(99, 0, 1)), Err(Refused::TooManyTasks));
        assert_eq!(l.pending_tasks(), usize::from(MAX_SLOTS));
        // Only the task being rendered holds a reply buffer.
        assert!(l.jobs.iter().skip(1).all(|j| j.reply.is_empty()));
        assert!(l.step().is_none());
        assert_eq!(
            l.jobs.front().map(|j| j.reply.len()),
            Some(RESULT_HEADER_LEN + 600 * PACKED_LEN)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut l = TaskLoop::new();
        for bad in [
            &[][..],
            &[1],
            &[2, 0x10],
            &[1, 0x10, 0, 0],
            &[1, 0x01, 0, 1],
        ] {
            assert!(
                matches!(l.on_message(bad), Err(Refused::Decode(_))),
                "{bad:?}"
            );
        }
        let mut zero = task(1, 0, 1);
        // The count's low byte: after the prefix, task id (4) and start (8).
        zero[PREFIX_LEN + 4 + 8 + 3] = 0;
        assert!(l.on_message(&zero).is_err(), "zero-frame task");
        assert!(!l.has_work());
        let reason = l
            .on_message(&[7])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!reason.is_empty() && reason.len() <= 123);
    }

    #[test]
    fn stop_drops_queued_work_and_keeps_the_contribution() {
        let mut l = TaskLoop::new();
        let t = Telemetry {
            contributed: 120,
            ..Telemetry::default()
        };
        assert!(l.on_message(&t.to_bytes()).is_ok());
        assert_eq!(l.stats().contributed, 120);
        assert!(l.on_message(&task(1, 0, 600)).is_ok());
        assert!(l.step().is_none());
        l.disconnect();
        assert!(!l.has_work());
        assert!(l.step().is_none());
        assert!(l.telemetry().is_none());
        // A new connection starts counting from zero again.
        let t2 = Telemetry {
            contributed: 60,
            ..Telemetry::default()
        };
        assert!(l.on_message(&t2.to_bytes()).is_ok());
        assert_eq!(l.stats().contributed, 180);
    }
}
