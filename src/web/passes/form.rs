//! The pass form, shared by creating and editing a pass: its fields, and the
//! checks that turn what was typed into a pass's name, price and terms.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{CURRENCIES, DAY, HOUR, StreamChoice, duration_parts};
use crate::db::StreamId;
use crate::db::passes::{Pass, Scope};
use crate::web::FieldErrors;
use crate::web::forms::{normalize_text, parse_schedule};

// ---------------------------------------------------------------------------
// The pass form: create and edit.

#[derive(Deserialize, Default)]
pub struct PassForm {
    #[serde(default)]
    pub name: String,
    /// A decimal amount: "9", "9.5", "9.00".
    #[serde(default)]
    pub price: String,
    #[serde(default)]
    pub currency: String,
    /// `channel` or `stream`.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub stream_id: String,
    /// A whole number of `duration_unit`s; empty when the pass has a window.
    #[serde(default)]
    pub duration: String,
    /// `hours` or `days`.
    #[serde(default)]
    pub duration_unit: String,
    /// `datetime-local` values read as UTC; empty when the pass has a duration.
    #[serde(default)]
    pub window_starts_at: String,
    #[serde(default)]
    pub window_ends_at: String,
    /// A checkbox: present when ticked.
    pub includes_replays: Option<String>,
}

/// What the form shows: the values as typed (or as stored).
pub struct PassFields {
    pub name: String,
    pub price: String,
    pub currency: String,
    pub scope: String,
    pub stream_id: String,
    pub duration: String,
    pub duration_unit: String,
    pub window_starts_at: String,
    pub window_ends_at: String,
    pub includes_replays: bool,
}

/// The value format of `<input type="datetime-local">` (minutes).
const DATETIME_LOCAL: &str = "%Y-%m-%dT%H:%M";

impl PassFields {
    pub(super) fn blank() -> Self {
        PassFields {
            name: String::new(),
            price: String::new(),
            currency: CURRENCIES[0].to_owned(),
            scope: Scope::Channel.as_str().to_owned(),
            stream_id: String::new(),
            duration: String::new(),
            duration_unit: "hours".to_owned(),
            window_starts_at: String::new(),
            window_ends_at: String::new(),
            includes_replays: false,
        }
    }

    pub(super) fn of(pass: &Pass) -> Self {
        let (duration, duration_unit) = match pass.duration_seconds {
            Some(secs) => {
                let (n, unit) = duration_parts(secs.into());
                (n.to_string(), unit.to_owned())
            }
            None => (String::new(), "hours".to_owned()),
        };
        let local = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.format(DATETIME_LOCAL).to_string())
                .unwrap_or_default()
        };
        PassFields {
            name: pass.name.clone(),
            price: format!("{}.{:02}", pass.price_cents / 100, pass.price_cents % 100),
            currency: pass.currency.clone(),
            scope: pass.scope.to_string(),
            stream_id: pass.stream_id.map(|s| s.to_string()).unwrap_or_default(),
            duration,
            duration_unit,
            window_starts_at: local(pass.window_starts_at),
            window_ends_at: local(pass.window_ends_at),
            includes_replays: pass.includes_replays,
        }
    }

    pub(super) fn typed(form: PassForm) -> Self {
        PassFields {
            name: form.name.trim().to_owned(),
            price: form.price.trim().to_owned(),
            currency: form.currency,
            scope: form.scope,
            stream_id: form.stream_id,
            duration: form.duration.trim().to_owned(),
            duration_unit: form.duration_unit,
            window_starts_at: form.window_starts_at.trim().to_owned(),
            window_ends_at: form.window_ends_at.trim().to_owned(),
            includes_replays: form.includes_replays.is_some(),
        }
    }

    /// Shows the stored terms again (a sold pass's terms are not editable).
    pub(super) fn keep_terms_of(&mut self, pass: &Pass) {
        let stored = PassFields::of(pass);
        self.scope = stored.scope;
        self.stream_id = stored.stream_id;
        self.duration = stored.duration;
        self.duration_unit = stored.duration_unit;
        self.window_starts_at = stored.window_starts_at;
        self.window_ends_at = stored.window_ends_at;
    }
}

/// The largest price: 100,000.00 (in cents). Anything above is a typo.
const MAX_PRICE_CENTS: i64 = 10_000_000;
/// The longest duration: 366 days.
const MAX_DURATION_SECONDS: i64 = 366 * DAY;

/// Reads a price like "9", "9.5" or "9.00" into cents.
pub fn parse_price(raw: &str) -> Result<i64, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Enter a price, like 9.00 (0 makes the pass free).");
    }
    if raw.starts_with('-') {
        return Err("The price can't be negative.");
    }
    let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(frac) || (whole.is_empty() && frac.is_empty()) {
        return Err("Enter the price as a number, like 9.00.");
    }
    if frac.len() > 2 {
        return Err("Use at most 2 decimals, like 9.99.");
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 7 {
        return Err("That's more than 100000.00: enter a smaller price.");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().unwrap_or(i64::MAX)
    };
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    let cents = whole * 100 + frac;
    if cents > MAX_PRICE_CENTS {
        return Err("That's more than 100000.00: enter a smaller price.");
    }
    Ok(cents)
}

