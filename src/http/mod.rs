//! HTTP/1.1: the WSGI-like `App` interface, mounting, and the per-connection turn.
//!
//! Placeholder while the HTTP issue is in progress.

pub mod body;
pub mod conn;
pub mod parse;

use std::sync::Arc;

use crate::server::Shared;

/// A canned response the acceptor writes itself when the queue is full.
pub const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\nserver overloaded.\r\n";
/// A canned response for a request head that did not arrive within `header_timeout`.
pub const TIMED_OUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\nrequest timed out\n";

/// A WSGI-like application.
pub trait App: Send + Sync + 'static {}

/// Apps mounted on path prefixes.
#[derive(Default)]
pub struct Router {
    #[allow(dead_code)]
    mounts: Vec<(String, Arc<dyn App>)>,
}

impl Router {
    /// Builds a router.
    pub fn new(_config: &[(String, String)], custom: &[(String, Arc<dyn App>)], _shared: &Arc<Shared>) -> Router {
        Router { mounts: custom.to_vec() }
    }
}
