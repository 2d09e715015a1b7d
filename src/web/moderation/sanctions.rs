//! Bans, chat timeouts and lifting them: who may be sanctioned, the forms'
//! checks, the rows and their audit entries in one transaction.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_htmx::HxTarget;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use tower_sessions::Session;

use super::page::{BanFields, Forms, Origin, TimeoutFields, answer_channel_action, origin};
use super::{Ask, Note, TIMEOUT_MINUTES};
use crate::access;
use crate::auth::CurrentUser;
use crate::db::UserId;
use crate::db::audit;
use crate::db::bans::{self, BanId, Kind, NewBan};
use crate::db::channels::{Channel, Role};
use crate::db::users::{self, User};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Htmx;
use crate::web::authz::{self, Area, Ids};
use crate::web::forms::normalize_text;
use crate::web::view::utc;

/// The longest temporary ban; longer is permanent.
const MAX_BAN_DAYS: i64 = 366;

/// Who a ban or timeout is for: someone picked from the room (`user_id`), or
/// the account with `email`. Refused with words for the form otherwise.
async fn sanction_target(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    user_id: &str,
    email: &str,
    kind: Kind,
) -> AppResult<Result<User, String>> {
    let (user_id, email) = (user_id.trim(), email.trim());
    let found = if !user_id.is_empty() {
        match user_id.parse::<UserId>() {
            Ok(id) => users::find(conn, id).await?,
            Err(_) => None,
        }
    } else if !email.is_empty() {
        users::find_by_email(conn, email).await?
    } else {
        return Ok(Err(
            "Choose someone in the room, or enter the email of their account.".to_owned(),
        ));
    };
    let Some(target) = found else {
        return Ok(Err(if user_id.is_empty() {
            "No account uses that email.".to_owned()
        } else {
            "That account no longer exists.".to_owned()
        }));
    };
    let verb = match kind {
        Kind::Ban => "banned",
        Kind::Timeout => "timed out",
    };
    match access::channel_role(conn, target.id, channel.id).await? {
        Some(Role::Owner) => {
            return Ok(Err(format!("The channel's owner can't be {verb}.")));
        }
        Some(Role::Moderator) => {
            return Ok(Err(format!(
                "{} is a moderator of this channel and can't be {verb}. The owner can remove them from the team first.",
                target.display_name
            )));
        }
        None => {}
    }
    if let Some(ban) = bans::active(conn, channel.id, target.id, Kind::Ban).await? {
        let until = match ban.until {
            None => "permanently".to_owned(),
            Some(t) => format!("until {}", utc(&t)),
        };
        return Ok(Err(match kind {
            Kind::Ban => format!(
                "{} is already banned {until}. Lift that ban first to change it.",
                target.display_name
            ),
            Kind::Timeout => format!(
                "{} is banned from this channel {until}; a chat timeout would change nothing.",
                target.display_name
            ),
        }));
    }
    Ok(Ok(target))
}

/// A ban's length from the form: None for permanent, else minutes (1 hour to 366 days).
fn ban_minutes(length: &str, amount: &str) -> Result<Option<i32>, &'static str> {
    const RANGE: &str = "Give between 1 hour and 366 days, or choose permanent.";
    let per = match length.trim() {
        "" | "permanent" => return Ok(None),
        "hours" => 60,
        "days" => 24 * 60,
        _ => return Err("Choose permanent, hours or days."),
    };
    let n: i64 = amount
        .trim()
        .parse()
        .map_err(|_| "Enter a whole number of hours or days.")?;
    let minutes = n.checked_mul(per).ok_or(RANGE)?;
    if !(60..=MAX_BAN_DAYS * 24 * 60).contains(&minutes) {
        return Err(RANGE);
    }
    Ok(Some(minutes as i32))
}

fn read_reason(raw: &str) -> Result<Option<String>, &'static str> {
    let reason = normalize_text(raw);
    if reason.chars().count() > crate::web::forms::MAX_REASON {
        return Err("Use at most 200 characters.");
    }
    Ok(Some(reason).filter(|r| !r.is_empty()))
}

