//! Where in the file: turning byte spans into the `origin:line: key ...` of an error.
//!
//! The TOML parser gives every key and value a byte span; [`Ctx`] turns a span into
//! a 1-based line and builds the [`Error`] with the dotted key the operator will look
//! for. A TOML *syntax* error has a span but no key, so [`key_at`] recovers one from
//! the text around it (the nearest table header above, and the key on the line).
//! Pure code, used only while a config is being loaded.

use std::fmt;
use std::ops::Range;

use toml::de::DeValue;

use super::Error;

/// The text being loaded and what to call it in messages.
pub(super) struct Ctx<'a> {
    pub text: &'a str,
    pub origin: &'a str,
}

impl Ctx<'_> {
    /// 1-based line holding byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// An error about `key` at `span` (no line when there is no span), with the
    /// whole message as given.
    pub fn err(&self, span: Option<Range<usize>>, key: &str, message: String) -> Error {
        Error::Invalid {
            origin: self.origin.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            key: key.to_string(),
            message,
        }
    }

    /// `key` was given but is wrong: "`key` `what`" at `span`'s line.
    pub fn bad(&self, span: Range<usize>, key: &str, what: impl fmt::Display) -> Error {
        self.err(Some(span), key, format!("{key} {what}"))
    }

    /// A TOML syntax error, on one line, with the dotted key recovered from the
    /// text around its span.
    pub fn syntax_error(&self, e: &toml::de::Error) -> Error {
        let message = e.message().trim().replace('\n', "; ");
        let key = e.span().map(|span| key_at(self.text, span.start)).unwrap_or_default();
        let message = if key.is_empty() { message } else { format!("{key}: {message}") };
        self.err(e.span(), &key, message)
    }
}

/// A value as serde describes one in "invalid type" messages: `string "8"`,
/// `integer `1``, `table`.
pub(super) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string {s:?}"),
        DeValue::Integer(i) => format!("integer `{i}`"),
        DeValue::Float(f) => format!("floating point `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "array".to_string(),
        DeValue::Table(_) => "table".to_string(),
    }
}

/// The dotted key for byte `offset` of `text`, recovered from the text: the
/// nearest table header above (`[pool]`, `[[listener]]` as `listener[i]`)
/// joined with the key on the offset's own line. Best effort: a syntax error
/// carries a span but not a path; an empty string means "no idea".
pub(super) fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let lines: Vec<&str> = text.split('\n').collect();
    let line_index = text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
    let Some(line) = lines.get(line_index) else {
        return String::new();
    };

    // Header of the table the line is in, and which [[listener]] it is.
    let mut header: Option<String> = None;
    let mut listener_index: Option<usize> = None;
    for (i, l) in lines[..=line_index].iter().enumerate() {
        if let Some(h) = header_name(l) {
            if h.0 && h.1 == "listener" {
                listener_index = Some(listener_index.map_or(0, |n| n + 1));
            }
            if i < line_index || (i == line_index && !line.contains('=')) {
                header = Some(h.1);
            }
        }
    }
    let path = |name: &str| -> String {
        match (name.strip_prefix("listener"), listener_index) {
            (Some(rest), Some(n)) if rest.is_empty() || rest.starts_with('.') => {
                format!("listener[{n}]{rest}")
            }
            _ => name.to_string(),
        }
    };

    // The error is on a header line itself (e.g. an unclosed one).
    if header_name(line).is_some() {
        return header.map(|h| path(&h)).unwrap_or_default();
    }
    let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
    if key.is_empty() || key.starts_with('#') {
        return header.map(|h| path(&h)).unwrap_or_default();
    }
    if !is_toml_key(key) {
        // A syntax error on a line that holds no key: naming one would mislead.
        return String::new();
    }
    match header {
        Some(h) => format!("{}.{key}", path(&h)),
        None => path(key),
    }
}

/// `(is_array_of_tables, name)` when `line` is a `[table]` or `[[table]]` header.
fn header_name(line: &str) -> Option<(bool, String)> {
    let t = line.trim();
    let t = t.split_once('#').map_or(t, |(before, _)| before).trim_end();
    if let Some(inner) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
        return Some((true, normalize_key(inner)));
    }
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    Some((false, normalize_key(inner)))
}

/// Whether `key` is a plausible TOML key: dotted bare or quoted parts.
fn is_toml_key(key: &str) -> bool {
    let quoted = |p: &str| {
        p.len() >= 2 && ((p.starts_with('"') && p.ends_with('"')) || (p.starts_with('\'') && p.ends_with('\'')))
    };
    let bare = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    // Quoted parts may hold dots; a single quoted key is the common case here.
    quoted(key) || key.split('.').map(str::trim).all(|p| bare(p) || quoted(p))
}

fn normalize_key(key: &str) -> String {
    key.split('.').map(str::trim).collect::<Vec<_>>().join(".")
}

/// The candidate closest to `word`, if it is close enough to be what was meant: a
/// typo (at most two edits, counting a swap of neighbours as one) or a longer or
/// shorter form (`"warning"` for `warn`). Case is ignored.
pub(super) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Keys and levels are short; a long word is not a typo of one (and the distance
    // costs its length times theirs).
    if word.len() > 64 {
        return None;
    }
    let word = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let lower = c.to_ascii_lowercase();
        let (short, long) = if word.len() <= lower.len() { (&word, &lower) } else { (&lower, &word) };
        let distance =
            if short.len() >= 3 && long.starts_with(short.as_str()) { 1 } else { edit_distance(&word, &lower) };
        let close = distance <= 2 && distance * 2 <= word.len().max(1);
        if close && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of adjacent characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_and_longer_forms() {
        let levels = ["trace", "debug", "info", "warn", "error", "off"];
        for (word, want) in [
            ("warning", Some("warn")),
            ("inof", Some("info")),
            ("INFO", Some("info")),
            ("err", Some("error")),
            ("debg", Some("debug")),
            ("verbose", None),
            ("x", None),
            ("loud", None),
        ] {
            assert_eq!(did_you_mean(word, levels), want, "{word}");
        }
        assert_eq!(did_you_mean("mni_threads", ["min_threads", "max_threads"]), Some("min_threads"));
        assert_eq!(did_you_mean("serve", ["server", "pool", "limits"]), Some("server"));
    }

    #[test]
    fn key_at_names_the_key_of_a_syntax_error() {
        let text = "[pool]\nmin_threads = = 4\n[[listener]]\nname = \"a\"\n[[listener]]\nbind = x\n";
        assert_eq!(key_at(text, text.find("= 4").unwrap()), "pool.min_threads");
        assert_eq!(key_at(text, text.find("x\n").unwrap()), "listener[1].bind");
        // A line with no `=` is named by its table.
        assert_eq!(key_at("[pool]\nthis is not toml\n", 12), "pool");
    }
}
