//! At most N requests handled at once, and a stop that waits for them.
//!
//! Requests are answered on their connections' threads (the connection
//! cap bounds those); `--threads` permits bound how many run the handler
//! at the same time, so the store, the bcrypt queue (half of them) and the
//! CPU see no more than that, while a connection waiting for its permit
//! costs only its own thread. An uncontended permit is a lock and an
//! unlock, no system call.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    free: usize,
    closed: bool,
}

/// The permits.
#[derive(Debug)]
pub struct Permits {
    total: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// One request being handled; the permit comes back on drop.
#[derive(Debug)]
pub struct Permit<'a>(&'a Permits);

impl Permits {
    /// `total` permits, all free.
    pub fn new(total: usize) -> Permits {
        Permits {
            total,
            state: Mutex::new(State {
                free: total,
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a permit; `None` once [`Permits::close`] was called.
    pub fn acquire(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if state.free > 0 {
                state.free -= 1;
                return Some(Permit(self));
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Gives no more permits, and waits up to `grace` for those out to
    /// come back; `false` if some were still out then.
    pub fn close(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let mut state = self.lock();
        state.closed = true;
        self.changed.notify_all();
        while state.free < self.total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.free += 1;
        // Wakes a waiting request, or the stop waiting for the last one.
        self.0.changed.notify_one();
        if state.free == self.0.total && state.closed {
            self.0.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn permits_bound_concurrency_and_the_stop_waits_for_them() {
        let permits = Arc::new(Permits::new(2));
        let a = permits.acquire().unwrap();
        let _b = permits.acquire().unwrap();
        // A third waits until one comes back.
        let waiting = {
            let permits = Arc::clone(&permits);
            thread::spawn(move || permits.acquire().is_some())
        };
        thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished());
        drop(a);
        assert!(waiting.join().unwrap());
        // The stop does not end while one is out, then refuses new ones.
        assert!(!permits.close(Duration::from_millis(50)));
        assert!(permits.acquire().is_none());
        drop(_b);
        assert!(permits.close(Duration::from_millis(50)));
    }
}