/// Reads a duration (a whole number of hours or days) into seconds.
pub fn parse_duration(amount: &str, unit: &str) -> Result<i32, &'static str> {
    let per = match unit {
        "hours" => HOUR,
        "days" => DAY,
        _ => return Err("Choose hours or days."),
    };
    let Ok(n) = amount.trim().parse::<i64>() else {
        return Err("Enter a whole number of hours or days, like 24.");
    };
    let seconds = n.saturating_mul(per);
    if seconds < HOUR {
        Err("A pass lasts at least 1 hour.")
    } else if seconds > MAX_DURATION_SECONDS {
        Err("A pass lasts at most 366 days. For longer, use a fixed window.")
    } else {
        Ok(seconds as i32)
    }
}

/// What a pass covers and for how long.
#[derive(Debug, PartialEq)]
pub(super) struct Terms {
    pub(super) scope: Scope,
    pub(super) stream_id: Option<StreamId>,
    pub(super) length: Length,
}

#[derive(Debug, PartialEq)]
pub(super) enum Length {
    Duration(i32),
    Window(DateTime<Utc>, DateTime<Utc>),
}

/// A valid pass form. `terms` is None when they were not editable.
pub(super) struct PassInput {
    pub(super) name: String,
    pub(super) price_cents: i64,
    pub(super) currency: String,
    pub(super) includes_replays: bool,
    pub(super) terms: Option<Terms>,
}

/// What the form is checked against.
pub(super) struct FormContext<'a> {
    /// The streams a stream pass may cover.
    pub(super) streams: &'a [StreamChoice],
    /// The pass being edited.
    pub(super) current: Option<&'a Pass>,
    /// False once the pass has been sold: its terms stay as they are.
    pub(super) terms_editable: bool,
}

pub(super) fn check_pass(
    form: &PassForm,
    ctx: &FormContext<'_>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> PassInput {
    let name = normalize_text(&form.name);
    if name.is_empty() {
        errors.add("name", "Give the pass a name, like “Weekend pass”.");
    } else if name.chars().count() > 100 {
        errors.add("name", "Use at most 100 characters.");
    }
    let price_cents = parse_price(&form.price).unwrap_or_else(|e| {
        errors.add("price", e);
        0
    });
    let currency = form.currency.trim().to_owned();
    let known = CURRENCIES.contains(&currency.as_str())
        || ctx.current.is_some_and(|p| p.currency == currency);
    if !known {
        errors.add("currency", "Choose one of the currencies in the list.");
    }
    let terms = ctx
        .terms_editable
        .then(|| check_terms(form, ctx, now, errors))
        .flatten();
    PassInput {
        name,
        price_cents,
        currency,
        includes_replays: form.includes_replays.is_some(),
        terms,
    }
}

fn check_terms(
    form: &PassForm,
    ctx: &FormContext<'_>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<Terms> {
    let scope = Scope::parse(form.scope.trim());
    let stream_id = match scope {
        None => {
            errors.add(
                "scope",
                "Choose what the pass covers: the whole channel, or one stream.",
            );
            None
        }
        Some(Scope::Channel) => None,
        Some(Scope::Stream) => {
            let chosen = form.stream_id.trim().parse::<StreamId>().ok();
            match chosen.filter(|id| ctx.streams.iter().any(|s| s.id == *id)) {
                Some(id) => Some(id),
                None => {
                    errors.add(
                        "stream_id",
                        if ctx.streams.is_empty() {
                            "This channel has no upcoming or live stream: create one first, or sell a channel pass."
                        } else {
                            "Choose one of this channel's streams that hasn't ended."
                        },
                    );
                    None
                }
            }
        }
    };

    let has_duration = !form.duration.trim().is_empty();
    let has_window =
        !form.window_starts_at.trim().is_empty() || !form.window_ends_at.trim().is_empty();
    let length = match (has_duration, has_window) {
        (true, true) => {
            errors.add(
                "length",
                "Fill in either a duration or a fixed window, not both.",
            );
            None
        }
        (false, false) => {
            errors.add(
                "length",
                "Choose how long the pass lasts: a duration from purchase, or a fixed window.",
            );
            None
        }
        (true, false) => match parse_duration(&form.duration, form.duration_unit.trim()) {
            Ok(secs) => Some(Length::Duration(secs)),
            Err(e) => {
                errors.add("duration", e);
                None
            }
        },
        (false, true) => check_window(form, ctx.current, now, errors),
    };

    Some(Terms {
        scope: scope?,
        stream_id: match scope? {
            Scope::Stream => Some(stream_id?),
            Scope::Channel => None,
        },
        length: length?,
    })
}