#[derive(Deserialize, Default)]
pub struct BanForm {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub length: String,
    #[serde(default)]
    pub amount: String,
    /// The stream whose moderation page (or panel) the form is on.
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/bans: bans someone from the channel. The
/// enforcer removes them from any live room of the channel at once (the
/// `bans` trigger wakes it); the access rule refuses them tokens and chat.
pub async fn ban(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Path(handle): Path<String>,
    Form(form): Form<BanForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let mut forms = Forms::default();
    let errors = &mut forms.ban_errors;

    let subject = sanction_target(&mut conn, &channel, &form.user_id, &form.email, Kind::Ban)
        .await?
        .map_err(|e| errors.add("user", e))
        .ok();
    let minutes = ban_minutes(&form.length, &form.amount)
        .map_err(|e| errors.add("length", e))
        .ok();
    let reason = read_reason(&form.reason)
        .map_err(|e| errors.add("reason", e))
        .ok();

    let (status, forms) = match (subject, minutes, reason) {
        (Some(subject), Some(minutes), Some(reason)) => {
            let stream_id = match &origin {
                Origin::Panel(s) | Origin::Section(s) | Origin::Plain(Some(s)) => Some(s.id),
                Origin::Plain(None) => None,
            };
            let new = NewBan {
                channel_id: channel.id,
                user_id: subject.id,
                kind: Kind::Ban,
                minutes,
                reason: reason.as_deref(),
                banned_by: user.id,
            };
            let placed = conn
                .transaction(async |conn| {
                    let placed = bans::insert(conn, &new).await?;
                    audit::record(
                        conn,
                        Some(user.id),
                        Some(channel.id),
                        "moderation.banned",
                        Some(&subject.id.to_string()),
                        serde_json::json!({
                            "ban_id": placed.id,
                            "until": placed.until,
                            "reason": placed.reason,
                            "stream_id": stream_id,
                        }),
                    )
                    .await?;
                    Ok::<_, diesel::result::Error>(placed)
                })
                .await?;
            let until = match placed.until {
                None => "permanently".to_owned(),
                Some(t) => format!("until {}", utc(&t)),
            };
            let forms = Forms {
                note: Some(Note::done(format!(
                    "{} is banned from {} {until}. If they are watching, they are removed from the stream now.",
                    subject.display_name, channel.title
                ))),
                ..Forms::default()
            };
            (StatusCode::OK, forms)
        }
        _ => {
            forms.ban = BanFields {
                user_id: form.user_id.trim().to_owned(),
                email: form.email.trim().to_owned(),
                reason: form.reason.trim().to_owned(),
                length: form.length.trim().to_owned(),
                amount: form.amount.trim().to_owned(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, forms)
        }
    };
    drop(conn);
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, status, forms).await
}

#[derive(Deserialize, Default)]
pub struct TimeoutForm {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub minutes: String,
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/timeouts: keeps someone out of the chat for
/// 1, 10 or 60 minutes. They stay in the room and keep watching.
pub async fn timeout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Path(handle): Path<String>,
    Form(form): Form<TimeoutForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let mut forms = Forms::default();
    let errors = &mut forms.timeout_errors;

    let subject = sanction_target(
        &mut conn,
        &channel,
        &form.user_id,
        &form.email,
        Kind::Timeout,
    )
    .await?
    .map_err(|e| errors.add("user", e))
    .ok();
    let minutes = form
        .minutes
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|m| TIMEOUT_MINUTES.contains(m));
    if minutes.is_none() {
        errors.add("minutes", "Choose 1, 10 or 60 minutes.");
    }

