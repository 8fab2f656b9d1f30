//! One definition per setting: what a key accepts, and the code that reads,
//! checks and writes every key the same way.
//!
//! A `[section]` is declared once with [`section!`]: one entry per key gives the
//! struct field, its type, its [`Kind`] (what the file may write there) and its
//! default. From that entry come the public struct, its `Default`, and the table of
//! [`Key`]s that [`read_table`] walks to parse and validate a file — every message
//! naming the dotted key and its line — and that [`write_keys`] walks to write the
//! effective config back out (`spindle check`). `config/spindle.toml` documents the
//! same keys, and a unit test in `mod.rs` fails when the two disagree, so the
//! reference cannot drift from the code. Listener tables use the same [`Key`] rows
//! through [`key!`]. (The idea is waitress's `adjustments.py` table and ripgrep's one
//! `Flag` impl per flag.) Pure code, run on whichever thread loads a config.

use crate::net::Network;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::locate::{describe, did_you_mean, Ctx};
use super::units::{fmt_duration, fmt_size, parse_duration, parse_size, MAX_DURATION};
use super::Error;

/// A key's value between the TOML text and a typed struct field.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Duration(Duration),
    Int(u64),
    Text(String),
    Bool(bool),
    Addr(SocketAddr),
    Apps(Vec<(String, String)>),
    Networks(Vec<Network>),
}

/// A struct field a [`Val`] is stored in. The [`Kind`] a key declares has already
/// checked the value's range, so `set` only converts.
pub(super) trait Slot {
    fn get(&self) -> Val;
    fn set(&mut self, v: Val);
}

macro_rules! int_slot {
    ($($t:ty),*) => {$(
        impl Slot for $t {
            fn get(&self) -> Val {
                Val::Int(u64::try_from(*self).unwrap_or(u64::MAX))
            }
            fn set(&mut self, v: Val) {
                if let Val::Int(n) = v {
                    *self = <$t>::try_from(n).unwrap_or(<$t>::MAX);
                }
            }
        }
    )*};
}
int_slot!(usize, u64, i32);

impl Slot for Duration {
    fn get(&self) -> Val {
        Val::Duration(*self)
    }
    fn set(&mut self, v: Val) {
        if let Val::Duration(d) = v {
            *self = d;
        }
    }
}

/// A timeout where the file's `"0s"` means never (`None`).
impl Slot for Option<Duration> {
    fn get(&self) -> Val {
        Val::Duration(self.unwrap_or(Duration::ZERO))
    }
    fn set(&mut self, v: Val) {
        if let Val::Duration(d) = v {
            *self = Some(d).filter(|d| !d.is_zero());
        }
    }
}

impl Slot for String {
    fn get(&self) -> Val {
        Val::Text(self.clone())
    }
    fn set(&mut self, v: Val) {
        if let Val::Text(s) = v {
            *self = s;
        }
    }
}

/// Text where the file's `""` means none (`None`).
impl Slot for Option<String> {
    fn get(&self) -> Val {
        Val::Text(self.clone().unwrap_or_default())
    }
    fn set(&mut self, v: Val) {
        if let Val::Text(s) = v {
            *self = Some(s).filter(|s| !s.is_empty());
        }
    }
}

impl Slot for bool {
    fn get(&self) -> Val {
        Val::Bool(*self)
    }
    fn set(&mut self, v: Val) {
        if let Val::Bool(b) = v {
            *self = b;
        }
    }
}

impl Slot for SocketAddr {
    fn get(&self) -> Val {
        Val::Addr(*self)
    }
    fn set(&mut self, v: Val) {
        if let Val::Addr(a) = v {
            *self = a;
        }
    }
}

impl Slot for Vec<(String, String)> {
    fn get(&self) -> Val {
        Val::Apps(self.clone())
    }
    fn set(&mut self, v: Val) {
        if let Val::Apps(a) = v {
            *self = a;
        }
    }
}

