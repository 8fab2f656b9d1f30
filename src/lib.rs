//! spindle: a threaded TCP and HTTP/1.1 server daemon.
//!
//! One acceptor thread (a mio event loop) owns the listeners and every idle
//! connection, and hands connections that have work to a bounded, resizable worker
//! pool. Workers run the echo service or an HTTP/1.1 turn that calls a WSGI-like
//! [`App`]. A shared [`StopEvent`] and signal-driven graceful shutdown finish
//! in-flight work and join every thread. See `DESIGN.md`-style notes at the top of
//! each module.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acceptor;
pub mod config;
pub mod conn;
pub mod echo;
pub mod http;
pub mod listener;
pub mod lot;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod signals;
pub mod stop;
pub mod systemd;

pub use config::Config;
pub use http::App;
pub use server::{Server, ServerBuilder, ServerHandle, StopSummary};
pub use stop::StopEvent;
