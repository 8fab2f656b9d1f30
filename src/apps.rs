//! The built-in apps the config can mount: `hello`, `echo`, `environ`, `healthz`,
//! `readyz`, `metrics`, `status`, `sleep`. They run on worker threads like any app; the ones
//! that report on the server read the shared figures (atomics, one pool lock).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::http::{App, AppResult, Request, Response};
use crate::shared::Shared;

/// The built-in app called `name`, or `None` for an unknown name (the config already
/// refuses those).
pub(crate) fn builtin(name: &str, shared: &Arc<Shared>) -> Option<Arc<dyn App>> {
    let shared = Arc::clone(shared);
    Some(match name {
        "hello" => Arc::new(Hello),
        "echo" => Arc::new(Echo),
        "environ" => Arc::new(Environ),
        "healthz" => Arc::new(Healthz),
        "readyz" => Arc::new(Readyz(shared)),
        "metrics" => Arc::new(Metrics(shared)),
        "status" => Arc::new(Status(shared)),
        "sleep" => Arc::new(Sleep),
        _ => return None,
    })
}

/// `200 text/plain`, `Hello, World!`.
pub struct Hello;
impl App for Hello {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        Ok(Response::bytes(200, "text/plain", b"Hello, World!\n".to_vec()))
    }
}

/// Returns the request body with the request's content type: from memory as it is, or,
/// when it was spilled to a temporary file, straight from that file with `sendfile(2)`.
pub struct Echo;
impl App for Echo {
    fn call(&self, req: Request<'_>) -> AppResult {
        let content_type = req.header("content-type").unwrap_or("application/octet-stream").to_string();
        Ok(Response {
            status: 200,
            reason: None,
            headers: vec![("Content-Type".into(), content_type)],
            body: req.into_body().into_response_body(),
        })
    }
}

/// The longest `/sleep?ms=N` sleeps.
const SLEEP_CAP_MS: u64 = 10_000;

/// `/sleep?ms=N`: waits N ms (at most 10 s), then answers `200` with how long it
/// slept: a blocking workload to benchmark and test with, like httpbin's `/delay`.
/// Not mounted by default.
pub struct Sleep;
impl App for Sleep {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        let ms = req.query().split('&').find_map(|kv| kv.strip_prefix("ms=")).unwrap_or("0");
        let Ok(ms) = ms.parse::<u64>() else {
            return Ok(Response::text(400, "ms must be a whole number of milliseconds\n"));
        };
        let ms = ms.min(SLEEP_CAP_MS);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(Response::text(200, format!("slept {ms} ms\n")))
    }
}

/// A text dump of the environ, like wsgiref's `demo_app`.
pub struct Environ;
impl App for Environ {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        let mut env = req.environ();
        env.push(("spindle.listener".into(), req.listener().to_string()));
        env.push(("spindle.request_id".into(), req.id().to_string()));
        env.sort();
        let mut out = String::from("Hello from spindle (environ):\n\n");
        for (k, v) in env {
            let _ = writeln!(out, "{k}={v}");
        }
        Ok(live(Response::bytes(200, "text/plain; charset=utf-8", out.into_bytes())))
    }
}

/// Liveness: 200 while the process serves.
pub struct Healthz;
impl App for Healthz {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        Ok(live(Response::bytes(200, "text/plain", b"ok\n".to_vec())))
    }
}

/// Readiness: 200, or 503 from the moment a graceful stop begins (during
/// `drain_delay` too, so a load balancer stops sending before listeners close).
pub struct Readyz(Arc<Shared>);
impl App for Readyz {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        Ok(live(if self.0.is_draining() {
            Response::bytes(503, "text/plain", b"draining\n".to_vec()).with_header("Retry-After", "1")
        } else {
            Response::bytes(200, "text/plain", b"ready\n".to_vec())
        }))
    }
}