impl Slot for Vec<Network> {
    fn get(&self) -> Val {
        Val::Networks(self.clone())
    }
    fn set(&mut self, v: Val) {
        if let Val::Networks(n) = v {
            *self = n;
        }
    }
}

/// A config enum spelled as one of a few strings: declares the spellings once, and
/// from them `as_str`, `Display` and the [`Slot`] (`Kind::Choice(T::NAMES)`).
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every spelling a config file may use, in documentation order.
            pub(super) const NAMES: &'static [&'static str] = &[$($name),+];

            /// The value as a config file spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl super::keys::Slot for $ty {
            fn get(&self) -> super::keys::Val {
                super::keys::Val::Text(self.as_str().to_string())
            }
            fn set(&mut self, v: super::keys::Val) {
                if let Some(x) = match &v {
                    super::keys::Val::Text(s) => Self::from_name(s),
                    _ => None,
                } {
                    *self = x;
                }
            }
        }
    };
}
pub(super) use named;

/// What a key accepts, how its value is checked, and how it is written back.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// A duration string (`"30s"`); `positive` refuses `"0s"`.
    Duration { positive: bool },
    /// An integer from `min` to `max`.
    Count { min: u64, max: u64 },
    /// A byte size: an integer or a binary-unit string (`"16KiB"`), `min` to `max`.
    Size { min: u64, max: u64 },
    /// `true` or `false`.
    Bool,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A string; the function says what is wrong with it, if anything (the text
    /// follows the key name in the message).
    Text(fn(&str) -> Result<(), String>),
    /// An `ip:port`.
    Addr,
    /// A list of IP networks (`["10.0.0.0/8", "::1"]`).
    Networks,
    /// A sub-table, read by the function (the `[listener.apps]` table); written by
    /// its owner, not by [`write_keys`].
    Table(fn(&Ctx, &str, &DeTable) -> Result<Val, Error>),
}

/// A duration string that may be `"0s"`.
pub(super) const DURATION: Kind = Kind::Duration { positive: false };
/// A duration string that must be more than `"0s"`.
pub(super) const POSITIVE_DURATION: Kind = Kind::Duration { positive: true };

/// A count of at least `min` (its only bound: `usize::MAX` stands for none).
pub(super) const fn count(min: u64) -> Kind {
    Kind::Count { min, max: usize::MAX as u64 }
}

/// A size of at least `min` bytes that fits in memory (`usize`).
pub(super) const fn size(min: u64) -> Kind {
    Kind::Size { min, max: usize::MAX as u64 }
}

/// A count from `min` to `max`.
pub(super) const fn count_in(min: u64, max: u64) -> Kind {
    Kind::Count { min, max }
}

