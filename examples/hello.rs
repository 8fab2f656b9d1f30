//! Embedding spindle: serve your own App with the same pool, limits, signals and
//! graceful shutdown as the daemon.
//!
//! ```sh
//! cargo run --example hello            # then: curl http://127.0.0.1:8080/hello/world
//! ```
//!
//! The handler may block (here `/hello/slow` sleeps): it runs on a pool thread, so the
//! other clients are served meanwhile — what eventlet could only do with monkey patching.

use std::time::Duration;

use spindle::http::{AppResult, Request, Response};
use spindle::{App, Config, Server};

struct Greeter;

impl App for Greeter {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        if req.path_info() == "/slow" {
            std::thread::sleep(Duration::from_millis(500));
        }
        let who = req.path_info().trim_start_matches('/');
        let who = if who.is_empty() { "world" } else { who };
        Ok(Response::text(200, format!("hello, {who} (request {})\n", req.id())))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config =
        Config::parse("[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n", "<example>")?;
    let server = Server::builder(config).mount("/hello", Greeter).signals(true).build()?;
    server.run()?; // until SIGTERM / Ctrl-C; every thread joined when it returns
    Ok(())
}