    let (status, forms) = match (subject, minutes) {
        (Some(subject), Some(minutes)) => {
            let stream_id = match &origin {
                Origin::Panel(s) | Origin::Section(s) | Origin::Plain(Some(s)) => Some(s.id),
                Origin::Plain(None) => None,
            };
            let new = NewBan {
                channel_id: channel.id,
                user_id: subject.id,
                kind: Kind::Timeout,
                minutes: Some(minutes),
                reason: None,
                banned_by: user.id,
            };
            let placed = conn
                .transaction(async |conn| {
                    let placed = bans::time_out(conn, &new).await?;
                    audit::record(
                        conn,
                        Some(user.id),
                        Some(channel.id),
                        "moderation.timed_out",
                        Some(&subject.id.to_string()),
                        serde_json::json!({
                            "ban_id": placed.id,
                            "minutes": minutes,
                            "until": placed.until,
                            "stream_id": stream_id,
                        }),
                    )
                    .await?;
                    Ok::<_, diesel::result::Error>(placed)
                })
                .await?;
            let until = placed
                .until
                .map(|t| format!(" (until {})", utc(&t)))
                .unwrap_or_default();
            let forms = Forms {
                note: Some(Note::done(format!(
                    "{} can't chat for {minutes} minute{}{until}. They keep watching.",
                    subject.display_name,
                    if minutes == 1 { "" } else { "s" }
                ))),
                ..Forms::default()
            };
            (StatusCode::OK, forms)
        }
        _ => {
            forms.timeout = TimeoutFields {
                user_id: form.user_id.trim().to_owned(),
                email: form.email.trim().to_owned(),
                minutes: form.minutes.trim().to_owned(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, forms)
        }
    };
    drop(conn);
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, status, forms).await
}

#[derive(Deserialize, Default)]
pub struct LiftForm {
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/bans/{ban}/lift: ends a ban or a timeout
/// now. The row stays, with who lifted it and when.
pub async fn lift_ban(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Ids((handle, ban)): Ids<(String, BanId)>,
    Form(form): Form<LiftForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let existing = bans::find(&mut conn, ban)
        .await?
        .filter(|b| b.channel_id == channel.id)
        .ok_or(AppError::NotFound)?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let subject = users::find(&mut conn, existing.user_id)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_else(|| "They".to_owned());
    let action = match existing.kind {
        Kind::Ban => "moderation.ban_lifted",
        Kind::Timeout => "moderation.timeout_lifted",
    };
    let lifted = conn
        .transaction(async |conn| {
            let lifted = bans::lift(conn, ban, channel.id, user.id).await?;
            if let Some(b) = &lifted {
                audit::record(
                    conn,
                    Some(user.id),
                    Some(channel.id),
                    action,
                    Some(&b.user_id.to_string()),
                    serde_json::json!({
                        "ban_id": b.id,
                        "kind": b.kind.as_str(),
                        "until": b.until,
                    }),
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(lifted)
        })
        .await?;
    drop(conn);
    let note = match (lifted.is_some(), existing.kind) {
        (true, Kind::Ban) => Note::done(format!(
            "{subject}'s ban is lifted: they can watch with a pass and chat again."
        )),
        (true, Kind::Timeout) => Note::done(format!("{subject} can chat again.")),
        (false, Kind::Ban) => Note::done(format!("{subject}'s ban was already lifted or over.")),
        (false, Kind::Timeout) => {
            Note::done(format!("{subject}'s timeout was already lifted or over."))
        }
    };
    let forms = Forms {
        note: Some(note),
        ..Forms::default()
    };
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, StatusCode::OK, forms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_lengths_are_permanent_or_an_hour_to_366_days() {
        assert_eq!(ban_minutes("permanent", "5"), Ok(None));
        assert_eq!(ban_minutes("", ""), Ok(None));
        assert_eq!(ban_minutes("hours", "1"), Ok(Some(60)));
        assert_eq!(ban_minutes("days", " 2 "), Ok(Some(2 * 24 * 60)));
        assert_eq!(ban_minutes("days", "366"), Ok(Some(366 * 24 * 60)));
        for (length, amount) in [
            ("hours", "0"),
            ("days", "367"),
            ("hours", "-1"),
            ("hours", "1.5"),
            ("weeks", "1"),
            ("days", "99999999999999999"),
        ] {
            assert!(ban_minutes(length, amount).is_err(), "{length} {amount}");
        }
    }

    #[test]
    fn reasons_are_optional_and_short() {
        assert_eq!(read_reason("  "), Ok(None));
        assert_eq!(
            read_reason(" spam\r\nlinks "),
            Ok(Some("spam\nlinks".to_owned()))
        );
        assert!(read_reason(&"x".repeat(201)).is_err());
    }
}