impl Kind {
    /// Reads the value `v` of the key `key` (dotted, for messages).
    fn read(&self, ctx: &Ctx, key: &str, v: &Spanned<DeValue>) -> Result<Val, Error> {
        let span = v.span();
        let invalid_type = |expected: &str| {
            ctx.err(
                Some(span.clone()),
                key,
                format!("{key}: invalid type: {}, expected {expected}", describe(v.get_ref())),
            )
        };
        match (*self, v.get_ref()) {
            (Kind::Duration { positive }, DeValue::String(s)) => match parse_duration(s) {
                Some(d) if d > MAX_DURATION => Err(ctx.err(
                    Some(span),
                    key,
                    format!("{key}: {s:?} is too long (at most 365 days; \"0s\" means never where allowed)"),
                )),
                Some(d) if positive && d.is_zero() => Err(ctx.bad(span, key, "must be more than 0s")),
                Some(d) => Ok(Val::Duration(d)),
                None => Err(ctx.err(
                    Some(span),
                    key,
                    format!("{key}: invalid duration {s:?} (use e.g. \"30s\" or \"250ms\")"),
                )),
            },
            (Kind::Duration { .. }, DeValue::Integer(n)) => Err(ctx.err(
                Some(span),
                key,
                format!("{key}: a duration needs a unit: write \"{n}s\" or \"{n}ms\", not {n}"),
            )),
            (Kind::Duration { .. }, other) => Err(ctx.err(
                Some(span),
                key,
                format!("{key}: expected a duration string such as \"30s\", found {}", other.type_str()),
            )),
            (Kind::Count { min, max }, DeValue::Integer(n)) => {
                let bounded = max != usize::MAX as u64;
                let out_of_range = |too_large: bool| match (bounded, too_large) {
                    (true, _) => ctx.bad(span.clone(), key, format_args!("({n}) must be from {min} to {max}")),
                    (false, true) => ctx.bad(span.clone(), key, format_args!("({n}) is too large")),
                    (false, false) => ctx.bad(span.clone(), key, format_args!("({n}) must be at least {min}")),
                };
                match i64::from_str_radix(n.as_str(), n.radix()).map(u64::try_from) {
                    Ok(Ok(n)) if (min..=max).contains(&n) => Ok(Val::Int(n)),
                    Ok(Ok(n)) => Err(out_of_range(n > max)),
                    Ok(Err(_)) => Err(out_of_range(false)),
                    Err(_) => Err(out_of_range(!n.as_str().starts_with('-'))),
                }
            }
            (Kind::Count { .. }, _) => Err(invalid_type("an integer")),
            (Kind::Size { min, max }, value) => {
                let hint = "(use a byte count, or e.g. \"16KiB\"; units: B, KiB, MiB, GiB)";
                let n = match value {
                    DeValue::Integer(n) => match i64::from_str_radix(n.as_str(), n.radix()).map(u64::try_from) {
                        Ok(Ok(bytes)) => bytes,
                        Ok(Err(_)) => return Err(ctx.err(Some(span), key, format!("{key}: size {n} is negative"))),
                        Err(_) => return Err(ctx.bad(span, key, format_args!("({n}) is too large"))),
                    },
                    DeValue::String(s) => match parse_size(s) {
                        Some(bytes) => bytes,
                        None => return Err(ctx.err(Some(span), key, format!("{key}: invalid size {s:?} {hint}"))),
                    },
                    other => {
                        return Err(ctx.err(
                            Some(span),
                            key,
                            format!("{key}: expected a size, found {} {hint}", other.type_str()),
                        ))
                    }
                };
                if n < min {
                    Err(ctx.bad(span, key, format_args!("({n}) must be at least {min}")))
                } else if n > max {
                    Err(ctx.bad(span, key, format_args!("({n}) is too large")))
                } else {
                    Ok(Val::Int(n))
                }
            }
            (Kind::Bool, DeValue::Boolean(b)) => Ok(Val::Bool(*b)),
            (Kind::Bool, _) => Err(invalid_type("a boolean")),
            (Kind::Choice(names), DeValue::String(s)) if names.contains(&s.as_ref()) => Ok(Val::Text(s.to_string())),
            (Kind::Choice(names), DeValue::String(s)) => {
                let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
                let choices = match quoted.split_last() {
                    Some((last, [first])) => format!("{first} or {last}"),
                    _ => format!("one of {}", quoted.join(", ")),
                };
                let hint = did_you_mean(s, names.iter().copied())
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                Err(ctx.bad(span, key, format_args!("{s:?} is not {choices}{hint}")))
            }
            (Kind::Text(check), DeValue::String(s)) => match check(s) {
                Ok(()) => Ok(Val::Text(s.to_string())),
                Err(what) => Err(ctx.bad(span, key, what)),
            },
            (Kind::Addr, DeValue::String(s)) => {
                // Host names are refused rather than resolved: loading a config
                // should not depend on DNS, and a name can resolve to several
                // addresses where a listener binds one.
                s.trim().parse().map(Val::Addr).map_err(|_| {
                    ctx.bad(
                        span,
                        key,
                        format_args!("{s:?} is not an ip:port address (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"),
                    )
                })
            }
            (Kind::Choice(_) | Kind::Text(_) | Kind::Addr, _) => Err(invalid_type("a string")),
            (Kind::Networks, DeValue::Array(items)) => {
                let mut nets = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => match s.trim().parse::<Network>() {
                            Ok(n) => nets.push(n),
                            Err(e) => return Err(ctx.bad(item.span(), key, format_args!("{e}"))),
                        },
                        other => {
                            return Err(ctx.err(
                                Some(item.span()),
                                key,
                                format!(
                                    "{key}: invalid type: {}, expected a network string such as \"10.0.0.0/8\"",
                                    describe(other)
                                ),
                            ))
                        }
                    }
                }
                Ok(Val::Networks(nets))
            }
            (Kind::Networks, _) => Err(invalid_type("an array of networks such as [\"127.0.0.1/32\"]")),
            (Kind::Table(read), DeValue::Table(table)) => read(ctx, key, table),
            (Kind::Table(_), _) => Err(invalid_type("a table")),
        }
    }

    /// The TOML text for `v`, or `None` for a [`Kind::Table`] (its owner writes it).
    fn write(&self, v: &Val) -> Option<String> {
        Some(match (self, v) {
            (Kind::Table(_), _) | (_, Val::Apps(_)) => return None,
            (Kind::Size { .. }, Val::Int(n)) => match fmt_size(*n) {
                Some(s) => quote(&s),
                // TOML integers are i64; sizes above that need a unit.
                None => i64::try_from(*n).map_or_else(|_| quote(&format!("{n}B")), |n| n.to_string()),
            },
            (_, Val::Int(n)) => n.to_string(),
            (_, Val::Duration(d)) => quote(&fmt_duration(*d)),
            (_, Val::Text(s)) => quote(s),
            (_, Val::Bool(b)) => b.to_string(),
            (_, Val::Addr(a)) => quote(&a.to_string()),
            (_, Val::Networks(n)) => {
                format!("[{}]", n.iter().map(|n| quote(&n.to_string())).collect::<Vec<_>>().join(", "))
            }
        })
    }
}

