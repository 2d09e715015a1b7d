//! What the attack run of issue 12 found exposed, each as a user or an
//! operator would see it: credentials in stored webhook payloads (5),
//! viewers' emails shown to moderators (6), and unannounced drafts that a
//! stranger could tell apart from missing streams (7).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::livekit_events;
use stagepass::db::streams::AccessKind;

use crate::util::builders;
use crate::util::livekit_webhook::{post_webhook, signed};
use crate::util::{Browser, Page, TestApp, services};

// ---------------------------------------------------------------------------
// 5. Stored webhook payloads keep an allowlist of fields.

#[tokio::test]
async fn stored_webhook_payloads_keep_no_credential_only_allowlisted_fields() {
    use livekit_protocol as proto;
    let app = TestApp::spawn().await;
    let (_, owner) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner, "payloads").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;

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

/// Rows stored before the allowlist lose their credentials to the migration
/// (its SQL, run again over such a row).
#[tokio::test]
async fn the_migration_strips_credentials_from_payloads_stored_before() {
    let app = TestApp::spawn().await;
    let old = serde_json::json!({
        "event": "egress_started", "id": "EV_old",
        "room": {"name": "sp-old", "turnPassword": "old-turn"},
        "ingressInfo": {"ingressId": "IN_old", "streamKey": "old-key"},
        "egressInfo": {"egressId": "EG_old",
                       "roomComposite": {"fileOutputs": [{"s3": {"secret": "old-s3"}}]}},
    });
    diesel::insert_into(livekit_events::table)
        .values((
            livekit_events::event_id.eq("EV_old"),
            livekit_events::event.eq("egress_started"),
            livekit_events::payload.eq(&old),
        ))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let sql = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/2026-12-07-051000_exposure_event_payloads/up.sql"
    ));
    diesel::sql_query(sql)
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let stored: serde_json::Value = livekit_events::table
        .select(livekit_events::payload)
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        stored,
        serde_json::json!({
            "event": "egress_started", "id": "EV_old",
            "room": {"name": "sp-old"},
            "ingressInfo": {"ingressId": "IN_old"},
            "egressInfo": {"egressId": "EG_old"},
        })
    );
}

// ---------------------------------------------------------------------------
// 6. Moderators see display names, never emails.

#[tokio::test]
async fn moderators_see_display_names_never_viewers_emails_and_the_owner_still_does() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mo").await;
    let (_, banned) = builders::user(&app, "banned.viewer@example.com", "Banned Bea").await;
    let (_, timed_out) = builders::user(&app, "quiet.viewer@example.com", "Quiet Quinn").await;
    let (chatter, _) = builders::user(&app, "chatty.viewer@example.com", "Chatty Cat").await;
    let channel = builders::channel(&app, owner_id, "names-only").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    builders::announce(&app, stream.id).await;
    builders::ban(&app, channel.id, banned).await;
    diesel::sql_query(
        "INSERT INTO bans (channel_id, user_id, kind, until, reason) \
         VALUES ($1, $2, 'timeout', now() + interval '10 minutes', 'test')",
    )
    .bind::<BigInt, _>(channel.id.0)
    .bind::<BigInt, _>(timed_out.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    let said = chatter
        .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "hello")])
        .await;
    assert!(said.status.is_success(), "{}", said.text);
    let emails = [
        "banned.viewer@example.com",
        "quiet.viewer@example.com",
        "chatty.viewer@example.com",
        "owner@example.com",
    ];

    // Everything a moderator can open about this stream and channel.
    let moderate = format!("/studio/streams/{}/moderate", stream.id);
    let page = moderator.get(&moderate).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.texts(".ban-name"),
        vec!["Banned Bea".to_owned(), "Quiet Quinn".to_owned()]
    );
    let seen = [
        page,
        moderator.get_htmx(&moderate).await,
        moderator
            .get_htmx(&format!("/studio/streams/{}/participants", stream.id))
            .await,
        moderator.get(&format!("/s/{}", stream.id)).await,
        moderator.get(&format!("/s/{}/chat", stream.id)).await,
        moderator.get("/moderation").await,
        moderator
            .get(&format!("/studio/streams/{}/analytics", stream.id))
            .await,
        moderator
            .get(&format!("/studio/streams/{}/analytics.csv", stream.id))
            .await,
    ];
    for page in &seen {
        for email in emails {
            assert!(
                !page.text.contains(email),
                "a moderator was shown {email}:\n{}",
                page.text
            );
        }
    }
    // The pages that list accounts by email are the owner's alone.
    let pass = pass_for(&app, channel.id.0, Some(stream.id.0)).await;
    for path in [
        format!("/studio/channels/{}/audit", channel.handle),
        format!("/studio/channels/{}/grants", channel.handle),
        format!("/studio/channels/{}/team", channel.handle),
        format!("/studio/passes/{pass}/codes"),
        format!("/studio/passes/{pass}/codes.csv"),
    ] {
        assert_eq!(
            moderator.get(&path).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }

    // The owner, who sells the passes, still sees whose account it is.
    let page = owner.get(&moderate).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.texts(".ban-email"),
        vec![
            "banned.viewer@example.com".to_owned(),
            "quiet.viewer@example.com".to_owned()
        ]
    );
}

