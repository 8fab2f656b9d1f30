//! Counters and gauges shared by every thread, and their Prometheus text rendering.
//!
//! Everything is a relaxed atomic: figures are for operators, not for synchronisation.
//! Writers are the acceptor (accepted, shed) and the workers (requests, bytes,
//! durations); readers are the `metrics` and `status` apps and the stop summary. The
//! byte budgets keep their own figures (`budget.rs`); `Metrics` holds a handle on them
//! to render them with the rest.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{Budget, Budgets};

/// A monotonically increasing counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the request-duration histogram buckets, in seconds.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A fixed-bucket histogram of durations.
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [Counter; BUCKETS.len()],
    count: Counter,
    sum_micros: Counter,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].inc();
        }
        self.count.inc();
        self.sum_micros.add(d.as_micros() as u64);
    }
}

/// The process-wide figures.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections (or requests) turned away because the queue was full.
    pub shed: Counter,
    /// Queued work dropped unrun because its client hung up while it waited.
    pub dropped: Counter,
    /// Connections closed unanswered on a `proxy_protocol` listener: from outside
    /// `proxy_trusted`, with an invalid PROXY header, or none within `header_timeout`.
    pub proxy_rejected: Counter,
    /// Failed accepts other than the transient ones (EMFILE, ENFILE, ENOBUFS).
    pub accept_errors: Counter,
    /// Bytes echoed.
    pub echo_bytes: Counter,
    /// HTTP responses by status class: index 0 = 1xx … 4 = 5xx.
    pub responses: [Counter; 5],
    /// HTTP request bytes read (heads and bodies).
    pub bytes_in: Counter,
    /// HTTP response bytes written.
    pub bytes_out: Counter,
    /// HTTP responses cut off because the client took them slower than
    /// `body_timeout` or `min_send_rate` allow.
    pub send_cut: Counter,
    /// HTTP request durations (head read to response written).
    pub durations: Histogram,
    /// The byte budgets whose figures are rendered with these (none by default).
    budgets: Vec<Arc<Budget>>,
}

