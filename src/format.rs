//! How values read to people, wherever they are rendered: pages (`web`) and
//! the chat messages the hub renders once (`chat`). Nothing else.

use chrono::{DateTime, Utc};

/// A time for people: `2026-11-22 18:00 UTC`.
pub fn utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
