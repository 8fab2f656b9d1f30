//! systemd integration: the `sd_notify` protocol and socket activation.
//!
//! `Notifier` speaks sd_notify over the datagram socket named by `NOTIFY_SOCKET` (a
//! path, or an abstract name written `@name`): `READY=1` once every listener is open
//! and the pool runs, `RELOADING=1` + `MONOTONIC_USEC=` while SIGHUP applies a config,
//! `STOPPING=1` when a stop begins, `STATUS=` with live figures, and `WATCHDOG=1` every
//! half of `WATCHDOG_USEC`. The watchdog pings are sent from the acceptor loop on
//! purpose: a wedged acceptor stops them, and systemd restarts the service. Without
//! `NOTIFY_SOCKET` every call is a no-op. Sending is best-effort: a full or missing
//! socket must never stop the server.
//!
//! `take_activated` adopts sockets passed with `LISTEN_FDS`/`LISTEN_PID` (and
//! `LISTEN_FDNAMES`), matched to `[[listener]]`s by name, else by order, and removes
//! the variables so that nothing spawned later inherits them.

use std::io;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::ListenerConfig;

/// Sends sd_notify messages, if the service manager asked for them.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// The predecessor's readiness socket, when this process was started by a SIGUSR2
    /// upgrade (`SPINDLE_UPGRADE_NOTIFY`): told `READY=1` once.
    predecessor: Mutex<Option<(UnixDatagram, SocketAddr)>>,
    /// Set once a successor speaks for the service: nothing more is sent.
    handed_over: AtomicBool,
}

/// A datagram socket for an sd_notify-style address: a path, or `@name` (abstract).
fn datagram_to(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; silent when it is unset or unusable.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()).and_then(|path| {
            datagram_to(&path)
                .map_err(
                    |e| tracing::warn!(socket = %path, error = %e, "NOTIFY_SOCKET is unusable; not notifying systemd"),
                )
                .ok()
        });
        // Read once and removed, so that a later upgrade's child does not inherit it.
        let predecessor = std::env::var(crate::upgrade::NOTIFY_ENV).ok().and_then(|path| datagram_to(&path).ok());
        std::env::remove_var(crate::upgrade::NOTIFY_ENV);
        Notifier { target, predecessor: Mutex::new(predecessor), handed_over: AtomicBool::new(false) }
    }

    /// A notifier that never sends (embedding without systemd).
    pub fn disabled() -> Notifier {
        Notifier { target: None, predecessor: Mutex::new(None), handed_over: AtomicBool::new(false) }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some() && !self.handed_over.load(Ordering::SeqCst)
    }

    /// Sends one message (newline-separated `KEY=value` lines).
    pub fn notify(&self, message: &str) {
        if self.handed_over.load(Ordering::SeqCst) {
            return;
        }
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                tracing::debug!(error = %e, "sd_notify failed");
            }
        }
    }

    /// `READY=1` with a status line; the first one also reaches the predecessor of a
    /// SIGUSR2 upgrade, which then drains and exits.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
        let predecessor = self.predecessor.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((sock, addr)) = predecessor {
            if let Err(e) = sock.send_to_addr(b"READY=1", &addr) {
                tracing::warn!(error = %e, "cannot tell the process being upgraded that this one is ready");
            }
        }
    }

    /// A successor is ready: tells systemd its PID is now the service's main PID, then
    /// stays silent (no `STOPPING=1`, no watchdog pings: the service is not stopping).
    pub fn hand_over(&self, successor: u32) {
        self.notify(&format!(
            "MAINPID={successor}\nSTATUS=upgraded: pid {successor} serves; pid {} drains",
            std::process::id()
        ));
        self.handed_over.store(true, Ordering::SeqCst);
    }

    /// `RELOADING=1` with the monotonic timestamp systemd requires for it.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.notify(&format!("STOPPING=1\nSTATUS={status}"));
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if it is set for this
/// process (`WATCHDOG_PID`, when present, must be ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    // At least 1 ms between pings: a tiny value must not make the acceptor spin.
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A socket-activation problem (exit status 2).
#[derive(Debug)]
pub struct ActivationError(pub String);

impl std::fmt::Display for ActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "socket activation: {}", self.0)
    }
}

impl std::error::Error for ActivationError {}

/// The listening sockets systemd passed, one slot per configured listener in config
/// order, or `None` when this process was not socket-activated.
///
/// With `LISTEN_FDNAMES` naming listeners, sockets are matched by name, and a listener
/// no socket is named after gets `None`: the caller binds it itself. That is what makes
/// starting only one of several `.socket` units work instead of failing the start (and
/// being re-triggered by the waiting connection into systemd's start limit). A name
/// that matches no listener is an error, not a guess: a typo would otherwise leave a
/// passed socket unserved while the daemon binds the address itself. Without names
/// (systemd's default, the unit name) sockets are matched by position, which needs
/// one per listener.
pub fn take_activated(listeners: &[ListenerConfig]) -> Result<Option<Vec<Option<TcpListener>>>, ActivationError> {
    let names: Option<Vec<String>> =
        std::env::var("LISTEN_FDNAMES").ok().map(|v| v.split(':').map(str::to_string).collect());
    let activated = std::env::var_os("LISTEN_FDS").is_some();
    let mut fds = listenfd::ListenFd::from_env(); // also removes LISTEN_FDS and LISTEN_PID
    std::env::remove_var("LISTEN_FDNAMES");
    std::env::remove_var("LISTEN_FDS_FIRST_FD"); // listenfd's, set by a SIGUSR2 upgrade
    if fds.len() == 0 {
        return if activated {
            Err(ActivationError("LISTEN_FDS is set but names no socket for this process (LISTEN_PID)".into()))
        } else {
            Ok(None)
        };
    }
    let listener_names = || listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ");
    let by_name = names.as_ref().filter(|n| n.iter().any(|name| listeners.iter().any(|l| l.name == *name)));
    if let Some(n) = by_name {
        let unknown: Vec<&str> =
            n.iter().filter(|name| !listeners.iter().any(|l| l.name == **name)).map(String::as_str).collect();
        if !unknown.is_empty() || n.len() != fds.len() {
            return Err(ActivationError(format!(
                "LISTEN_FDNAMES {n:?} names {unknown:?}, which is no [[listener]]: set FileDescriptorName= to a listener's name ({})",
                listener_names()
            )));
        }
    }
    let mut out = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.iter().enumerate() {
        let index = match by_name {
            Some(names) => match names.iter().position(|n| *n == listener.name) {
                Some(index) => index,
                None => {
                    out.push(None);
                    continue;
                }
            },
            None if fds.len() == listeners.len() => i,
            None => {
                return Err(ActivationError(format!(
                    "{} socket(s) passed (names {:?}) for {} [[listener]]s ({}): name them after the listeners with FileDescriptorName=, or pass one per listener in config order",
                    fds.len(),
                    names.unwrap_or_default(),
                    listeners.len(),
                    listener_names()
                )))
            }
        };
        let socket = fds
            .take_tcp_listener(index)
            .map_err(|e| ActivationError(format!("socket {index} for listener \"{}\": {e}", listener.name)))?
            .ok_or_else(|| ActivationError(format!("socket {index} for listener \"{}\" is missing", listener.name)))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| ActivationError(format!("socket {index} for listener \"{}\": {e}", listener.name)))?;
        out.push(Some(socket));
    }
    Ok(Some(out))
}
