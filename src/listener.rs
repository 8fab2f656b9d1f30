//! Listening sockets: binding them with socket2 the way a daemon needs, and the
//! per-listener context every connection carries.
//!
//! Binding happens on the main thread before any other thread starts, so a port in use
//! is a clean startup error (exit status 2) with nothing running. The sockets are then
//! moved into the acceptor thread, which owns them until a stop closes them.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::config::{ListenerConfig, Network, Protocol, ProxyProtocol};
use crate::http::Router;

/// What every connection accepted on a listener needs to know about it.
pub struct ListenerCtx {
    /// The listener's name from the config.
    pub name: String,
    /// The address actually bound (the real port when the config said `:0`).
    pub addr: SocketAddr,
    /// Echo or HTTP.
    pub protocol: Protocol,
    /// The mounted apps (HTTP listeners; empty for echo).
    pub router: Arc<Router>,
    /// PROXY protocol: the versions accepted and the networks trusted to send a
    /// header; `None` when connections start with the protocol itself.
    pub proxy: Option<(crate::proxy::Versions, Vec<Network>)>,
    /// Peers whose forwarding headers are believed (HTTP).
    pub forwarded_trusted: Vec<Network>,
}

/// A listener that could not be opened: names the listener and the address.
#[derive(Debug)]
pub struct BindError {
    /// Listener name.
    pub name: String,
    /// Address from the config.
    pub addr: SocketAddr,
    /// What the OS said.
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener \"{}\" cannot listen on {}: {}", self.name, self.addr, self.source)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds and listens: SO_REUSEADDR (restart without waiting out TIME_WAIT), optional
/// SO_REUSEPORT, IPV6_V6ONLY for IPv6 binds (so `[::]` and `0.0.0.0` can coexist, as
/// nginx does), the configured backlog, non-blocking.
pub fn bind(cfg: &ListenerConfig) -> Result<TcpListener, BindError> {
    let err = |source| BindError { name: cfg.name.clone(), addr: cfg.bind, source };
    let socket = Socket::new(Domain::for_address(cfg.bind), Type::STREAM, Some(SockProtocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if cfg.reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    if cfg.bind.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.bind(&cfg.bind.into()).map_err(err)?;
    socket.listen(cfg.backlog).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// What a listener's `proxy_protocol` asks the PROXY parser to accept.
pub fn proxy_versions(cfg: &ListenerConfig) -> Option<(crate::proxy::Versions, Vec<Network>)> {
    use crate::proxy::Versions;
    let versions = match cfg.proxy_protocol {
        ProxyProtocol::Off => return None,
        ProxyProtocol::V1 => Versions::V1,
        ProxyProtocol::V2 => Versions::V2,
        ProxyProtocol::Any => Versions::Any,
    };
    Some((versions, cfg.proxy_trusted.clone()))
}
