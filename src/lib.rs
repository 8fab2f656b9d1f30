//! spindle: a threaded TCP and HTTP/1.1 server daemon.
//!
//! One acceptor thread (a mio event loop) owns the listeners, the deadlines, the load
//! watch and the stop. Connections with nothing to do are parked in the *lot*, one
//! epoll that a bounded, resizable worker pool waits on (leader/followers): the worker
//! that sees a connection ready serves its turn (echo, or HTTP/1.1 calling a WSGI-like
//! [`App`]) and parks it again with whatever it has so far. No thread waits on a
//! client: partial heads, bodies still arriving, bodies waiting for budget room and
//! responses the client is slow to take all wait parked. A shared [`StopEvent`] and
//! signal-driven graceful shutdown finish in-flight work and join every thread.
//! `docs/engine.md` has the protocols; each module opens with what it owns.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod acceptor;
mod apps;
mod budget;
pub mod config;
mod conn;
mod control;
pub mod daemon;
mod echo;
pub mod http;
mod http_turn;
mod listener;
mod lot;
mod metrics;
mod net;
mod pool;
mod proxy;
pub mod server;
mod service;
mod shared;
mod signals;
mod sock;
mod stop;
mod systemd;
mod upgrade;

/// What the cargo-fuzz targets in `fuzz/` call: the sans-IO request-head parser,
/// chunked decoder and PROXY-header parser, whose modules are private. Not part of the API: hidden
/// from the docs and free to change with the targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::body::{decode_all, ChunkedDecoder, ChunkedError, ChunkedLimits};
    pub use crate::http::parse::{parse_head, BodyKind, Error as HeadError, Head, HeadLimits, Parsed};
    pub use crate::proxy::{
        parse as parse_proxy, Header as ProxyHeader, Parsed as ProxyParsed, ProxyError, Versions as ProxyVersions,
        MAX_HEADER as PROXY_MAX_HEADER,
    };
}

pub use acceptor::StopReport;
pub use config::Config;
pub use control::ServerHandle;
pub use http::App;
pub use server::{Server, ServerBuilder, StartError, StopSummary};
pub use shared::Stats;
pub use stop::StopEvent;
