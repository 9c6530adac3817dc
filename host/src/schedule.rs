//! When `ebb serve` runs a sync: `every` (fixed slots), `cron` (wall-clock
//! times in a time zone), `at` (once) or `"manual"` (only when asked).
//!
//! A schedule is a pure function from "the last slot taken" to "the next
//! one", so every worker sharing a state store computes the same slots and
//! the store only has to remember, per sync, when the next one is due
//! ([`crate::state::State::take_due`]). `every` slots are anchored at `start`
//! (or the Unix epoch), not at whenever a process started, for the same
//! reason: two workers, or one restarted, agree on them. After downtime the
//! next due slot is in the past; it runs once, and the slot after it is
//! computed from now, so missed slots are not run one by one.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

/// A sync's schedule, checked.
#[derive(Debug, Clone)]
pub enum Schedule {
    Manual,
    Every {
        interval: Duration,
        start: Option<DateTime<Utc>>,
    },
    Cron {
        cron: Box<Cron>,
        /// As written, for people to read.
        pattern: String,
        timezone: chrono_tz::Tz,
        start: Option<DateTime<Utc>>,
    },
    At(DateTime<Utc>),
}

/// `schedule = …` as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSchedule {
    Word(String),
    Table(RawTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    every: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    at: Option<String>,
    start: Option<String>,
}

/// Why a `schedule = …` was refused: the message names its key and says
/// what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    /// Checks `schedule = …` of the sync at `key`; intervals shorter than
    /// `shortest` are refused.
    pub fn parse(
        key: &str,
        raw: RawSchedule,
        shortest: Duration,
    ) -> Result<Schedule, ScheduleError> {
        Schedule::checked(key, raw, shortest).map_err(ScheduleError)
    }

    fn checked(key: &str, raw: RawSchedule, shortest: Duration) -> Result<Schedule, String> {
        let t = match raw {
            RawSchedule::Word(w) if w == "manual" => return Ok(Schedule::Manual),
            RawSchedule::Word(w) => {
                return Err(format!(
                    "{key}: `{w}` is not a schedule; write \"manual\", {{ every = \"15m\" }}, {{ cron = \"0 9 * * MON-FRI\" }} or {{ at = \"2026-12-01T09:00:00Z\" }}"
                ));
            }
            RawSchedule::Table(t) => t,
        };
        let start = t
            .start
            .as_deref()
            .map(|s| instant(&format!("{key}.start"), s))
            .transpose()?;
        match (t.every, t.cron, t.at) {
            (Some(every), None, None) => {
                if t.timezone.is_some() {
                    return Err(format!(
                        "{key}.timezone: only `cron` schedules have a time zone; remove it"
                    ));
                }
                let interval = interval(&format!("{key}.every"), &every)?;
                if interval < shortest {
                    return Err(format!(
                        "{key}.every: `{every}` is shorter than the shortest interval, {}s; run less often or raise limits.shortest_interval_secs",
                        shortest.as_secs()
                    ));
                }
                Ok(Schedule::Every { interval, start })
            }
            (None, Some(pattern), None) => {
                let cron = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .year(Year::Disallowed)
                    .build()
                    .parse(&pattern)
                    .map_err(|e| {
                        format!(
                            "{key}.cron: `{pattern}` is not a cron pattern ({e}); use five fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON-FRI\""
                        )
                    })?;
                let timezone = match t.timezone.as_deref() {
                    None => chrono_tz::UTC,
                    Some(tz) => chrono_tz::Tz::from_str(tz).map_err(|_| {
                        format!(
                            "{key}.timezone: `{tz}` is not a time zone; use an IANA name such as \"Europe/Berlin\" or \"UTC\""
                        )
                    })?,
                };
                Ok(Schedule::Cron {
                    cron: Box::new(cron),
                    pattern: pattern.trim().to_owned(),
                    timezone,
                    start,
                })
            }
            (None, None, Some(at)) => {
                if t.timezone.is_some() || start.is_some() {
                    return Err(format!(
                        "{key}: an `at` schedule runs once at its time; remove `timezone` and `start`"
                    ));
                }
                Ok(Schedule::At(instant(&format!("{key}.at"), &at)?))
            }
            _ => Err(format!(
                "{key}: set exactly one of `every`, `cron` and `at`, or write schedule = \"manual\""
            )),
        }
    }

    /// The first slot strictly after `after`, if there is one.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::At(at) => (*at > after).then_some(*at),
            Schedule::Every { interval, start } => {
                let anchor = start.unwrap_or(DateTime::UNIX_EPOCH);
                if after < anchor {
                    return Some(anchor);
                }
                let step = interval.as_millis() as i64;
                let since = (after - anchor).num_milliseconds();
                let slots = since / step + 1;
                Some(anchor + chrono::Duration::milliseconds(slots * step))
            }
            Schedule::Cron {
                cron,
                timezone,
                start,
                ..
            } => {
                // The last instant before `start`, so that `start` itself
                // can be the first slot.
                let from = match start {
                    Some(s) if *s > after => *s - chrono::Duration::milliseconds(1),
                    _ => after,
                };
                cron.find_next_occurrence(&from.with_timezone(timezone), false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }

    /// When a sync seen for the first time (or with a changed schedule) is
    /// first due: the next slot after `now`, except that an `at` time already
    /// past is due at once (a missed slot runs once).
    pub fn first_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::At(at) => Some(*at),
            _ => self.next_after(now),
        }
    }

    /// The schedule as the API and dashboard show it, and as the state store
    /// remembers it (a changed text means the schedule changed).
    pub fn describe(&self) -> String {
        let start = |s: &Option<DateTime<Utc>>| match s {
            Some(s) => format!(" from {}", s.to_rfc3339()),
            None => String::new(),
        };
        match self {
            Schedule::Manual => "manual".into(),
            Schedule::At(at) => format!("at {}", at.to_rfc3339()),
            Schedule::Every { interval, start: s } => {
                format!("every {}{}", words(*interval), start(s))
            }
            Schedule::Cron {
                pattern,
                timezone,
                start: s,
                ..
            } => format!("cron {pattern} ({}){}", timezone.name(), start(s)),
        }
    }
}

