//! Fuzz target: the config loader (`spindle::config::Config::parse`), fed any text.
//!
//! Checks: never panics; a refused config's message starts with the file it names
//! (every config error names file, key and line); an accepted one survives a round
//! trip through `to_toml` (what `spindle print-config` prints) into an equal
//! `Config`, as its documentation promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spindle::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            let printed = config.to_toml();
            match Config::parse(&printed, "printed.toml") {
                Ok(mut again) => {
                    // `check` writes a listener's default apps table out, so it comes
                    // back as written: the same apps, no longer marked as defaulted.
                    for (b, l) in again.listeners.iter_mut().zip(&config.listeners) {
                        assert!(!b.default_apps, "a written apps table read back as defaulted");
                        b.default_apps = l.default_apps;
                    }
                    assert_eq!(again, config, "round trip through:\n{printed}")
                }
                Err(e) => panic!("print-config output refused: {e}\n{printed}"),
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml"), "message without the file name: {message:?}");
        }
    }
});
