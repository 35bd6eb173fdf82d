use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            // More start as tasks come; spawn() reports failures then.
            let _ = pool.add_thread();
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    /// Runs `code` on a free thread, starting one if none is free.
    ///
    /// Fork: upstream panicked (in the accept thread, ending it) when a
    /// thread could not be started. Now the task waits in the queue for a
    /// thread that frees up, and the error is returned for the caller to
    /// log and back off.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) -> std::io::Result<()> {
        let mut queue = self
            .sharing
            .todo
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue.push_back(code);
        if self.sharing.waiting_tasks.load(Ordering::Acquire) > queue.len() - 1 {
            self.sharing.condvar.notify_one();
            return Ok(());
        }
        drop(queue);
        self.add_thread()
    }

    fn add_thread(&self) -> std::io::Result<()> {
        let sharing = self.sharing.clone();
        Self::spawn_thread(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            loop {
                let mut task: Box<dyn FnMut() + Send> = {
                    let mut todo = sharing.todo.lock().unwrap_or_else(PoisonError::into_inner);

                    let task;
                    loop {
                        if let Some(poped_task) = todo.pop_front() {
                            task = poped_task;
                            break;
                        }
                        let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                todo = sharing
                                    .condvar
                                    .wait(todo)
                                    .unwrap_or_else(PoisonError::into_inner);
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, Duration::from_millis(5000))
                                    .unwrap_or_else(PoisonError::into_inner);
                                todo = new_lock;
                                !waitres.timed_out()
                            };

                        if !received && todo.is_empty() {
                            return;
                        }
                    }

                    task
                };

                task();
            }
        })
    }

    /// Starts a pool thread; `thread::Builder` so that a failure is an
    /// error, not a panic.
    fn spawn_thread(body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        #[cfg(test)]
        if tests::FAIL_SPAWNS.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "Resource temporarily unavailable (test)",
            ));
        }
        thread::Builder::new()
            .name("connection".to_owned())
            .spawn(body)
            .map(drop)
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::channel;

    /// Makes every thread start fail, to test what the pool does then.
    pub(super) static FAIL_SPAWNS: AtomicBool = AtomicBool::new(false);

    #[test]
    fn a_failed_thread_start_is_an_error_and_the_task_waits_for_a_thread() {
        FAIL_SPAWNS.store(true, Ordering::SeqCst);
        // No thread could start, not even the pool's first ones.
        let pool = TaskPool::new();
        let (done, finished) = channel();
        let first = done.clone();
        let result = pool.spawn(Box::new(move || {
            let _ = first.send(1);
        }));
        FAIL_SPAWNS.store(false, Ordering::SeqCst);
        assert!(result.is_err());
        assert!(finished.recv_timeout(Duration::from_millis(100)).is_err());
        // Once threads start again, the queued task runs as well.
        pool.spawn(Box::new(move || {
            let _ = done.send(2);
        }))
        .unwrap();
        let mut ran: Vec<i32> = (0..2)
            .map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        ran.sort();
        assert_eq!(ran, [1, 2]);
    }
}
