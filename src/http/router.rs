//! Apps mounted on path prefixes, as `[listener.apps]` says: the [`Router`] a listener
//! looks each request's path up in (read-only once built, shared by every worker).

use std::sync::Arc;

use super::App;

/// Apps mounted on path prefixes: the longest prefix that matches on a segment
/// boundary wins (WSGI `URLMap`): `/echo` serves `/echo` and `/echo/x`, not `/echoes`.
#[derive(Default)]
pub struct Router {
    /// `(prefix without trailing slash, app)`, longest first; "/" is stored as "".
    mounts: Vec<(String, Arc<dyn App>)>,
}

impl Router {
    /// Builds a router from `(prefix, app)` pairs; a later pair replaces an earlier one
    /// at the same prefix (so an embedding program's mounts win over built-in ones).
    pub(crate) fn new(pairs: Vec<(String, Arc<dyn App>)>) -> Router {
        let mut mounts: Vec<(String, Arc<dyn App>)> = Vec::new();
        for (prefix, app) in pairs {
            let prefix = prefix.trim_end_matches('/').to_string();
            mounts.retain(|(p, _)| *p != prefix);
            mounts.push((prefix, app));
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        Router { mounts }
    }

    /// The app for `path` and its `SCRIPT_NAME`.
    pub fn route(&self, path: &str) -> Option<(&str, &Arc<dyn App>)> {
        self.mounts.iter().find_map(|(prefix, app)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((prefix.as_str(), app))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{AppResult, Request, Response};

    struct Named;
    impl App for Named {
        fn call(&self, _req: Request<'_>) -> AppResult {
            Ok(Response::empty(204))
        }
    }

    #[test]
    fn longest_prefix_on_a_segment_boundary_wins() {
        let app: Arc<dyn App> = Arc::new(Named);
        let mut mounts: Vec<(String, Arc<dyn App>)> =
            ["", "/echo", "/a/b"].iter().map(|p| (p.to_string(), Arc::clone(&app))).collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        let router = Router { mounts };
        for (path, script) in [
            ("/", Some("")),
            ("/echo", Some("/echo")),
            ("/echo/x", Some("/echo")),
            ("/echoes", Some("")),
            ("/a/b/c", Some("/a/b")),
            ("/a/bc", Some("")),
        ] {
            assert_eq!(router.route(path).map(|(s, _)| s), script, "{path}");
        }
        let only_echo = Router { mounts: vec![("/echo".into(), app)] };
        assert!(only_echo.route("/").is_none());
        assert!(only_echo.route("/other").is_none());
    }
}
