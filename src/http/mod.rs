//! HTTP/1.1: the WSGI-like `App` interface, mounting apps on path prefixes, and the
//! pieces of a turn (`parse`, `body` and `receive` take a request in, sans-IO but for
//! the spill file; `encode` frames a response; `outgoing` sends what does not go out
//! at once; `early` lets an app start its response while it runs). The turn itself,
//! which drives these over a connection, is `crate::http_turn`.
//!
//! An [`App`] is the Rust shape of a WSGI callable: a `Send + Sync` value called on a
//! worker thread with a [`Request`] (the environ and the body as a `Read`) that returns a
//! [`Response`] (status, headers, and a body of bytes or a `Read` stream) or an error.
//! The server owns framing (`Content-Length` or chunked, `HEAD`, `100-continue`,
//! keep-alive, `Date`), limits and error answers; the app never sees the socket.
//!
//! ```
//! use spindle::http::{app_fn, App, AppResult, Request, Response};
//!
//! struct Hello;
//! impl App for Hello {
//!     fn call(&self, req: Request<'_>) -> AppResult {
//!         Ok(Response::text(200, format!("hello from {}\n", req.path())))
//!     }
//! }
//!
//! // The same as a closure, and called without a socket, as a unit test would:
//! let hello = app_fn(|req| Ok(Response::text(200, format!("hello from {}\n", req.path()))));
//! let req = Request::builder().target("/x").build().unwrap();
//! assert_eq!(hello.call(req).unwrap().status, 200);
//! ```

pub(crate) mod body;
pub(crate) mod early;
pub(crate) mod encode;
pub(crate) mod forwarded;
pub(crate) mod outgoing;
pub(crate) mod parse;
pub(crate) mod receive;

mod app;
mod request;
mod response;
mod router;

pub use app::{app_fn, App, AppError, AppFn, AppResult};
pub use early::EarlyResponse;
pub use parse::Version;
pub use request::{Body, BuildError, DisconnectProbe, Request, RequestBuilder};
pub use response::{FileBody, Response, ResponseBody};
pub use router::Router;