fn check_window(
    form: &PassForm,
    current: Option<&Pass>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<Length> {
    let read = |v: &str| {
        if v.trim().is_empty() {
            Err("Enter both the start and the end of the window.")
        } else {
            parse_schedule(v).ok_or("Enter dates and times like 2026-11-22 18:00 (UTC).")
        }
    };
    let (from, to) = match (read(&form.window_starts_at), read(&form.window_ends_at)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => {
            errors.add("window", e);
            return None;
        }
    };
    // Keeping a stored window that has since ended is not an error; choosing one is.
    let unchanged =
        current.is_some_and(|p| p.window_starts_at == Some(from) && p.window_ends_at == Some(to));
    if to <= from {
        errors.add("window", "The end must be after the start.");
        None
    } else if to <= now && !unchanged {
        errors.add(
            "window",
            "That window has already ended: choose an end in the future (UTC).",
        );
        None
    } else {
        Some(Length::Window(from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn prices_are_read_into_cents() {
        assert_eq!(parse_price("9"), Ok(900));
        assert_eq!(parse_price(" 9.5 "), Ok(950));
        assert_eq!(parse_price("9.00"), Ok(900));
        assert_eq!(parse_price("0.99"), Ok(99));
        assert_eq!(parse_price(".5"), Ok(50));
        assert_eq!(parse_price("0"), Ok(0));
        assert_eq!(parse_price("100000.00"), Ok(10_000_000));
        assert_eq!(parse_price("000100000"), Ok(10_000_000));
        assert!(parse_price("-1").unwrap_err().contains("negative"));
        assert!(parse_price("9.999").unwrap_err().contains("2 decimals"));
        assert!(parse_price("100000.01").unwrap_err().contains("100000.00"));
        assert!(
            parse_price("99999999999999999999")
                .unwrap_err()
                .contains("100000.00")
        );
        for bad in ["", "abc", "9,00", "1e3", "$9", ".", "9.0.0", "+9"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_run_from_an_hour_to_366_days() {
        assert_eq!(parse_duration("1", "hours"), Ok(3600));
        assert_eq!(parse_duration("30", "days"), Ok(30 * 86400));
        assert_eq!(parse_duration("366", "days"), Ok(366 * 86400));
        assert!(parse_duration("0", "hours").is_err());
        assert!(parse_duration("367", "days").is_err());
        assert!(parse_duration("8785", "hours").is_err());
        assert!(parse_duration("1.5", "days").is_err());
        assert!(parse_duration("-2", "days").is_err());
        assert!(parse_duration("2", "weeks").is_err());
        assert!(parse_duration("99999999999999", "days").is_err());
    }

    fn form(fields: &[(&str, &str)]) -> PassForm {
        let mut f = PassForm {
            name: "Weekend".into(),
            price: "9.00".into(),
            currency: "USD".into(),
            scope: "channel".into(),
            duration_unit: "hours".into(),
            ..Default::default()
        };
        for (k, v) in fields {
            let v = v.to_string();
            match *k {
                "scope" => f.scope = v,
                "stream_id" => f.stream_id = v,
                "duration" => f.duration = v,
                "from" => f.window_starts_at = v,
                "to" => f.window_ends_at = v,
                _ => unreachable!(),
            }
        }
        f
    }

    #[test]
    fn a_pass_has_either_a_duration_or_a_window() {
        let now = at("2026-11-22T18:00:00Z");
        let streams = [StreamChoice {
            id: StreamId(7),
            label: "Friday".into(),
        }];
        let ctx = FormContext {
            streams: &streams,
            current: None,
            terms_editable: true,
        };
        let check = |fields: &[(&str, &str)]| {
            let mut e = FieldErrors::default();
            let input = check_pass(&form(fields), &ctx, now, &mut e);
            (input.terms, e)
        };

        let (terms, e) = check(&[("duration", "24")]);
        assert!(e.is_empty());
        assert_eq!(terms.unwrap().length, Length::Duration(86400));

        let (terms, e) = check(&[("from", "2026-11-23T18:00"), ("to", "2026-11-24T02:00")]);
        assert!(e.is_empty());
        assert_eq!(
            terms.unwrap().length,
            Length::Window(at("2026-11-23T18:00:00Z"), at("2026-11-24T02:00:00Z"))
        );

        let (_, e) = check(&[("duration", "24"), ("to", "2026-11-24T02:00")]);
        assert!(e.get("length").unwrap().contains("not both"));
        let (_, e) = check(&[]);
        assert!(e.get("length").unwrap().contains("how long"));
        let (_, e) = check(&[("from", "2026-11-21T18:00"), ("to", "2026-11-22T17:00")]);
        assert!(e.get("window").unwrap().contains("already ended"));
        let (_, e) = check(&[("from", "2026-11-23T18:00"), ("to", "2026-11-23T18:00")]);
        assert!(e.get("window").unwrap().contains("after the start"));
        let (_, e) = check(&[("to", "2026-11-23T18:00")]);
        assert!(e.get("window").unwrap().contains("both"));

        let (terms, e) = check(&[("duration", "2"), ("scope", "stream"), ("stream_id", "7")]);
        assert!(e.is_empty());
        assert_eq!(terms.unwrap().stream_id, Some(StreamId(7)));
        let (_, e) = check(&[("duration", "2"), ("scope", "stream"), ("stream_id", "8")]);
        assert!(e.get("stream_id").is_some());
        let (_, e) = check(&[("duration", "2"), ("scope", "everything")]);
        assert!(e.get("scope").is_some());
    }
}