/// The figures of every budget, one labelled series each: (name, type, help, value).
type BudgetFigure = (&'static str, &'static str, &'static str, fn(&Budget) -> u64);
const BUDGET_FIGURES: [BudgetFigure; 4] = [
    (
        "spindle_budget_used_bytes",
        "gauge",
        "Bytes held in a process-wide budget: memory (request bodies and pending response output) or disk (spilled request bodies).",
        Budget::used,
    ),
    (
        "spindle_budget_limit_bytes",
        "gauge",
        "A budget's limit (limits.memory_budget, limits.disk_budget).",
        Budget::limit,
    ),
    (
        "spindle_budget_waiting_connections",
        "gauge",
        "Connections waiting, unread, for room in a budget.",
        Budget::waiting,
    ),
    (
        "spindle_budget_waits_total",
        "counter",
        "Times a connection found a budget full and had to wait for room.",
        Budget::waits_total,
    ),
];

impl Metrics {
    /// Zeroed figures, rendered with those of `budgets`.
    pub(crate) fn with_budgets(budgets: &Budgets) -> Metrics {
        Metrics { budgets: budgets.all().into_iter().cloned().collect(), ..Metrics::default() }
    }

    /// Counts one response with `status`.
    pub fn response(&self, status: u16, duration: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].inc();
        self.durations.observe(duration);
    }

    /// Renders the counters in Prometheus text exposition format (0.0.4); `owned`
    /// adds figures owned elsewhere (pool, connections) as `(name, type, help, value)`,
    /// the type being `"gauge"` or `"counter"`.
    pub fn prometheus(&self, owned: &[(&str, &str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        one("spindle_connections_accepted_total", "counter", "Connections accepted.", self.accepted.get());
        one(
            "spindle_shed_total",
            "counter",
            "Connections or requests turned away: every worker busy and the run queue full, or queued past queue_timeout.",
            self.shed.get(),
        );
        one(
            "spindle_dropped_total",
            "counter",
            "Queued requests not run because their client hung up while they waited.",
            self.dropped.get(),
        );
        one(
            "spindle_accept_errors_total",
            "counter",
            "Accepts that failed for lack of resources (EMFILE, ENFILE, ENOBUFS); accepting pauses 100 ms after each.",
            self.accept_errors.get(),
        );
        one(
            "spindle_proxy_rejected_total",
            "counter",
            "Connections closed unanswered on a proxy_protocol listener: untrusted source, invalid PROXY header, or none in time.",
            self.proxy_rejected.get(),
        );
        one("spindle_echo_bytes_total", "counter", "Bytes echoed.", self.echo_bytes.get());
        one(
            "spindle_responses_cut_total",
            "counter",
            "Responses cut off because the client took them slower than body_timeout or min_send_rate allow.",
            self.send_cut.get(),
        );
        one("spindle_http_request_bytes_total", "counter", "HTTP request bytes read.", self.bytes_in.get());
        one("spindle_http_response_bytes_total", "counter", "HTTP response bytes written.", self.bytes_out.get());
        for (name, kind, help, v) in owned {
            one(name, kind, help, *v);
        }
        if !self.budgets.is_empty() {
            for (name, kind, help, value) in BUDGET_FIGURES {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for b in &self.budgets {
                    let _ = writeln!(out, "{name}{{budget=\"{}\"}} {}", b.name(), value(b));
                }
            }
        }
        let _ = writeln!(out, "# HELP spindle_http_responses_total HTTP responses by status class.");
        let _ = writeln!(out, "# TYPE spindle_http_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(out, "spindle_http_responses_total{{class=\"{}xx\"}} {}", i + 1, c.get());
        }
        let h = &self.durations;
        let _ =
            writeln!(out, "# HELP spindle_http_request_duration_seconds Time from request head to response written.");
        let _ = writeln!(out, "# TYPE spindle_http_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (bound, c) in BUCKETS.iter().zip(h.buckets.iter()) {
            cumulative += c.get();
            let _ = writeln!(out, "spindle_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "spindle_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count.get());
        let _ = writeln!(out, "spindle_http_request_duration_seconds_sum {}", h.sum_micros.get() as f64 / 1e6);
        let _ = writeln!(out, "spindle_http_request_duration_seconds_count {}", h.count.get());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let budgets = Budgets::new(&crate::config::Limits::default());
        let m = Metrics::with_budgets(&budgets);
        let mut held = budgets.disk.hold();
        assert!(held.grow(1000));
        let _waiting = budgets.memory.wait_begin();
        m.response(200, Duration::from_micros(300));
        m.response(404, Duration::from_millis(20));
        m.response(503, Duration::from_secs(10));
        let text = m.prometheus(&[
            ("spindle_pool_threads", "gauge", "Worker threads.", 4),
            ("spindle_pool_panics_total", "counter", "Turns that panicked.", 1),
        ]);
        for line in [
            "spindle_http_responses_total{class=\"2xx\"} 1",
            "spindle_http_responses_total{class=\"4xx\"} 1",
            "spindle_http_responses_total{class=\"5xx\"} 1",
            "spindle_http_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "spindle_http_request_duration_seconds_bucket{le=\"0.025\"} 2",
            "spindle_http_request_duration_seconds_bucket{le=\"5\"} 2",
            "spindle_http_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "spindle_http_request_duration_seconds_count 3",
            "spindle_pool_threads 4",
            "# TYPE spindle_pool_threads gauge",
            "# TYPE spindle_pool_panics_total counter",
            "# TYPE spindle_budget_used_bytes gauge",
            "spindle_budget_used_bytes{budget=\"memory\"} 0",
            "spindle_budget_used_bytes{budget=\"disk\"} 1000",
            "spindle_budget_limit_bytes{budget=\"memory\"} 134217728",
            "spindle_budget_limit_bytes{budget=\"disk\"} 536870912",
            "spindle_budget_waiting_connections{budget=\"memory\"} 1",
            "# TYPE spindle_budget_waits_total counter",
            "spindle_budget_waits_total{budget=\"memory\"} 1",
            "spindle_budget_waits_total{budget=\"disk\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // One HELP and one TYPE per name, however many labelled series it has.
        assert_eq!(text.matches("# TYPE spindle_budget_used_bytes ").count(), 1, "{text}");
    }
}
