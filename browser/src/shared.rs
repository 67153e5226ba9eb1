//! The owner's state, shared with its JS callbacks, behind a borrow that
//! cannot panic on re-entry (as eframe's web runner does it).
//!
//! Callbacks hold a `Weak` reference, so nothing keeps a dropped owner
//! alive. A `RefCell::borrow_mut` from a callback would panic if JS called
//! back while the state is already borrowed (a synchronously dispatched
//! event, a callback that runs something that calls back): here a mutation
//! that finds the state busy is *deferred* and runs, in order, as soon as
//! the borrow that was in the way ends, and a read that finds it busy is
//! skipped (`None`). No event is lost and none panics.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

type Deferred<T> = VecDeque<Box<dyn FnOnce(&mut T)>>;

/// State shared between its owner and JS callbacks.
pub struct Shared<T> {
    state: RefCell<T>,
    /// Mutations that arrived while `state` was borrowed. A `Cell` (taken
    /// and put back, never borrowed across a call) so it cannot be busy.
    deferred: Cell<Deferred<T>>,
}

impl<T: 'static> Shared<T> {
    /// Builds the state with a `Weak` handle on itself, for callbacks.
    pub fn new_cyclic(build: impl FnOnce(&Weak<Self>) -> T) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            state: RefCell::new(build(me)),
            deferred: Cell::new(VecDeque::new()),
        })
    }

    /// Runs `f` on the state now or, if it is borrowed (re-entry), right
    /// after the borrow in the way ends.
    pub fn update(&self, f: impl FnOnce(&mut T) + 'static) {
        match self.state.try_borrow_mut() {
            Ok(mut state) => f(&mut state),
            Err(_) => return self.defer(Box::new(f)),
        }
        self.run_deferred();
    }

    /// Runs `f` on the state and returns what it returns, or `None`
    /// (skipping `f`) if the state is borrowed.
    pub fn try_update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let out = f(&mut *self.state.try_borrow_mut().ok()?);
        self.run_deferred();
        Some(out)
    }

    /// Reads the state, or `None` (skipping `f`) if it is being mutated.
    pub fn try_read<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let out = f(&*self.state.try_borrow().ok()?);
        self.run_deferred();
        Some(out)
    }

    fn defer(&self, f: Box<dyn FnOnce(&mut T)>) {
        let mut queue = self.deferred.take();
        queue.push_back(f);
        self.deferred.set(queue);
    }

    /// Runs what was deferred, oldest first, while the state is free.
    fn run_deferred(&self) {
        loop {
            let mut queue = self.deferred.take();
            let next = queue.pop_front();
            self.deferred.set(queue);
            let Some(f) = next else { return };
            match self.state.try_borrow_mut() {
                Ok(mut state) => f(&mut state),
                Err(_) => {
                    // Still busy (we run inside a read): keep it first.
                    let mut queue = self.deferred.take();
                    queue.push_front(f);
                    self.deferred.set(queue);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_reentrant_update_is_deferred_not_a_panic() {
        let shared = Shared::new_cyclic(|_| Vec::<u32>::new());
        let inner = Rc::clone(&shared);
        shared.update(move |v| {
            v.push(1);
            // As if JS called back while the state is borrowed.
            inner.update(|v| v.push(3));
            assert_eq!(inner.try_read(|v| v.len()), None, "busy: skipped");
            assert_eq!(inner.try_update(|v| v.len()), None, "busy: skipped");
            v.push(2);
        });
        assert_eq!(shared.try_read(Vec::clone), Some(vec![1, 2, 3]));
    }

    #[test]
    fn deferred_updates_wait_out_a_read_and_keep_their_order() {
        let shared = Shared::new_cyclic(|_| Vec::<u32>::new());
        let inner = Rc::clone(&shared);
        let seen = shared.try_read(move |v| {
            inner.update(|v| v.push(1));
            inner.update(|v| v.push(2));
            v.len()
        });
        assert_eq!(seen, Some(0));
        // The read ended; the mutations ran after it, in order.
        assert_eq!(shared.try_read(Vec::clone), Some(vec![1, 2]));
    }

    struct Node {
        me: Weak<Shared<Node>>,
    }

    #[test]
    fn callbacks_hold_only_a_weak_handle() {
        let shared = Shared::new_cyclic(|me| Node { me: me.clone() });
        let weak = shared.try_read(|n| n.me.clone()).expect("free");
        assert!(weak.upgrade().is_some());
        drop(shared);
        assert!(weak.upgrade().is_none());
    }
}
