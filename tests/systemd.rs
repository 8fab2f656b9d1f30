//! Running under systemd: the sd_notify sequence (READY → RELOADING → READY →
//! STOPPING, WATCHDOG pings), socket activation through `systemd-socket-activate`
//! with curl and netcat, and `spindle healthcheck`.

mod util;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

const HTTP_AND_ECHO: &str = "[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
    [listener.apps]\n\"/\" = \"hello\"\n\"/healthz\" = \"healthz\"\n\
    [[listener]]\nname = \"echo\"\nbind = \"127.0.0.1:0\"\nprotocol = \"echo\"\n";

/// Collects sd_notify datagrams.
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    /// Waits for a datagram that satisfies `pred`; returns it.
    fn wait_msg(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no datagram with {what} from the daemon");
            self.0.set_read_timeout(Some(left)).unwrap();
            let n = self.0.recv(&mut buf).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if pred(&msg) {
                return msg;
            }
        }
    }

    /// Waits for a datagram containing `needle`; returns every message seen meanwhile.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} from the daemon; got {seen:?}");
            self.0.set_read_timeout(Some(left)).unwrap();
            match self.0.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    let found = msg.lines().any(|l| l == needle);
                    seen.push(msg);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("waiting for {needle:?}: {e}; got {seen:?}"),
            }
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn sd_notify_says_ready_reloading_ready_stopping_and_pings_the_watchdog() {
    let path = temp_dir().join("notify.sock");
    let sock = NotifySocket(UnixDatagram::bind(&path).unwrap());
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let mut daemon = Daemon::start_with(HTTP_AND_ECHO, &env);
    let seen = sock.wait_for("READY=1", WAIT);
    assert!(seen.last().unwrap().contains("STATUS="), "{seen:?}");
    // WATCHDOG_USEC = 200 ms: a ping every 100 ms, from the acceptor loop.
    let started = Instant::now();
    sock.wait_for("WATCHDOG=1", WAIT);
    sock.wait_for("WATCHDOG=1", WAIT);
    sock.wait_for("WATCHDOG=1", WAIT);
    assert!(started.elapsed() < Duration::from_secs(2), "pings too slow: {:?}", started.elapsed());

    daemon.signal("HUP");
    let seen = sock.wait_for("RELOADING=1", WAIT);
    let reloading = seen.last().unwrap();
    let usec =
        reloading.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect("MONOTONIC_USEC with RELOADING");
    assert!(usec.parse::<u64>().unwrap() > 0);
    sock.wait_for("READY=1", WAIT);

    daemon.signal("TERM");
    sock.wait_for("STOPPING=1", WAIT);
    assert_eq!(daemon.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_failed_reload_stays_in_the_status_line_until_a_reload_succeeds() {
    let path = temp_dir().join("notify.sock");
    let sock = NotifySocket(UnixDatagram::bind(&path).unwrap());
    let daemon = Daemon::start_with(HTTP_AND_ECHO, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    sock.wait_for("READY=1", WAIT);
    std::fs::write(&daemon.config, "[pool]\nmin_threads = 9\nmax_threads = 2\n").unwrap();
    daemon.signal("HUP");
    let failed = |m: &str| m.contains("STATUS=RELOAD FAILED") && m.contains("pool.min_threads");
    let after_reload = sock.wait_msg("READY=1 and the failure", WAIT, |m| m.contains("READY=1"));
    assert!(failed(&after_reload), "{after_reload}");
    // The periodic refresh (every 5 s, STATUS= alone) used to overwrite it.
    let refresh = sock.wait_msg("a periodic STATUS=", WAIT, |m| m.starts_with("STATUS=") && !m.contains("READY=1"));
    assert!(failed(&refresh), "{refresh}");
    std::fs::write(&daemon.config, HTTP_AND_ECHO).unwrap();
    daemon.signal("HUP");
    let fixed = sock.wait_msg("READY=1 after the fix", WAIT, |m| m.contains("READY=1"));
    assert!(fixed.contains("STATUS=") && !fixed.contains("RELOAD FAILED"), "{fixed}");
}

#[test]
fn sd_notify_reaches_an_abstract_socket() {
    let name = format!("spindle-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = NotifySocket(UnixDatagram::bind_addr(&addr).unwrap());
    let at = format!("@{name}");
    let daemon = Daemon::start_with(HTTP_AND_ECHO, &[("NOTIFY_SOCKET", at.as_str())]);
    sock.wait_for("READY=1", WAIT);
    daemon.signal("TERM");
    sock.wait_for("STOPPING=1", WAIT);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `systemd-socket-activate` on `n` free ports with `fdnames`, running spindle on
/// `config` with `extra` arguments; returns once it says it is listening, with the
/// ports and its remaining output. A port found free can be taken by someone else
/// before systemd-socket-activate binds it: then it is tried again on new ports.
fn spawn_activated(n: usize, fdnames: &str, config: &str, extra: &[&str]) -> (Child, Vec<u16>, Lines) {
    let path = write_config(config);
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut cmd = Command::new("systemd-socket-activate");
        for p in &ports {
            cmd.arg("-l").arg(format!("127.0.0.1:{p}"));
        }
        let mut child = cmd
            .arg(format!("--fdname={fdnames}"))
            .arg(bin())
            .args(extra)
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-socket-activate (from the systemd package) must be installed; .ci/run installs it");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut listening = 0;
        let mut said = Vec::new();
        while listening < n {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("Listening on") => listening += 1,
                Some(Ok(line)) => said.push(line),
                _ => break,
            }
        }
        if listening == n {
            return (child, ports, lines);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(said.iter().any(|l| l.contains("in use")), "systemd-socket-activate: {said:?}");
    }
    panic!("no free ports after 5 tries");
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// `spawn_activated`, draining the daemon's log in the background.
fn socket_activate(n: usize, fdnames: &str, config: &str, extra: &[&str]) -> (Child, Vec<u16>) {
    let (child, ports, lines) = spawn_activated(n, fdnames, config, extra);
    // Keep draining its stderr (the daemon's log) so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, ports)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn socket_activated_listeners_serve_curl_and_netcat() {
    let (mut child, ports) = socket_activate(2, "http:echo", HTTP_AND_ECHO, &[]);
    let (http, echo) = (ports[0], ports[1]);
    // The first connection makes systemd-socket-activate exec spindle on the sockets.
    let (ok, out) = run(Command::new("curl").args(["-s", "-m", "10", &format!("http://127.0.0.1:{http}/")]));
    assert!(ok && out == "Hello, World!\n", "curl through the activated socket: {out}");
    let (ok, out) =
        run(Command::new("sh").arg("-c").arg(format!("printf 'activated\\n' | timeout 5 nc -N 127.0.0.1 {echo}")));
    assert!(ok && out == "activated\n", "nc through the activated socket: {out}");
    let (ok, out) =
        run(Command::new(bin()).args(["healthcheck", "--url", &format!("http://127.0.0.1:{http}/healthz")]));
    assert!(ok, "healthcheck: {out}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = wait(&mut child);
    assert_eq!(status, Some(0));
}

fn wait(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("did not exit");
}

/// Runs spindle under `systemd-socket-activate` on `n` ports with `fdnames`, makes the
/// first connection (which execs spindle), and returns its exit status and log.
fn activate_and_collect(n: usize, fdnames: &str) -> (Option<i32>, String) {
    let (mut child, ports, lines) = spawn_activated(n, fdnames, HTTP_AND_ECHO, &[]);
    let _trigger = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    (wait(&mut child), log.join("\n"))
}

#[test]
fn socket_activation_that_does_not_fit_the_listeners_exits_2_with_a_clear_error() {
    // One socket, two listeners, and a name that matches neither.
    let (status, log) = activate_and_collect(1, "bogus");
    assert_eq!(status, Some(2), "{log}");
    assert!(log.contains("socket activation") && log.contains("http, echo"), "{log}");
}

#[test]
fn healthcheck_exits_0_on_200_and_non_zero_with_a_reason_otherwise() {
    let daemon = Daemon::start(HTTP_AND_ECHO);
    let http = daemon.addr("http");
    let (ok, out) = run(Command::new(bin()).args(["healthcheck", "--url", &format!("http://{http}/healthz")]));
    assert!(ok, "{out}");
    // Without --url: the first HTTP listener of the config (here bound to port 0, so
    // the default URL names port 0 and must fail cleanly, with one line).
    let (ok, out) = run(Command::new(bin()).args(["healthcheck", "--config"]).arg(&daemon.config));
    assert!(!ok && out.trim().lines().count() == 1, "{out}");
    let closed = free_port();
    let (ok, out) =
        run(Command::new(bin()).args(["healthcheck", "--url", &format!("http://127.0.0.1:{closed}/healthz")]));
    assert!(!ok && out.contains("connect"), "{out}");
    let (ok, out) = run(Command::new(bin()).args(["healthcheck", "--url", "ftp://x/"]));
    assert!(!ok && out.contains("http://"), "{out}");
}

#[test]
fn a_socket_name_that_matches_no_listener_exits_2_instead_of_guessing_by_position() {
    // Two sockets for two listeners, but one name is a typo: adopting by position could
    // serve HTTP on the echo port. Regression for a silent positional fall-back.
    let (status, log) = activate_and_collect(2, "http:ecoh");
    assert_eq!(status, Some(2), "{log}");
    assert!(log.contains("[\"ecoh\"], which is no [[listener]]") && log.contains("http, echo"), "{log}");
}

#[test]
fn a_listener_whose_socket_systemd_did_not_pass_is_bound_by_the_daemon() {
    // Only spindle-http.socket started: the daemon used to exit 2, the waiting
    // connection re-triggered it, and systemd gave up with start-limit-hit.
    let ready = temp_dir().join("ready");
    let ready_arg = ready.to_str().unwrap();
    let (mut child, ports) = socket_activate(1, "http", HTTP_AND_ECHO, &["--ready-file", ready_arg]);
    let http = ports[0];
    let (ok, out) = run(Command::new("curl").args(["-s", "-m", "10", &format!("http://127.0.0.1:{http}/")]));
    assert!(ok && out == "Hello, World!\n", "curl through the activated socket: {out}");
    // The echo listener (127.0.0.1:0 in the config) was bound by the daemon itself.
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        match std::fs::read_to_string(&ready) {
            Ok(text) => break text,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("no ready file: {e}"),
        }
    };
    let echo = listed
        .lines()
        .find_map(|l| l.strip_prefix("listener echo "))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("echo in the ready file")
        .port();
    let (ok, out) =
        run(Command::new("sh").arg("-c").arg(format!("printf 'self-bound\\n' | timeout 5 nc -N 127.0.0.1 {echo}")));
    assert!(ok && out == "self-bound\n", "nc to the listener the daemon bound itself: {out}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert_eq!(wait(&mut child), Some(0));
}