/// One setting of a table: its name in the file, what it accepts, whether the file
/// must give it, and the struct field it lives in.
pub(super) struct Key<S> {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub get: fn(&S) -> Val,
    pub set: fn(&mut S, Val),
}

impl<S> Key<S> {
    /// The value this key has in `s`, as the file would write it.
    pub fn toml(&self, s: &S) -> Option<String> {
        self.kind.write(&(self.get)(s))
    }
}

/// A [`Key`] row for `field` of struct `S`: `key!(S, field: kind)`, or
/// `key!(S, field: kind, required)`.
macro_rules! key {
    ($s:ty, $field:ident : $kind:expr) => {
        super::keys::key!(@row $s, $field, $kind, false)
    };
    ($s:ty, $field:ident : $kind:expr, required) => {
        super::keys::key!(@row $s, $field, $kind, true)
    };
    (@row $s:ty, $field:ident, $kind:expr, $required:expr) => {
        super::keys::Key::<$s> {
            name: stringify!($field),
            kind: $kind,
            required: $required,
            get: |s| super::keys::Slot::get(&s.$field),
            set: |s, v| super::keys::Slot::set(&mut s.$field, v),
        }
    };
}
pub(super) use key;

/// A `[section]` of the file: a struct with a default for every key.
pub(super) trait Section: Default + 'static {
    /// The table's name in the file.
    const NAME: &'static str;
    /// Its keys, in the order `to_toml` writes them.
    const KEYS: &'static [Key<Self>];
    /// Rules that relate several keys, run after every written key was read.
    fn finish(&mut self, _ctx: &Ctx, _written: &Written) -> Result<(), Error> {
        Ok(())
    }
}

