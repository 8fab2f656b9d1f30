//! `StopEvent`: the one shared "stop now" flag, the native-thread form of
//! `eventlet.event.Event`.
//!
//! In the server it is `Shared::listeners_closed`: the acceptor sets it once, when a
//! stop has closed the listeners (after `drain_delay`), and workers read it between
//! requests and echo reads (to close instead of keeping a connection). Signals do not
//! set it directly: they send `Control` messages to the acceptor, which runs the stop.
//! It is public for embedding programs, which can wait on one with a timeout instead
//! of polling. Setting it twice is harmless; it never resets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A set-once event shared by every thread. Cheap to clone (an `Arc`).
#[derive(Clone, Default)]
pub struct StopEvent {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    // Checked on hot paths (between requests) without taking the lock.
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl StopEvent {
    /// A new, unset event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the event and wakes every waiter. Idempotent.
    pub fn set(&self) {
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.cond.notify_all();
    }

    /// Whether the event has been set.
    pub fn is_set(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Blocks until the event is set or `timeout` passes; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_set() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.inner.cond.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Blocks until the event is set.
    pub fn wait(&self) {
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_set() {
            guard = self.inner.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn wait_timeout_returns_false_when_unset() {
        let ev = StopEvent::new();
        assert!(!ev.wait_timeout(Duration::from_millis(10)));
        assert!(!ev.is_set());
    }

    #[test]
    fn set_wakes_a_waiter_on_another_thread() {
        let ev = StopEvent::new();
        let waiter = {
            let ev = ev.clone();
            thread::spawn(move || ev.wait_timeout(Duration::from_secs(10)))
        };
        ev.set();
        ev.set(); // idempotent
        assert!(waiter.join().unwrap());
        assert!(ev.is_set());
    }
}
