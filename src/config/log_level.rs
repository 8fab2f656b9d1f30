//! `log.level`: which filter strings a config may give, checked when it is loaded.
//!
//! The value becomes a `tracing_subscriber::EnvFilter`, which reads any word it does
//! not know as a *target name*: `level = "warning"` or `"inof"` parsed fine, matched
//! no target, and the daemon then wrote no line at all — errors and the stop summary
//! included, and through SIGHUP too. So the loader accepts only what an operator
//! means: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`, any case), or
//! EnvFilter directives `target=level` (a bare level sets the default) joined by
//! commas, every level part one of those. Anything else is a config error naming the
//! bad part and, where one is close, the level that was probably meant. Runs on
//! whichever thread loads a config (start-up, or the signal thread on SIGHUP).

use super::locate::did_you_mean;

/// The levels a directive may name.
pub(super) const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// What to write instead, said in every rejection.
const ACCEPTED: &str =
    "accepted: trace, debug, info, warn, error, off, or target=level directives joined by commas, e.g. \"info,spindle::access=warn\"";

/// `Ok` when `filter` is levels and `target=level` directives only; else the text
/// that follows `log.level` in the error message.
pub(super) fn check(filter: &str) -> Result<(), String> {
    let directives: Vec<&str> = filter.split(',').filter(|d| !d.trim().is_empty()).collect();
    if directives.is_empty() {
        return Err(format!("{filter:?} names no level ({ACCEPTED})"));
    }
    // EnvFilter would read a spaced-out directive as a target name, or refuse it
    // with a message about level filters; say what is actually wrong.
    if filter.chars().any(char::is_whitespace) {
        return Err(format!("{filter:?} holds a space: write directives without spaces ({ACCEPTED})"));
    }
    for directive in &directives {
        // The last `=` splits off the level: a span filter such as
        // `target[span{field=x}]=debug` holds `=` in its target part.
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, *directive),
        };
        let within = if directives.len() > 1 || target.is_some() { format!(" in {filter:?}") } else { String::new() };
        if target == Some("") {
            return Err(format!("{directive:?}{within} has no target before '=' ({ACCEPTED})"));
        }
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let hint = did_you_mean(level, LEVELS.iter().copied())
                .map(|l| format!("; did you mean {l:?}?"))
                .unwrap_or_default();
            return Err(format!("{level:?}{within} is not a log level{hint} ({ACCEPTED})"));
        }
    }
    // The target syntax itself (brackets, span fields) is EnvFilter's to judge.
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
        return Err(format!("{filter:?} is not a valid filter: {} ({ACCEPTED})", e.to_string().replace('\n', "; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_accepted() {
        for filter in [
            "info",
            "INFO",
            "Warn",
            "off",
            "trace",
            "info,spindle::access=off",
            "spindle=debug",
            "info,",
            "spindle[request]=debug",
        ] {
            assert_eq!(check(filter), Ok(()), "{filter}");
        }
        // Any case means the level, not a target of that name, to EnvFilter too.
        use tracing_subscriber::filter::LevelFilter;
        for (filter, level) in [("INFO", LevelFilter::INFO), ("Warn", LevelFilter::WARN), ("OFF", LevelFilter::OFF)] {
            let parsed = tracing_subscriber::EnvFilter::try_new(filter).unwrap();
            assert_eq!(parsed.max_level_hint(), Some(level), "{filter}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_hint() {
        for (filter, needle) in [
            ("warning", "\"warning\" is not a log level; did you mean \"warn\"?"),
            ("inof", "\"inof\" is not a log level; did you mean \"info\"?"),
            ("verbose", "\"verbose\" is not a log level ("),
            // A bare word is a target name to EnvFilter: the bug this module exists for.
            ("spindle", "\"spindle\" is not a log level"),
            ("info,spindle=loud", "\"loud\" in \"info,spindle=loud\" is not a log level"),
            ("info,[[[", "\"[[[\" in \"info,[[[\" is not a log level"),
            ("=debug", "has no target before '='"),
            ("", "names no level"),
            (",", "names no level"),
            ("3", "is not a log level"),
            ("spindle = debug", "holds a space"),
            ("info, spindle=debug", "holds a space"),
        ] {
            let e = check(filter).expect_err(filter);
            assert!(e.contains(needle), "{filter:?}: {e}");
            assert!(e.contains("accepted: trace, debug, info, warn, error, off"), "{filter:?}: {e}");
        }
    }
}
