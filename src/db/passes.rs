//! Access passes: what a viewer buys (or redeems, or is given). A pass is
//! scoped to one stream or the whole channel, lasts a duration from purchase or
//! a fixed window, and may include replays. Archived passes are no longer sold
//! but the grants made from them stay valid.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::access_passes;
use super::{ChannelId, PassId, StreamId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = access_passes, check_for_backend(diesel::pg::Pg))]
pub struct Pass {
    pub id: PassId,
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub scope: String,
    pub duration_seconds: Option<i32>,
    pub window_starts_at: Option<DateTime<Utc>>,
    pub window_ends_at: Option<DateTime<Utc>>,
    pub includes_replays: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Pass {
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// The (starts_at, expires_at) of a grant made from this pass, starting no
    /// earlier than `from` (now, or the end of the holder's current grant).
    /// None: a fixed window that is already over.
    pub fn grant_window(&self, from: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match (self.duration_seconds, self.window_starts_at, self.window_ends_at) {
            (Some(secs), _, _) => Some((from, from + Duration::seconds(secs as i64))),
            (None, Some(start), Some(end)) if end > from => Some((start, end)),
            _ => None,
        }
    }

    /// "$9.00" style price for people.
    pub fn price_label(&self) -> String {
        if self.price_cents == 0 {
            return "Free".to_owned();
        }
        let symbol = match self.currency.as_str() {
            "USD" => "$",
            "EUR" => "€",
            "GBP" => "£",
            _ => "",
        };
        let amount = format!("{}.{:02}", self.price_cents / 100, self.price_cents % 100);
        if symbol.is_empty() { format!("{amount} {}", self.currency) } else { format!("{symbol}{amount}") }
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: PassId) -> QueryResult<Option<Pass>> {
    access_passes::table.find(id).select(Pass::as_select()).first(conn).await.optional()
}

/// Passes on sale that cover `stream` (channel-wide ones and the stream's own).
pub async fn on_sale_for_stream(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    stream: StreamId,
) -> QueryResult<Vec<Pass>> {
    access_passes::table
        .filter(access_passes::channel_id.eq(channel))
        .filter(access_passes::archived_at.is_null())
        .filter(access_passes::stream_id.is_null().or(access_passes::stream_id.eq(stream)))
        .order(access_passes::price_cents.asc())
        .select(Pass::as_select())
        .load(conn)
        .await
}
