//! The built-in apps the config can mount: `hello`, `echo`, `environ`, `healthz`,
//! `readyz`, `metrics`, `status`. They run on worker threads like any app; the ones
//! that report on the server read the shared figures (atomics, one pool lock).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::http::{App, AppResult, Request, Response};
use crate::server::Shared;

/// The built-in app called `name`, or `None` for an unknown name (the config already
/// refuses those).
pub fn builtin(name: &str, shared: &Arc<Shared>) -> Option<Arc<dyn App>> {
    let shared = Arc::clone(shared);
    Some(match name {
        "hello" => Arc::new(Hello),
        "echo" => Arc::new(Echo),
        "environ" => Arc::new(Environ),
        "healthz" => Arc::new(Healthz),
        "readyz" => Arc::new(Readyz(shared)),
        "metrics" => Arc::new(Metrics(shared)),
        "status" => Arc::new(Status(shared)),
        _ => return None,
    })
}

/// `200 text/plain`, `Hello, World!`.
pub struct Hello;
impl App for Hello {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
        Ok(Response::bytes(200, "text/plain", b"Hello, World!\n".to_vec()))
    }
}

/// Returns the request body, streamed, with the request's content type.
pub struct Echo;
impl App for Echo {
    fn call<'a>(&self, req: Request<'a>) -> AppResult<'a> {
        let content_type = req.header("content-type").unwrap_or("application/octet-stream").to_string();
        Ok(Response::stream(200, req.into_body()).with_header("Content-Type", &content_type))
    }
}

/// A text dump of the environ, like wsgiref's `demo_app`.
pub struct Environ;
impl App for Environ {
    fn call<'a>(&self, req: Request<'a>) -> AppResult<'a> {
        let mut env = req.environ();
        env.push(("spindle.listener".into(), req.listener().to_string()));
        env.push(("spindle.request_id".into(), req.id().to_string()));
        env.sort();
        let mut out = String::from("Hello from spindle (environ):\n\n");
        for (k, v) in env {
            let _ = writeln!(out, "{k}={v}");
        }
        Ok(Response::bytes(200, "text/plain; charset=utf-8", out.into_bytes()))
    }
}

/// Liveness: 200 while the process serves.
pub struct Healthz;
impl App for Healthz {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
        Ok(Response::bytes(200, "text/plain", b"ok\n".to_vec()))
    }
}

/// Readiness: 200, or 503 from the moment a graceful stop begins (during
/// `drain_delay` too, so a load balancer stops sending before listeners close).
pub struct Readyz(Arc<Shared>);
impl App for Readyz {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
        Ok(if self.0.draining.load(Ordering::SeqCst) {
            Response::bytes(503, "text/plain", b"draining\n".to_vec()).with_header("Retry-After", "1")
        } else {
            Response::bytes(200, "text/plain", b"ready\n".to_vec())
        })
    }
}

/// The figures that are gauges, shared by `metrics` and `status`.
fn gauges(shared: &Shared) -> Vec<(&'static str, &'static str, u64)> {
    let pool = shared.pool_stats();
    let m = &shared.metrics;
    vec![
        ("spindle_connections_open", "Open connections, parked ones included.", shared.registry.open() as u64),
        ("spindle_connections_parked", "Connections parked in the acceptor.", m.parked.get()),
        (
            "spindle_connections_active",
            "Connections with a worker or queued for one.",
            shared.in_flight.load(Ordering::Relaxed) as u64,
        ),
        ("spindle_pool_threads", "Worker threads alive.", pool.threads as u64),
        ("spindle_pool_busy_threads", "Worker threads running a job.", pool.busy as u64),
        ("spindle_pool_min_threads", "Configured minimum worker threads.", pool.min as u64),
        ("spindle_pool_max_threads", "Configured maximum worker threads.", pool.max as u64),
        ("spindle_queue_depth", "Jobs waiting for a worker.", pool.queued as u64),
        ("spindle_queue_capacity", "Queue capacity.", pool.capacity as u64),
        ("spindle_pool_panics_total", "Jobs that panicked (caught).", pool.panics),
    ]
}

/// Prometheus text exposition.
pub struct Metrics(Arc<Shared>);
impl App for Metrics {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
        let text = self.0.metrics.prometheus(&gauges(&self.0));
        Ok(Response::bytes(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes()))
    }
}

/// The same figures as JSON.
pub struct Status(Arc<Shared>);
impl App for Status {
    fn call<'a>(&self, _req: Request<'a>) -> AppResult<'a> {
        let s = &self.0;
        let pool = s.pool_stats();
        let m = &s.metrics;
        let r = &m.responses;
        let json = format!(
            concat!(
                "{{\"uptime_seconds\":{},\"draining\":{},",
                "\"connections\":{{\"open\":{},\"parked\":{},\"active\":{},\"accepted\":{},\"shed\":{}}},",
                "\"pool\":{{\"threads\":{},\"busy\":{},\"min\":{},\"max\":{},\"queued\":{},\"capacity\":{},\"panics\":{}}},",
                "\"http\":{{\"responses\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\"bytes_in\":{},\"bytes_out\":{}}},",
                "\"echo\":{{\"bytes\":{}}}}}\n"
            ),
            s.started.elapsed().as_secs(),
            s.draining.load(Ordering::SeqCst),
            s.registry.open(),
            m.parked.get(),
            s.in_flight.load(Ordering::Relaxed),
            m.accepted.get(),
            m.shed.get(),
            pool.threads,
            pool.busy,
            pool.min,
            pool.max,
            pool.queued,
            pool.capacity,
            pool.panics,
            r[0].get(),
            r[1].get(),
            r[2].get(),
            r[3].get(),
            r[4].get(),
            m.bytes_in.get(),
            m.bytes_out.get(),
            m.echo_bytes.get(),
        );
        Ok(Response::bytes(200, "application/json", json.into_bytes()))
    }
}
