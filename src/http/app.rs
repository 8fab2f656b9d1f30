//! The app interface: [`App`], the Rust shape of a WSGI callable, what it returns
//! ([`AppResult`]), and [`app_fn`] to make one of a closure. Apps run on worker
//! threads; nothing here touches a socket.

use std::sync::Arc;

use super::{Request, Response};

/// What an app returns: a response, or an error the server answers with 500 (or with
/// the body's own status when the error came from reading a malformed body).
pub type AppResult = Result<Response, AppError>;

/// An app's failure; logged with the request id, answered with 500.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// A WSGI-like application, called on a worker thread once per request.
///
/// `call` may block (it runs on a pool thread, not on an event loop) and may panic: a
/// panic is caught, answered with 500, logged with the request id, and the worker
/// carries on. The body has been received whole before `call` (in memory, or in a
/// temporary file when large), so reading it never waits on the client. The response
/// owns what it sends (`Response::stream(req.into_body())` streams the body back): the
/// server sends it after `call` has returned, from whichever worker finds the client
/// ready for more.
pub trait App: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Request<'_>) -> AppResult;
}

/// A shared app is an app: one instance mounted at several prefixes or listeners.
impl<A: App + ?Sized> App for Arc<A> {
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        (**self).call(req)
    }
}

/// Makes an [`App`] of a closure (hyper's `service_fn`): per-mount state is whatever
/// the closure captures.
///
/// ```
/// use spindle::http::{app_fn, Response};
/// let greeting = String::from("hi");
/// let app = app_fn(move |_req| Ok(Response::text(200, greeting.clone())));
/// # let _ = spindle::Server::builder(spindle::Config::embedded_default()).mount("/hi", app);
/// ```
pub fn app_fn<F>(f: F) -> AppFn<F>
where
    F: Fn(Request<'_>) -> AppResult + Send + Sync + 'static,
{
    AppFn(f)
}

/// A closure as an [`App`]; made by [`app_fn`].
pub struct AppFn<F>(F);

impl<F> App for AppFn<F>
where
    F: Fn(Request<'_>) -> AppResult + Send + Sync + 'static,
{
    fn call<'a>(&self, req: Request<'a>) -> AppResult {
        (self.0)(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseBody;
    use std::io::Read;

    #[test]
    fn a_closure_is_an_app_and_a_request_is_built_without_a_socket() {
        let prefix = String::from("seen");
        let app = app_fn(move |mut req| {
            let mut body = String::new();
            req.body().read_to_string(&mut body)?;
            let text = format!("{prefix} {} {} {} {body}", req.method(), req.script_name(), req.path_info());
            Ok(Response::text(200, text))
        });
        let req = Request::builder()
            .method("POST")
            .target("/api/items?x=1")
            .script_name("/api")
            .header("X-A", "1")
            .body("hello")
            .build()
            .unwrap();
        assert_eq!(req.query(), "x=1");
        assert_eq!(req.header("content-length"), Some("5"));
        assert_eq!(req.header("host"), Some("localhost"));
        let resp = app.call(req).unwrap();
        assert!(matches!(resp.body, ResponseBody::Bytes(ref b) if b == b"seen POST /api /items hello"));

        // What the server's parser refuses, the builder refuses too.
        for bad in [
            Request::builder().target("no-slash").build(),
            Request::builder().header("Bad Name", "v").build(),
            Request::builder().target("/other").script_name("/api").build(),
        ] {
            assert!(bad.is_err());
        }
    }
}