/// Declares a section struct and its keys, one entry per key:
///
/// ```text
/// section! {
///     /// doc
///     pub struct Limits in "limits" {
///         /// doc
///         pub max_headers: usize = count(1) => 100;
///     }
/// }
/// ```
///
/// `= kind => default`: the [`Kind`] the file may write, then the Rust default.
/// An optional `finish path` after the table name names a [`Section::finish`].
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal $(finish $finish:path)? {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty = $kind:expr => $default:expr;
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )+ }
            }
        }

        impl super::keys::Section for $name {
            const NAME: &'static str = $table;
            const KEYS: &'static [super::keys::Key<Self>] = &[ $( super::keys::key!($name, $field: $kind), )+ ];
            $(
                fn finish(&mut self, ctx: &super::locate::Ctx, written: &super::keys::Written) -> Result<(), super::Error> {
                    $finish(self, ctx, written)
                }
            )?
        }
    };
}
pub(super) use section;

/// The keys a table in the file gave, with their value spans.
#[derive(Default)]
pub(super) struct Written(Vec<(&'static str, Range<usize>)>);

impl Written {
    /// The span of `name`'s value, if the file gave it.
    pub fn span(&self, name: &str) -> Option<Range<usize>> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone())
    }
}

/// `path.name`, or `name` at the top level.
pub(super) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The entries of `table` in file order (the parser hands them over sorted by key).
pub(super) fn in_file_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// An "unknown field" error for key `name` (at `span`) in the table at `path`,
/// listing what is known and suggesting the closest.
pub(super) fn unknown(ctx: &Ctx, path: &str, name: &str, span: Range<usize>, known: &[&'static str]) -> Error {
    let dotted = join(path, name);
    let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    let hint = did_you_mean(name, known.iter().copied()).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
    ctx.err(Some(span), &dotted, format!("{dotted}: unknown field `{name}`, expected one of {}{hint}", list.join(", ")))
}

/// Reads the table `value` (at dotted `path`) into `into` through `keys`: unknown
/// keys, values of the wrong kind and missing required keys are errors naming the
/// key and its line. Keys the file does not give keep their value in `into`.
pub(super) fn read_table<S>(
    ctx: &Ctx,
    path: &str,
    keys: &[Key<S>],
    value: &Spanned<DeValue>,
    into: &mut S,
) -> Result<Written, Error> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(ctx.err(
            Some(value.span()),
            path,
            format!("{path}: invalid type: {}, expected a table", describe(value.get_ref())),
        ));
    };
    let mut written = Written::default();
    for (name, v) in in_file_order(table) {
        let Some(key) = keys.iter().find(|k| k.name == name.get_ref()) else {
            let known: Vec<&'static str> = keys.iter().map(|k| k.name).collect();
            return Err(unknown(ctx, path, name.get_ref(), name.span(), &known));
        };
        (key.set)(into, key.kind.read(ctx, &join(path, key.name), v)?);
        written.0.push((key.name, v.span()));
    }
    if let Some(missing) = keys.iter().find(|k| k.required && written.span(k.name).is_none()) {
        let dotted = join(path, missing.name);
        return Err(ctx.err(Some(value.span()), &dotted, format!("{dotted} is required")));
    }
    Ok(written)
}

/// Appends `key = value` for every key of `s` that is written inline.
pub(super) fn write_keys<S>(out: &mut String, keys: &[Key<S>], s: &S) {
    for key in keys {
        if let Some(value) = key.toml(s) {
            kv(out, key.name, &value);
        }
    }
}

/// Appends one `key = value` line.
pub(super) fn kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(value);
    out.push('\n');
}

/// A TOML string literal (also usable as a quoted key), escaped by toml itself.
pub(super) fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_write_back_to_the_same_value() {
        let kind = size(0);
        for n in [0u64, 1, 1000, 16384, 16 << 20, 3 << 30, u64::MAX] {
            let text = kind.write(&Val::Int(n)).unwrap();
            let v: toml::Value = text.parse().unwrap();
            let got = match v {
                toml::Value::Integer(i) => i as u64,
                toml::Value::String(s) => parse_size(&s).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(got, n);
        }
    }
}
