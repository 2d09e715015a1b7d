//! Checks and readings that several forms share: names, titles, free text
//! and dates as people type them. Each check adds its reason to
//! `FieldErrors`, next to the field. Only `account_by_email` reads the
//! database (the account a team or grant form names).

use chrono::{DateTime, NaiveDateTime, Utc};

use super::FieldErrors;

/// The longest reason the team writes down (a ban, a timeout, a revoked
/// grant): it is shown to the person and kept in the audit log.
pub const MAX_REASON: usize = 200;

pub fn check_display_name(name: &str, errors: &mut FieldErrors) {
    let name = name.trim();
    if name.is_empty() {
        errors.add("display_name", "Enter the name others will see.");
    } else if name.chars().count() > 80 {
        errors.add("display_name", "Use at most 80 characters.");
    } else if name.chars().any(char::is_control) {
        errors.add("display_name", "Use letters, numbers and punctuation only.");
    }
}

pub fn check_channel_title(title: &str, errors: &mut FieldErrors) {
    let title = title.trim();
    if title.is_empty() {
        errors.add("title", "Give your channel a title.");
    } else if title.chars().count() > 100 {
        errors.add("title", "Use at most 100 characters.");
    }
}

/// Counts characters as Postgres' `length()` does, after browsers' CRLF line breaks become LF.
pub fn normalize_text(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_owned()
}

/// Reads a `datetime-local` value as UTC. Browsers without the picker send
/// what people type, so a space instead of the `T` and seconds are accepted.
pub fn parse_schedule(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim().replacen(' ', "T", 1);
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(&value, f).ok())
    .map(|t| t.and_utc())
}

/// The account behind the `email` field of a team or grant form, or the
/// error next to that field: the field is empty, or no account uses it.
pub async fn account_by_email(
    conn: &mut diesel_async::AsyncPgConnection,
    email: &str,
    errors: &mut FieldErrors,
) -> crate::db::DbResult<Option<crate::db::users::User>> {
    let email = email.trim();
    if email.is_empty() {
        errors.add(
            "email",
            "Enter the email address of their stagepass account.",
        );
        return Ok(None);
    }
    let found = crate::db::users::find_by_email(conn, email).await?;
    if found.is_none() {
        errors.add(
            "email",
            "No account uses that email. Ask them to sign up first.",
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::view::Moment;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn schedules_are_read_as_utc() {
        let t = at("2026-11-22T18:00:00Z");
        assert_eq!(parse_schedule("2026-11-22T18:00"), Some(t));
        assert_eq!(parse_schedule(" 2026-11-22 18:00 "), Some(t));
        assert_eq!(parse_schedule("2026-11-22T18:00:00"), Some(t));
        assert_eq!(parse_schedule("tomorrow"), None);
        assert_eq!(parse_schedule("2026-13-01T10:00"), None);
        assert_eq!(Moment::new(t).label, "2026-11-22 18:00 UTC");
        assert_eq!(Moment::new(t).iso, "2026-11-22T18:00:00Z");
    }
}
