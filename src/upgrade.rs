//! SIGUSR2: replace the running binary without refusing a connection, as nginx and
//! gunicorn do.
//!
//! Runs on the `signals` thread. The successor is the file now at the path this
//! process was started from (read at start, before anyone could replace it), with the
//! same arguments. It inherits the listening sockets themselves, not their addresses:
//! they are duplicated into a contiguous block of descriptors without `FD_CLOEXEC` and
//! announced the way systemd announces sockets (`LISTEN_FDS`, `LISTEN_FDNAMES`, plus
//! listenfd's `LISTEN_FDS_FIRST_FD`; no `LISTEN_PID`, which the parent cannot know
//! before the fork), so the kernel's accept queue is shared and never closed: a
//! connection waiting in it is taken by whichever process accepts first. The successor
//! adopts them by listener name (`systemd::take_activated`), so a config that renamed
//! or dropped a listener makes it exit 2 instead of serving the wrong thing.
//!
//! The successor says it is ready with `READY=1` on a datagram socket named in
//! `SPINDLE_UPGRADE_NOTIFY` (an abstract name of this process's). Until then, and for
//! good if it exits or stays silent past [`READY_TIMEOUT`], this process goes on
//! serving as if nothing had happened (and kills the successor it started, by its
//! PID). Once it is ready, this process hands systemd the new main PID (`MAINPID=`),
//! stops notifying (the successor now speaks for the service), and drains as on
//! SIGTERM.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a successor may take to say it is ready before the upgrade is abandoned.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The variable that names the successor's readiness socket.
pub(crate) const NOTIFY_ENV: &str = "SPINDLE_UPGRADE_NOTIFY";

/// What a successor is started from, captured when the server starts.
pub(crate) struct Plan {
    /// The path this process's binary was started from.
    exe: PathBuf,
    /// This process's arguments, program name excluded.
    args: Vec<OsString>,
    /// A duplicate of each listening socket, by listener name.
    listeners: Vec<(String, TcpListener)>,
}

/// Why an upgrade was abandoned (this process keeps serving).
#[derive(Debug)]
pub(crate) enum UpgradeError {
    /// Preparing the sockets or starting the successor failed.
    Start(io::Error),
    /// The successor exited before it was ready.
    Exited(std::process::ExitStatus),
    /// The successor did not say it was ready in time.
    Silent(Duration),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Start(e) => write!(f, "cannot start the new binary: {e}"),
            UpgradeError::Exited(status) => write!(f, "the new binary exited before it was ready ({status})"),
            UpgradeError::Silent(t) => write!(f, "the new binary did not get ready within {t:?}; it was killed"),
        }
    }
}

impl Plan {
    /// Captures the binary's path and arguments, and duplicates the listeners.
    /// `command` replaces this process's own (see `ServerBuilder::upgrade_command`).
    pub(crate) fn capture(
        listeners: Vec<(String, TcpListener)>,
        command: Option<(PathBuf, Vec<OsString>)>,
    ) -> io::Result<Plan> {
        let (exe, args) = match command {
            Some(command) => command,
            None => (std::env::current_exe()?, std::env::args_os().skip(1).collect()),
        };
        Ok(Plan { exe, args, listeners })
    }

    /// The binary a successor is started from.
    pub(crate) fn exe(&self) -> &std::path::Path {
        &self.exe
    }

    /// Starts the successor and waits until it is ready; returns its PID.
    pub(crate) fn run(&self) -> Result<u32, UpgradeError> {
        let name = format!("spindle-upgrade-{}-{}", std::process::id(), nanos());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(UpgradeError::Start)?;
        let ready = UnixDatagram::bind_addr(&addr).map_err(UpgradeError::Start)?;
        let mut child = self.spawn(&name).map_err(UpgradeError::Start)?;
        match wait_ready(&ready, &mut child) {
            Ok(()) => Ok(child.id()),
            Err(e) => {
                if !matches!(e, UpgradeError::Exited(_)) {
                    let _ = child.kill();
                }
                let _ = child.wait();
                Err(e)
            }
        }
    }

    fn spawn(&self, notify: &str) -> io::Result<Child> {
        let inherited = contiguous_dups(&self.listeners)?;
        let first = inherited.first().map_or(3, |fd| fd.as_raw_fd());
        let names: Vec<&str> = self.listeners.iter().map(|(n, _)| n.as_str()).collect();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env("LISTEN_FDS", inherited.len().to_string())
            .env("LISTEN_FDS_FIRST_FD", first.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env(NOTIFY_ENV, format!("@{notify}"))
            .env_remove("LISTEN_PID")
            // The watchdog is this process's until the successor is the main one.
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null());
        let child = cmd.spawn();
        // The duplicates close here: the child has its own copies, this process keeps
        // its listeners until its drain closes them.
        drop(inherited);
        child
    }
}

/// Duplicates `listeners` into consecutive descriptors without `FD_CLOEXEC`, as
/// `LISTEN_FDS` needs them: `fcntl(F_DUPFD_CLOEXEC, n)` gives the lowest free one from
/// `n` up, so a block is tried from a high base until every one lands in place.
fn contiguous_dups(listeners: &[(String, TcpListener)]) -> io::Result<Vec<OwnedFd>> {
    let mut base = 64;
    for _ in 0..64 {
        let mut fds = Vec::with_capacity(listeners.len());
        for (i, (_, l)) in listeners.iter().enumerate() {
            fds.push(rustix::io::fcntl_dupfd_cloexec(l, base + i as i32)?);
        }
        if fds.iter().enumerate().all(|(i, fd)| fd.as_raw_fd() == base + i as i32) {
            for fd in &fds {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            return Ok(fds);
        }
        base = fds.iter().map(|fd| fd.as_raw_fd()).max().unwrap_or(base) + 1;
    }
    Err(io::Error::other("no free block of descriptors for the listening sockets"))
}

/// Waits for `READY=1` from the successor, or its exit, or [`READY_TIMEOUT`].
fn wait_ready(sock: &UnixDatagram, child: &mut Child) -> Result<(), UpgradeError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(UpgradeError::Exited(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(UpgradeError::Silent(READY_TIMEOUT));
        }
        // Short waits, so an exit is noticed within 100 ms.
        let _ = sock.set_read_timeout(Some(left.min(Duration::from_millis(100))));
        if let Ok(n) = sock.recv(&mut buf) {
            if buf[..n].split(|b| *b == b'\n').any(|line| line == b"READY=1") {
                return Ok(());
            }
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
