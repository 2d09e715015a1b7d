//! The owner's grants of a channel (list, comp, extend, revoke), a pass's
//! redeem codes (generate, list, CSV export), and redeeming a code.
//!
//! Who may manage a channel, a pass or a grant is `authz`'s (owners only);
//! what a grant is worth and whether it is active is decided in SQL by
//! `db::grants` and `access.rs`; redemption is `db::codes::redeem` (one
//! transaction). This module must not decide access by itself, and never
//! removes viewers from rooms: the database trigger on `access_grants` wakes
//! the enforcer, which does.
//!
//! Redeeming is flood-limited: failed redemptions per account (counted in the
//! audit log) and unknown codes per client address over all accounts
//! (`crate::limits`); the `REDEEM_*` settings.

pub mod codes;
pub mod comp;
pub mod list;
pub mod redeem;
pub mod row;

pub use comp::comp;
pub use list::list;
pub use redeem::redeem;
pub use row::{extend, revoke};

use chrono::Duration;

/// The longest comp or extension: a year, leap day included.
const MAX_DAYS: i64 = 366;

/// "N hours" / "N days" from a form: the amount, its unit, and the limits.
fn read_duration(amount: &str, unit: &str) -> Result<Duration, &'static str> {
    const RANGE: &str = "Give between 1 hour and 366 days.";
    let n: i64 = amount
        .trim()
        .parse()
        .map_err(|_| "Enter a whole number of hours or days.")?;
    let d = match unit {
        "hours" => Duration::try_hours(n),
        "days" => Duration::try_days(n),
        _ => return Err("Choose hours or days."),
    }
    .ok_or(RANGE)?;
    if d < Duration::hours(1) || d > Duration::days(MAX_DAYS) {
        return Err(RANGE);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_between_an_hour_and_366_days() {
        assert_eq!(read_duration("1", "hours"), Ok(Duration::hours(1)));
        assert_eq!(read_duration(" 366 ", "days"), Ok(Duration::days(366)));
        assert_eq!(read_duration("8784", "hours"), Ok(Duration::days(366)));
        for (n, unit) in [
            ("0", "hours"),
            ("367", "days"),
            ("8785", "hours"),
            ("-1", "days"),
        ] {
            assert!(read_duration(n, unit).is_err(), "{n} {unit}");
        }
        assert!(read_duration("1.5", "days").is_err());
        assert!(read_duration("1", "weeks").is_err());
        assert!(read_duration("99999999999999999", "days").is_err());
    }
}
