//! LiveKit webhook events already applied (idempotency), with their payloads.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::livekit_events;

/// Records the event; answers false when it was already recorded (a replay).
pub async fn record(
    conn: &mut AsyncPgConnection,
    id: &str,
    event: &str,
    payload: &serde_json::Value,
) -> QueryResult<bool> {
    let n = diesel::insert_into(livekit_events::table)
        .values((
            livekit_events::event_id.eq(id),
            livekit_events::event.eq(event),
            livekit_events::payload.eq(payload),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Forgets an event whose effects could not be applied, so LiveKit's retry applies it.
pub async fn forget(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    diesel::delete(livekit_events::table.find(id))
        .execute(conn)
        .await?;
    Ok(())
}
