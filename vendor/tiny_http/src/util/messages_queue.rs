use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    queue: Mutex<Queue<T>>,
    condvar: Condvar,
}

/// The queue and whether it still takes messages (fork: a stopped server's
/// queue refuses new requests, so no connection waits for an answer that
/// no handler will ever give).
struct Queue<T> {
    items: VecDeque<Control<T>>,
    closed: bool,
}

impl<T> std::ops::Deref for Queue<T> {
    type Target = VecDeque<Control<T>>;
    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl<T> std::ops::DerefMut for Queue<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.items
    }
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            condvar: Condvar::new(),
        })
    }

    /// Pushes an element to the queue.
    /// Queues `value`, or gives it back if the queue is closed.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(value);
        }
        queue.push_back(Control::Elem(value));
        self.condvar.notify_one();
        Ok(())
    }

    /// Refuses further messages and returns those still queued.
    pub fn close(&self) -> Vec<T> {
        let mut queue = self.lock();
        queue.closed = true;
        let left = queue
            .drain(..)
            .filter_map(|control| match control {
                Control::Elem(value) => Some(value),
                Control::Unblock => None,
            })
            .collect();
        self.condvar.notify_all();
        left
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        let mut queue = self.lock();
        queue.push_back(Control::Unblock);
        self.condvar.notify_one();
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        let mut queue = self.lock();

        loop {
            match queue.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }

            queue = self
                .condvar
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = self.lock();
        match queue.pop_front() {
            Some(Control::Elem(value)) => Some(value),
            Some(Control::Unblock) | None => None,
        }
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut queue = self.lock();
        let mut duration = timeout;
        loop {
            match queue.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }
            let now = Instant::now();
            let (_queue, result) = self
                .condvar
                .wait_timeout(queue, duration)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue = _queue;
            let sleep_time = now.elapsed();
            duration = if duration > sleep_time {
                duration - sleep_time
            } else {
                Duration::from_millis(0)
            };
            if result.timed_out()
                || (duration.as_secs() == 0 && duration.subsec_nanos() < 1_000_000)
            {
                return None;
            }
        }
    }
}
