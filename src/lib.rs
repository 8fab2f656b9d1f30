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

// Poll tokens carry connection ids (`lot::FIRST_CONN + id`); on a 32-bit target they
// would wrap after 2^32 connections and events would be lost.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("spindle needs a 64-bit target");

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
