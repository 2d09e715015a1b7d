//! Passes: the owner's pass management in the studio (list, create, edit,
//! archive), the pages viewers buy from (/s/{id}/pass, /c/{handle}/passes),
//! and the viewer's own "My passes".
//!
//! Who may manage a channel's passes is `authz`'s (the owner only); whether a viewer may already watch, of `access::may` (through
//! `access::find_stream_with_channel`: an unannounced draft's pass page is a
//! 404 outside its team, as a missing stream's). This
//! module must not decide access by itself, and it does not sell: the buy
//! forms post to the checkout (web/checkout.rs), the redeem form to /redeem.

pub mod buy;
pub mod edit;
pub mod form;
pub mod mine;
pub mod studio;

pub use buy::{for_channel, for_stream};
pub use edit::{edit_page, update};
pub use mine::mine;
pub use studio::{archive, create, studio_list};

use diesel_async::AsyncPgConnection;

use super::view::StreamState;
use super::view::utc;
use crate::db::StreamId;
use crate::db::channels::Channel;
use crate::db::passes::Pass;
use crate::db::streams::{self, Status};
use crate::error::AppResult;

// ---------------------------------------------------------------------------
// How passes read to people.

/// The currencies a pass can be priced in (ISO 4217).
pub const CURRENCIES: [&str; 5] = ["USD", "EUR", "GBP", "CAD", "AUD"];

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// A duration as the owner would say it: whole days from two days up
/// ("30 days"), hours below that ("24 hours", "36 hours").
fn duration_parts(seconds: i64) -> (i64, &'static str) {
    if seconds % DAY == 0 && seconds >= 2 * DAY {
        (seconds / DAY, "days")
    } else {
        ((seconds + HOUR - 1) / HOUR, "hours")
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// How long a pass lasts: "24 hours from purchase", "30 days from purchase",
/// "From 2026-11-22 18:00 UTC to 2026-11-23 02:00 UTC".
pub fn length_label(pass: &Pass) -> String {
    match (
        pass.duration_seconds,
        pass.window_starts_at,
        pass.window_ends_at,
    ) {
        (Some(secs), _, _) => {
            let (n, unit) = duration_parts(secs.into());
            let unit = if unit == "days" {
                ("day", "days")
            } else {
                ("hour", "hours")
            };
            format!("{} from purchase", plural(n, unit.0, unit.1))
        }
        (None, Some(from), Some(to)) => format!("From {} to {}", utc(&from), utc(&to)),
        _ => String::new(),
    }
}

/// Time to go in words: "2 days 3 hours", "5 hours 12 minutes", "40 minutes".
pub fn span_label(seconds: i64) -> String {
    let (d, h, m) = (seconds / DAY, seconds % DAY / HOUR, seconds % HOUR / 60);
    let parts = if d > 0 {
        vec![plural(d, "day", "days"), plural(h, "hour", "hours")]
    } else if h > 0 {
        vec![plural(h, "hour", "hours"), plural(m, "minute", "minutes")]
    } else if m > 0 {
        vec![plural(m, "minute", "minutes")]
    } else {
        return "less than a minute".to_owned();
    };
    parts
        .into_iter()
        .filter(|p| !p.starts_with("0 "))
        .collect::<Vec<_>>()
        .join(" ")
}

fn buy_label(pass: &Pass) -> String {
    if pass.price_cents == 0 {
        "Get it for free".to_owned()
    } else {
        format!("Buy for {}", pass.price_label())
    }
}

// ---------------------------------------------------------------------------
// The studio: loading what the owner manages.

/// A stream a pass can be scoped to, for the form's select.
pub struct StreamChoice {
    pub id: StreamId,
    pub label: String,
}

/// The channel's streams that have not ended (and `keep`, the stream of the
/// pass being edited, whatever its state): what a stream pass may cover.
async fn stream_choices(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    keep: Option<StreamId>,
) -> AppResult<Vec<StreamChoice>> {
    let list = streams::for_channel(conn, channel.id).await?;
    Ok(list
        .iter()
        .filter(|s| s.status != Status::Ended || Some(s.id) == keep)
        .map(|s| {
            let state = StreamState::of(s);
            let when = match (state, s.scheduled_at) {
                (StreamState::Scheduled, Some(t)) => format!(", {}", utc(&t)),
                _ => String::new(),
            };
            StreamChoice {
                id: s.id,
                label: format!("{} ({}{when})", s.title, state.label().to_lowercase()),
            }
        })
        .collect())
}

/// The studio's passes page, where creating, saving and archiving lead back to.
fn studio_path(channel: &Channel) -> String {
    format!("/studio/channels/{}/passes", channel.handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_time_left_read_naturally() {
        assert_eq!(span_label(2 * DAY + 3 * HOUR + 59), "2 days 3 hours");
        assert_eq!(span_label(DAY), "1 day");
        assert_eq!(span_label(5 * HOUR + 12 * 60), "5 hours 12 minutes");
        assert_eq!(span_label(HOUR), "1 hour");
        assert_eq!(span_label(40 * 60 + 5), "40 minutes");
        assert_eq!(span_label(59), "less than a minute");
        assert_eq!(duration_parts(DAY), (24, "hours"));
        assert_eq!(duration_parts(36 * HOUR), (36, "hours"));
        assert_eq!(duration_parts(30 * DAY), (30, "days"));
    }
}