/// A pass for `stream` alone, or (None) for the whole channel.
async fn pass_for(app: &TestApp, channel: i64, stream: Option<i64>) -> i64 {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO access_passes (channel_id, stream_id, name, price_cents, currency, scope, \
         duration_seconds, includes_replays) VALUES ($1, $2, $3, 500, 'USD', \
         CASE WHEN $2 IS NULL THEN 'channel' ELSE 'stream' END, 86400, true) RETURNING id",
    )
    .bind::<BigInt, _>(channel)
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(stream)
    .bind::<Text, _>("Draft pass")
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    row.id
}

// ---------------------------------------------------------------------------
// 7. A hidden draft answers exactly as a missing stream.

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
}

/// Every route about one stream that someone outside its team can ask:
/// `{id}` is the stream, `{pass}` a pass for that stream alone, `{message}`
/// a chat message of it.
const VIEWER_ROUTES: &[(Method, &str)] = &[
    (Method::Get, "/s/{id}"),
    (Method::Get, "/s/{id}/status"),
    (Method::Get, "/s/{id}/time-left"),
    (Method::Get, "/s/{id}/live-stats"),
    (Method::Post, "/s/{id}/token"),
    (Method::Get, "/s/{id}/replays"),
    (Method::Get, "/s/{id}/pass"),
    (Method::Get, "/s/{id}/chat"),
    (Method::Get, "/s/{id}/chat/events"),
    (Method::Post, "/s/{id}/chat"),
    (Method::Post, "/s/{id}/chat/{message}/delete"),
    (Method::Get, "/s/{id}/thumbnail"),
    (Method::Post, "/passes/{pass}/buy"),
];

/// The team's routes about one stream: someone outside the team is refused
/// (403) on an announced stream, but must not learn that a hidden draft
/// exists either.
const TEAM_ROUTES: &[(Method, &str)] = &[
    (Method::Get, "/studio/streams/{id}"),
    (Method::Get, "/studio/streams/{id}/moderate"),
    (Method::Get, "/studio/streams/{id}/participants"),
    (Method::Get, "/studio/streams/{id}/broadcast"),
    (Method::Get, "/studio/streams/{id}/recording"),
    (Method::Get, "/studio/streams/{id}/analytics"),
    (Method::Get, "/studio/streams/{id}/analytics.csv"),
    (Method::Post, "/studio/streams/{id}/token"),
    (Method::Post, "/studio/streams/{id}/chat-settings"),
    (Method::Post, "/studio/streams/{id}/ingress"),
];

