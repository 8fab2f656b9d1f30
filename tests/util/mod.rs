//! Shared by the integration tests: start the real `spindle` binary on a config with
//! `127.0.0.1:0` listeners, wait for its `--ready-file` (which names the bound ports),
//! send it signals, and talk to it over real sockets with read timeouts.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Every client in the tests uses this read timeout, so a hang fails instead of blocking.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spindle"))
}

/// A fresh directory under the system temp dir.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("spindle-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `text` to a new config file.
pub fn write_config(text: &str) -> PathBuf {
    let path = temp_dir().join("spindle.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// An echo listener config with the given `[pool]` and `[limits]` bodies.
pub fn echo_config(pool: &str, limits: &str) -> String {
    format!(
        "[server]\ngraceful_timeout = \"10s\"\n[pool]\n{pool}\n[limits]\n{limits}\n[log]\nlevel = \"info\"\n\
         [[listener]]\nname = \"echo\"\nbind = \"127.0.0.1:0\"\nprotocol = \"echo\"\n"
    )
}

/// The log the daemon has written so far, and a condvar rung on every line.
#[derive(Default)]
pub struct Log {
    text: Mutex<String>,
    grew: Condvar,
    /// Set when the daemon's stderr reached EOF: the log is complete.
    closed: std::sync::atomic::AtomicBool,
}

impl Log {
    /// Waits until the log contains `needle` (or `timeout`); returns the log.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        loop {
            if text.contains(needle) {
                return Ok(text.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("log never contained {needle:?}:\n{text}"));
            }
            text = self.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    /// Waits until the daemon's stderr is closed (it exited and every line is in).
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        while !self.closed.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
        true
    }

    pub fn count(&self, needle: &str) -> usize {
        self.text.lock().unwrap().matches(needle).count()
    }

    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

/// A running daemon, killed (by its PID) if the test ends without stopping it.
pub struct Daemon {
    pub child: Child,
    pub addrs: HashMap<String, SocketAddr>,
    pub log: Arc<Log>,
    pub config: PathBuf,
}

impl Daemon {
    /// Starts the binary on `config_text` and waits for its `ready` line.
    pub fn start(config_text: &str) -> Daemon {
        Self::start_with(config_text, &[])
    }

    pub fn start_with(config_text: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_under(&[], config_text, env)
    }

    /// Starts the binary through `wrapper` (a command that execs its arguments, such
    /// as `prlimit --nofile=64:64`), so the PID is still the daemon's.
    pub fn start_under(wrapper: &[&str], config_text: &str, env: &[(&str, &str)]) -> Daemon {
        Self::launch(wrapper, &bin(), config_text, env)
    }

    /// Starts a copy of the binary at `exe` (for tests that replace the file).
    pub fn start_exe(exe: &std::path::Path, config_text: &str) -> Daemon {
        Self::launch(&[], exe, config_text, &[])
    }

    fn launch(wrapper: &[&str], exe: &std::path::Path, config_text: &str, env: &[(&str, &str)]) -> Daemon {
        let config = write_config(config_text);
        let ready = config.with_file_name("ready");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.arg("--ready-file")
            .arg(&ready)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn spindle");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                sink.grew.notify_all();
            }
            let _text = sink.text.lock().unwrap();
            sink.closed.store(true, Ordering::SeqCst);
            sink.grew.notify_all();
        });
        // Readiness: the daemon writes the ready file once it serves (every listener
        // bound, signals handled), with the bound addresses.
        let deadline = Instant::now() + Duration::from_secs(20);
        let addrs = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break parse_ready_file(&text);
            }
            if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                log.wait_closed(Duration::from_secs(2));
                panic!("spindle did not get ready:\n{}", log.text());
            }
            thread::sleep(Duration::from_millis(5));
        };
        Daemon { child, addrs, log, config }
    }

    /// The log up to the daemon's `ready` line: all it said while starting. The ready
    /// file is written after that line, but the line can still be in the pipe when the
    /// file appears, so a test that reads start-up lines waits for it here.
    pub fn startup_log(&self) -> String {
        self.log.wait_for("ready min_threads=", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        *self.addrs.get(name).unwrap_or_else(|| panic!("no listener {name} in {:?}", self.addrs))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit, at most `timeout`; then for its last log lines
    /// to be read, so assertions on the log see all of it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.log.wait_closed(Duration::from_secs(5));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Names of the process's threads, from /proc.
    pub fn thread_names(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.pid());
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }

    pub fn workers(&self) -> usize {
        self.thread_names().iter().filter(|n| n.starts_with("worker-")).count()
    }

    /// Waits until `f` holds (checking every 10 ms) or `timeout`.
    pub fn eventually(&self, timeout: Duration, mut f: impl FnMut(&Daemon) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        f(self)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `listener NAME ADDRESS` lines of a `--ready-file` → map.
fn parse_ready_file(text: &str) -> HashMap<String, SocketAddr> {
    text.lines()
        .filter_map(|l| l.strip_prefix("listener "))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(name, addr)| Some((name.to_string(), addr.parse().ok()?)))
        .collect()
}

/// A client socket with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    s
}

/// Sends `msg` and reads exactly its length back.
pub fn echo_once(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// A deterministic pseudo-random byte stream (xorshift64*), so a reader can
/// regenerate what a writer sent.
pub struct Bytes(u64);

impl Bytes {
    pub fn new(seed: u64) -> Self {
        Bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a over a byte slice: a cheap content hash for comparing streams.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Raises this test process's open-files limit (the tests open thousands of sockets).
pub fn raise_nofile() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// An app that says it has started (on `entered`), sleeps 1.5 s, then answers `body`:
/// a request that is in flight for a known while, for the shutdown tests.
pub struct SlowApp {
    pub entered: std::sync::mpsc::SyncSender<()>,
    pub body: &'static str,
}

impl spindle::App for SlowApp {
    fn call<'a>(&self, _req: spindle::http::Request<'a>) -> spindle::http::AppResult {
        let _ = self.entered.send(());
        thread::sleep(Duration::from_millis(1500));
        Ok(spindle::http::Response::text(200, self.body))
    }
}