/// A response about this moment (health, figures, the caller's own request): no cache
/// may store it, or a probe or a scrape could be answered with an old copy (RFC 9111
/// §5.2.2.5; REDbot flagged these as storable by any cache).
fn live(response: Response) -> Response {
    response.with_header("Cache-Control", "no-store")
}

/// The figures owned outside `Metrics`, as `(name, type, help, value)`.
fn figures(shared: &Shared) -> Vec<(&'static str, &'static str, &'static str, u64)> {
    let s = shared.stats();
    vec![
        ("spindle_connections_open", "gauge", "Open connections, parked ones included.", s.open as u64),
        ("spindle_connections_parked", "gauge", "Connections parked (no thread holds them).", s.parked as u64),
        (
            "spindle_connections_active",
            "gauge",
            "Connections with a worker or on the run queue.",
            s.open.saturating_sub(s.parked) as u64,
        ),
        ("spindle_pool_threads", "gauge", "Worker threads alive.", s.threads as u64),
        ("spindle_pool_busy_threads", "gauge", "Worker threads running a turn.", s.busy as u64),
        ("spindle_pool_min_threads", "gauge", "Configured minimum worker threads.", s.min_threads as u64),
        ("spindle_pool_max_threads", "gauge", "Configured maximum worker threads.", s.max_threads as u64),
        ("spindle_queue_depth", "gauge", "Connections on the run queue, waiting for a thread.", s.queued as u64),
        ("spindle_queue_capacity", "gauge", "Run queue capacity.", s.queue_capacity as u64),
        ("spindle_pool_panics_total", "counter", "Turns that panicked (caught).", s.panics),
        (
            "spindle_config_last_reload_successful",
            "gauge",
            "1 unless the last SIGHUP reload failed (the running config was kept).",
            u64::from(shared.reload_error().is_none()),
        ),
    ]
}

/// Prometheus text exposition.
pub struct Metrics(Arc<Shared>);
impl App for Metrics {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        let text = self.0.metrics.prometheus(&figures(&self.0));
        Ok(live(Response::bytes(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())))
    }
}

/// The same figures as JSON.
pub struct Status(Arc<Shared>);
impl App for Status {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult {
        let sh = &self.0;
        let s = sh.stats();
        let m = &sh.metrics;
        let r = &m.responses;
        let budgets: Vec<String> = sh
            .budgets
            .all()
            .iter()
            .map(|b| {
                format!(
                    "\"{}\":{{\"used\":{},\"limit\":{},\"waiting\":{},\"waits\":{}}}",
                    b.name(),
                    b.used(),
                    b.limit(),
                    b.waiting(),
                    b.waits_total()
                )
            })
            .collect();
        let budgets = budgets.join(",");
        let json = format!(
            concat!(
                "{{\"uptime_seconds\":{},\"draining\":{},",
                "\"connections\":{{\"open\":{},\"parked\":{},\"active\":{},\"accepted\":{},\"shed\":{},\"dropped\":{}}},",
                "\"pool\":{{\"threads\":{},\"busy\":{},\"min\":{},\"max\":{},\"queued\":{},\"capacity\":{},\"panics\":{}}},",
                "\"http\":{{\"responses\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\"bytes_in\":{},\"bytes_out\":{}}},",
                "\"echo\":{{\"bytes\":{}}},",
                "\"budgets\":{{{}}}}}\n"
            ),
            sh.started.elapsed().as_secs(),
            sh.is_draining(),
            s.open,
            s.parked,
            s.open.saturating_sub(s.parked),
            m.accepted.get(),
            m.shed.get(),
            m.dropped.get(),
            s.threads,
            s.busy,
            s.min_threads,
            s.max_threads,
            s.queued,
            s.queue_capacity,
            s.panics,
            r[0].get(),
            r[1].get(),
            r[2].get(),
            r[3].get(),
            r[4].get(),
            m.bytes_in.get(),
            m.bytes_out.get(),
            m.echo_bytes.get(),
            budgets,
        );
        Ok(live(Response::bytes(200, "application/json", json.into_bytes())))
    }
}