/// The answer, with the path asked for (as is, or in a `next=` parameter)
/// made alike so that a hidden draft's and a missing stream's can be
/// compared byte for byte.
async fn ask(browser: &Browser, method: Method, path: &str) -> (StatusCode, String, String) {
    let page: Page = match method {
        Method::Get => browser.get(path).await,
        Method::Post => browser.post_htmx(path, &[("body", "hello")]).await,
    };
    let same = |s: &str| {
        s.replace(&path.replace('/', "%2F"), "PATH")
            .replace(path, "PATH")
    };
    let redirect = page
        .location()
        .or(page.header("hx-redirect"))
        .unwrap_or_default();
    (page.status, same(&redirect), same(&page.text))
}

#[tokio::test]
async fn a_hidden_draft_answers_every_viewer_route_exactly_as_a_missing_stream() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mo").await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let anonymous = app.anonymous();
    let channel = builders::channel(&app, owner_id, "hidden-drafts").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let hidden = builders::stream(&app, &channel, AccessKind::Pass).await;
    let pass = pass_for(&app, channel.id.0, Some(hidden.id.0)).await;
    // The owner talks in the draft's chat before announcing it.
    let said = owner
        .post_htmx(&format!("/s/{}/chat", hidden.id), &[("body", "testing")])
        .await;
    assert!(said.status.is_success(), "{}", said.text);
    let message: i64 = stagepass::db::schema::chat_messages::table
        .select(stagepass::db::schema::chat_messages::id)
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    let missing = hidden.id.0 + 1000;
    let missing_pass = pass + 1000;

    let path = |template: &str, stream: i64, pass: i64| {
        template
            .replace("{id}", &stream.to_string())
            .replace("{pass}", &pass.to_string())
            .replace("{message}", &message.to_string())
    };
    for (who, browser) in [
        ("a stranger", &stranger),
        ("an anonymous visitor", &anonymous),
    ] {
        for &(method, route) in VIEWER_ROUTES.iter().chain(TEAM_ROUTES) {
            let as_hidden = ask(browser, method, &path(route, hidden.id.0, pass)).await;
            let as_missing = ask(browser, method, &path(route, missing, missing_pass)).await;
            assert_eq!(
                as_hidden.0, as_missing.0,
                "{route} for {who}: status of a hidden draft vs a missing stream\nhidden: {}\nmissing: {}",
                as_hidden.2, as_missing.2
            );
            assert_eq!(as_hidden.1, as_missing.1, "{route} for {who}: redirect");
            assert_eq!(as_hidden.2, as_missing.2, "{route} for {who}: body");
        }
    }
    // Nothing was bought, nothing was said.
    let orders: i64 = stagepass::db::schema::orders::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(orders, 0);
    // A channel pass bought "from" the hidden draft is bought from nowhere,
    // as from a missing stream: the order is not attributed to it.
    let channel_pass = pass_for(&app, channel.id.0, None).await;
    for from in [hidden.id.0, missing] {
        let bought = stranger
            .post_htmx(
                &format!("/passes/{channel_pass}/buy"),
                &[("stream_id", &from.to_string())],
            )
            .await;
        assert!(bought.status.is_success(), "{}", bought.text);
        let to = bought.header("hx-redirect").unwrap_or_default();
        assert!(!to.contains("stream="), "{to}");
    }
    let attributed: Vec<Option<i64>> = stagepass::db::schema::orders::table
        .select(stagepass::db::schema::orders::stream_id)
        .load(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(attributed, vec![None, None]);

    // The team still reaches its draft.
    for browser in [&owner, &moderator] {
        for route in ["/s/{id}", "/s/{id}/pass", "/s/{id}/replays", "/s/{id}/chat"] {
            let page = browser.get(&path(route, hidden.id.0, pass)).await;
            assert_eq!(page.status, StatusCode::OK, "{route}: {}", page.text);
        }
    }
    // Once announced, a stranger finds it and is told what it takes.
    builders::announce(&app, hidden.id).await;
    assert_eq!(
        stranger.get(&format!("/s/{}", hidden.id)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        stranger
            .post_htmx(&format!("/s/{}/token", hidden.id), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}
