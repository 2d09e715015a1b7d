//! What the attack run of issue 12 found exposed, each as a user or an
//! operator would see it: credentials in stored webhook payloads (5),
//! viewers' emails shown to moderators (6), and unannounced drafts that a
//! stranger could tell apart from missing streams (7).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::livekit_events;

use crate::live::{post_webhook, signed};
use crate::util::builders;
use crate::util::{TestApp, services};

// ---------------------------------------------------------------------------
// 5. Stored webhook payloads keep an allowlist of fields.

#[tokio::test]
async fn stored_webhook_payloads_keep_no_credential_only_allowlisted_fields() {
    use livekit_protocol as proto;
    let app = TestApp::spawn().await;
    let (_, owner) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner, "payloads").await;
    let stream = builders::stream(&app, &channel, "public").await;

    const TURN: &str = "turn-password-that-must-not-be-stored";
    const S3_SECRET: &str = "s3-secret-that-must-not-be-stored";
    const METADATA: &str = "metadata-someone-may-put-a-key-in";
    let room_started = proto::WebhookEvent {
        event: "room_started".into(),
        id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
        room: Some(proto::Room {
            sid: "RM_payloads".into(),
            name: stream.room_name.clone(),
            turn_password: TURN.into(),
            metadata: METADATA.into(),
            ..Default::default()
        }),
        created_at: chrono::Utc::now().timestamp(),
        ..Default::default()
    };
    // Egress events carry the request they were started with, S3 credentials included.
    let egress_updated = proto::WebhookEvent {
        event: "egress_updated".into(),
        id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
        egress_info: Some(proto::EgressInfo {
            egress_id: "EG_payloads".into(),
            room_name: stream.room_name.clone(),
            status: proto::EgressStatus::EgressActive as i32,
            request: Some(proto::egress_info::Request::RoomComposite(
                proto::RoomCompositeEgressRequest {
                    room_name: stream.room_name.clone(),
                    file_outputs: vec![proto::EncodedFileOutput {
                        filepath: "recordings/x.mp4".into(),
                        output: Some(proto::encoded_file_output::Output::S3(proto::S3Upload {
                            access_key: "AKIAPAYLOADS".into(),
                            secret: S3_SECRET.into(),
                            bucket: "stagepass".into(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        created_at: chrono::Utc::now().timestamp(),
        ..Default::default()
    };
    for event in [&room_started, &egress_updated] {
        let (body, token) = signed(event, services::LIVEKIT_SECRET);
        assert!(body.contains(TURN) || body.contains(S3_SECRET), "{body}");
        assert_eq!(post_webhook(&app, &body, &token).await, StatusCode::OK);
    }

    let rows: Vec<(String, serde_json::Value)> = livekit_events::table
        .select((livekit_events::event, livekit_events::payload))
        .order(livekit_events::received_at)
        .load(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let stored = serde_json::to_string(&rows).unwrap();
    for secret in [TURN, S3_SECRET, "AKIAPAYLOADS", METADATA] {
        assert!(!stored.contains(secret), "{secret} was stored:\n{stored}");
    }
    // What the log is for is still there: which event, about which room.
    let room = &rows[0].1;
    assert_eq!(room["event"], "room_started");
    assert_eq!(room["room"]["name"], stream.room_name.as_str());
    assert_eq!(room["room"]["sid"], "RM_payloads");
    let egress = &rows[1].1;
    assert_eq!(egress["event"], "egress_updated");
    assert_eq!(egress["egressInfo"]["egressId"], "EG_payloads");
    assert_eq!(egress["egressInfo"]["roomName"], stream.room_name.as_str());
    assert!(egress["egressInfo"].get("roomComposite").is_none());
}