/// `"15m"`, `"1h30m"`, `"90s"`, `"1d"`, `"15 minutes"`, `"1h 30min"`:
/// humantime's durations, in whole seconds.
fn interval(key: &str, text: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!(
            "{key}: `{text}` is not an interval ({why}); write numbers with units, e.g. \"15m\", \"1h30m\" or \"15 minutes\""
        )
    };
    let parsed = humantime::parse_duration(text.trim()).map_err(|e| bad(e.to_string()))?;
    if parsed.is_zero() || parsed.subsec_nanos() != 0 {
        return Err(bad("use whole seconds, at least one".into()));
    }
    Ok(parsed)
}

/// An interval as `interval` reads it back, largest units first.
fn words(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// An RFC 3339 time with its offset, e.g. `2026-12-01T09:00:00Z`.
fn instant(key: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!(
                "{key}: `{text}` is not a time ({e}); write RFC 3339 with an offset, e.g. \"2026-12-01T09:00:00Z\""
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        instant("t", s).unwrap()
    }

    fn parse(toml_text: &str) -> Result<Schedule, String> {
        #[derive(Deserialize)]
        struct Wrap {
            schedule: RawSchedule,
        }
        let w: Wrap = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Schedule::parse("syncs.s.schedule", w.schedule, Duration::from_secs(60))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_slots_are_anchored_so_workers_agree() {
        let s = parse(r#"schedule = { every = "15m" }"#).unwrap();
        assert_eq!(
            s.next_after(t("2026-11-22T10:07:00Z")),
            Some(t("2026-11-22T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-22T10:15:00Z")),
            Some(t("2026-11-22T10:30:00Z"))
        );
        let s = parse(r#"schedule = { every = "1h", start = "2026-12-01T09:30:00Z" }"#).unwrap();
        assert_eq!(
            s.next_after(t("2026-11-22T10:00:00Z")),
            Some(t("2026-12-01T09:30:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-12-01T10:00:00Z")),
            Some(t("2026-12-01T10:30:00Z"))
        );
        assert_eq!(s.describe(), "every 1h from 2026-12-01T09:30:00+00:00");
    }

    #[test]
    fn cron_follows_the_time_zone() {
        let s = parse(r#"schedule = { cron = "0 9 * * MON-FRI", timezone = "Europe/Berlin" }"#)
            .unwrap();
        // Saturday 2026-11-21 → Monday 09:00 in Berlin (UTC+1 in November).
        assert_eq!(
            s.next_after(t("2026-11-21T12:00:00Z")),
            Some(t("2026-11-23T08:00:00Z"))
        );
        let s =
            parse(r#"schedule = { cron = "0 9 * * *", start = "2026-12-01T09:00:00Z" }"#).unwrap();
        assert_eq!(
            s.next_after(t("2026-11-22T10:00:00Z")),
            Some(t("2026-12-01T09:00:00Z"))
        );
    }

    #[test]
    fn at_runs_once_even_when_missed() {
        let s = parse(r#"schedule = { at = "2026-11-22T09:00:00Z" }"#).unwrap();
        assert_eq!(s.next_after(t("2026-11-22T10:00:00Z")), None);
        assert_eq!(
            s.first_due(t("2026-11-22T10:00:00Z")),
            Some(t("2026-11-22T09:00:00Z"))
        );
        assert!(matches!(
            parse(r#"schedule = "manual""#),
            Ok(Schedule::Manual)
        ));
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let err = |text| parse(text).err().unwrap_or_default();
        assert!(err(r#"schedule = { every = "30s" }"#).contains("shortest interval, 60s"));
        assert!(err(r#"schedule = { every = "15x" }"#).contains("not an interval"));
        assert!(err(r#"schedule = { cron = "61 * * * *" }"#).contains("not a cron pattern"));
        assert!(err(r#"schedule = { cron = "0 * * * * *" }"#).contains("five fields"));
        assert!(
            err(r#"schedule = { cron = "0 9 * * *", timezone = "Mars/Olympus" }"#)
                .contains("not a time zone")
        );
        assert!(err(r#"schedule = { at = "tomorrow" }"#).contains("RFC 3339"));
        assert!(
            err(r#"schedule = { every = "1h", at = "2026-11-22T09:00:00Z" }"#)
                .contains("exactly one of")
        );
        assert!(err(r#"schedule = "hourly""#).contains("not a schedule"));
        assert_eq!(interval("k", "1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(interval("k", "15 minutes"), Ok(Duration::from_secs(900)));
        assert_eq!(interval("k", "1h 30min"), Ok(Duration::from_secs(5400)));
        assert_eq!(interval("k", "2 days"), Ok(Duration::from_secs(172_800)));
        for bad in ["", "0s", "15", "500ms", "fortnightly"] {
            assert!(interval("k", bad).is_err(), "{bad}");
        }
        assert_eq!(words(Duration::from_secs(5400)), "1h30m");
    }
}
