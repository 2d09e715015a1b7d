//! LiveKit webhook events already applied (idempotency), with what is worth
//! keeping of their payloads.
//!
//! A payload is stored through an **allowlist** (`KEPT`): which event, about
//! which room, participant, track, egress or ingress, and their states and
//! times. Everything else is dropped before the insert — LiveKit's events
//! carry credentials (the room's `turnPassword`, an ingress's `streamKey`,
//! the S3 keys of the request an egress was started with) and free-form
//! metadata, and a field LiveKit adds later is dropped too until someone
//! decides it belongs here. This module must not store a payload any other way.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::schema::livekit_events;

/// What of a value is kept: all of it (a scalar), or the listed fields of
/// an object (of each object, for an array of them).
enum Keep {
    Value,
    Fields(&'static [(&'static str, Keep)]),
}

use Keep::{Fields, Value as V};

/// The fields of LiveKit's `WebhookEvent` (protojson names) that are stored.
const KEPT: Keep = Fields(&[
    ("event", V),
    ("id", V),
    ("createdAt", V),
    ("numDropped", V),
    (
        "room",
        Fields(&[
            ("sid", V),
            ("name", V),
            ("emptyTimeout", V),
            ("departureTimeout", V),
            ("maxParticipants", V),
            ("creationTime", V),
            ("creationTimeMs", V),
            ("numParticipants", V),
            ("numPublishers", V),
            ("activeRecording", V),
        ]),
    ),
    (
        "participant",
        Fields(&[
            ("sid", V),
            ("identity", V),
            ("state", V),
            ("kind", V),
            ("joinedAt", V),
            ("joinedAtMs", V),
            ("isPublisher", V),
            ("disconnectReason", V),
        ]),
    ),
    (
        "track",
        Fields(&[("sid", V), ("type", V), ("source", V), ("muted", V)]),
    ),
    (
        "egressInfo",
        Fields(&[
            ("egressId", V),
            ("roomId", V),
            ("roomName", V),
            ("sourceType", V),
            ("status", V),
            ("startedAt", V),
            ("endedAt", V),
            ("updatedAt", V),
            ("error", V),
            ("errorCode", V),
            (
                "fileResults",
                Fields(&[
                    ("filename", V),
                    ("startedAt", V),
                    ("endedAt", V),
                    ("duration", V),
                    ("size", V),
                ]),
            ),
        ]),
    ),
    (
        "ingressInfo",
        Fields(&[
            ("ingressId", V),
            ("name", V),
            ("inputType", V),
            ("roomName", V),
            ("participantIdentity", V),
            ("enabled", V),
            (
                "state",
                Fields(&[
                    ("status", V),
                    ("error", V),
                    ("roomId", V),
                    ("startedAt", V),
                    ("endedAt", V),
                    ("updatedAt", V),
                ]),
            ),
        ]),
    ),
]);

/// The part of `value` that `keep` allows; None when nothing of it is.
fn kept(value: &Value, keep: &Keep) -> Option<Value> {
    match (keep, value) {
        (Keep::Value, Value::Object(_) | Value::Array(_)) => None,
        (Keep::Value, scalar) => Some(scalar.clone()),
        (Keep::Fields(fields), Value::Object(map)) => Some(Value::Object(
            fields
                .iter()
                .filter_map(|(name, keep)| Some(((*name).to_owned(), kept(map.get(*name)?, keep)?)))
                .collect(),
        )),
        (Keep::Fields(_), Value::Array(items)) => Some(Value::Array(
            items.iter().filter_map(|item| kept(item, keep)).collect(),
        )),
        (Keep::Fields(_), _) => None,
    }
}

/// What is stored of a webhook payload: the allowlisted fields only.
pub fn stored_payload(payload: &Value) -> Value {
    kept(payload, &KEPT).unwrap_or_else(|| Value::Object(Default::default()))
}

/// Records the event with the allowlisted part of its payload; answers false
/// when it was already recorded (a replay).
pub async fn record(
    conn: &mut AsyncPgConnection,
    id: &str,
    event: &str,
    payload: &Value,
) -> QueryResult<bool> {
    let n = diesel::insert_into(livekit_events::table)
        .values((
            livekit_events::event_id.eq(id),
            livekit_events::event.eq(event),
            livekit_events::payload.eq(stored_payload(payload)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_fields_are_kept_at_every_depth() {
        let payload = serde_json::json!({
            "event": "room_started",
            "id": "EV_1",
            "someFutureSecret": "x",
            "room": {"sid": "RM_1", "name": "sp-a", "turnPassword": "t", "metadata": "m",
                     "numParticipants": 2},
            "egressInfo": {"egressId": "EG_1", "roomComposite": {"fileOutputs": [{"s3": {"secret": "s"}}]},
                           "fileResults": [{"filename": "a.mp4", "location": "https://x"}]},
            "ingressInfo": {"ingressId": "IN_1", "streamKey": "k", "url": "rtmp://x",
                            "state": {"status": "ENDPOINT_PUBLISHING", "tracks": [{"sid": "TR"}]}},
            // A field that should be a scalar but comes as an object is dropped whole.
            "createdAt": {"nested": "secret"},
        });
        assert_eq!(
            stored_payload(&payload),
            serde_json::json!({
                "event": "room_started",
                "id": "EV_1",
                "room": {"sid": "RM_1", "name": "sp-a", "numParticipants": 2},
                "egressInfo": {"egressId": "EG_1", "fileResults": [{"filename": "a.mp4"}]},
                "ingressInfo": {"ingressId": "IN_1", "state": {"status": "ENDPOINT_PUBLISHING"}},
            })
        );
    }
}
