//! Telling a running server what to do from another thread: `Control` messages to the
//! acceptor, sent through a `ServerHandle` (the signal thread holds one; so can an
//! embedding program).

use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::Waker;

use crate::shared::{Shared, Stats};

/// Messages to the acceptor (sent with a wake of its `Waker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Begin a graceful stop (a second one means immediate).
    Graceful,
    /// Stop now: cut every socket.
    Immediate,
}

/// Stops or inspects a running server from another thread.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) control: Sender<Control>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Begins a graceful stop (as SIGTERM does); a second call stops immediately.
    pub fn stop(&self) {
        self.send(Control::Graceful);
    }

    /// Stops immediately (as SIGQUIT does).
    pub fn stop_now(&self) {
        self.send(Control::Immediate);
    }

    /// The server's figures now: connections, run queue, threads.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    pub(crate) fn send(&self, control: Control) {
        // The acceptor may already be gone (stopped): nothing left to tell.
        if self.control.send(control).is_ok() {
            let _ = self.waker.wake();
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
