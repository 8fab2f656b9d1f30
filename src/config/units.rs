//! Durations and sizes as a config file spells them: `"250ms"`, `"30s"`, `"16KiB"`.
//!
//! Pure functions, used by the key readers when a file is loaded and by
//! `Config::to_toml` (and the log lines that print a duration) on the way back out.
//! Parsing is exact (`"0.1s"` is 100 ms, no float rounding) and strict: a unit is
//! required on a duration and decimal size units are refused, because "30 what?" and
//! "is a KB 1000 or 1024?" are the ambiguities a unit is there to remove.

use std::time::Duration;

/// The longest duration a config may give. Deadlines are `Instant + duration`; an
/// absurd value would overflow there (a panic on the acceptor thread).
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `"30s"`, `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"0s"` (units ns, us, ms,
/// s, m, h; an optional space before the unit).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit.trim_start() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (number.contains('.') && !digits(frac)) || frac.len() > 18 {
        return None;
    }
    let mut total = int.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    if !frac.is_empty() {
        let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
        total = total.checked_add(frac.parse::<u128>().ok()? * unit_nanos / scale)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// A duration as a config file writes it, and as log lines should print it: the
/// shortest exact spelling among s, ms, us and ns (`"0s"`, `"250ms"`, `"30s"`,
/// `"1500ms"`). [`Duration`]'s own `Debug` prints `0ns` and `1.5s`, which a reader
/// then has to map back to the file.
pub fn fmt_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if nanos % 1_000 == 0 {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Parses `"16384"`, `"512B"`, `"16KiB"`, `"1MiB"`, `"1GiB"` (an optional space
/// before the unit). Decimal units like `"16KB"` are refused rather than guessed at,
/// since half the world reads them as 1000 and half as 1024.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let factor: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// `bytes` in the largest binary unit that divides it exactly (`"16KiB"`), or
/// `None` when none does (or it is zero): then it reads best as a plain count.
pub(super) fn fmt_size(bytes: u64) -> Option<String> {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(factor, _)| bytes != 0 && bytes % factor == 0)
        .map(|(factor, unit)| format!("{}{unit}", bytes / factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("250ms", Some(ms(250))),
            ("1.5s", Some(ms(1500))),
            ("0.1s", Some(ms(100))),
            ("2m", Some(ms(120_000))),
            ("1h", Some(ms(3_600_000))),
            ("30s", Some(ms(30_000))),
            ("10 s", Some(ms(10_000))),
            ("0s", Some(Duration::ZERO)),
            ("5us", Some(Duration::from_micros(5))),
            ("7ns", Some(Duration::from_nanos(7))),
            ("30", None),
            ("s", None),
            (".5s", None),
            ("1.s", None),
            ("1.2.3s", None),
            ("-1s", None),
            ("10 parsecs", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
            if let Some(d) = want {
                assert_eq!(parse_duration(&fmt_duration(d)), want, "format {text:?}");
            }
        }
    }

    #[test]
    fn fmt_duration_is_how_the_file_spells_it() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(5), "5us"),
            (Duration::from_nanos(7), "7ns"),
        ] {
            assert_eq!(fmt_duration(d), want);
        }
    }

    #[test]
    fn sizes() {
        for (text, want) in [
            ("16KiB", Some(16384)),
            ("16 KiB", Some(16384)),
            ("1MiB", Some(1 << 20)),
            ("2GiB", Some(2 << 30)),
            ("512B", Some(512)),
            ("4096", Some(4096)),
            ("2KB", None),
            ("-1", None),
            ("1.5MiB", None),
            ("KiB", None),
            ("", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
        for (n, want) in
            [(0, None), (1000, None), (16384, Some("16KiB")), (16 << 20, Some("16MiB")), (3 << 30, Some("3GiB"))]
        {
            assert_eq!(fmt_size(n).as_deref(), want, "{n}");
        }
    }
}
