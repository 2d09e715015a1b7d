//! Moderation against the run's real livekit-server: bans that remove a
//! viewer connected through a real client and refuse their tokens, timeouts
//! that don't, the participants panel (LiveKit's own view of the room) with
//! remove and mute, who may do any of it, the audit log page and the
//! moderators' dashboard.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double};
use diesel_async::RunQueryDsl;
use livekit_api::access_token::{AccessToken, VideoGrants};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use stagepass::db::UserId;
use stagepass::db::channels::Channel;
use stagepass::db::schema::{audit_log, bans};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;
use stagepass::livekit::Participant;

use crate::util::builders::{self, LiveKitClient, Studio, grant};
use crate::util::{Browser, Page, TestApp, services};

struct Setup {
    app: TestApp,
    owner: Browser,
    owner_id: UserId,
    moderator: Browser,
    moderator_id: UserId,
    channel: Channel,
    stream: Stream,
}

/// An owner's channel with a pass-only stream and a moderator on its team.
async fn setup() -> Setup {
    let Studio {
        app,
        owner,
        owner_id,
        channel,
        stream,
    } = Studio::on(
        TestApp::spawn().await,
        "Olive Owner",
        "mod-channel",
        AccessKind::Pass,
    )
    .await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Max Mod").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    Setup {
        app,
        owner,
        owner_id,
        moderator,
        moderator_id,
        channel,
        stream,
    }
}

impl Setup {
    fn moderate(&self) -> String {
        format!("/studio/streams/{}/moderate", self.stream.id)
    }

    fn panel(&self) -> String {
        format!("/studio/streams/{}/participants", self.stream.id)
    }

    fn bans(&self) -> String {
        format!("/studio/channels/{}/bans", self.channel.handle)
    }

    fn timeouts(&self) -> String {
        format!("/studio/channels/{}/timeouts", self.channel.handle)
    }

    fn audit(&self) -> String {
        format!("/studio/channels/{}/audit", self.channel.handle)
    }

    /// A viewer with a grant for the channel.
    async fn viewer(&self, email: &str, name: &str) -> (Browser, UserId) {
        let (viewer, id) = builders::user(&self.app, email, name).await;
        grant(&self.app, id, self.channel.id, None, "-1 minute", "1 hour").await;
        (viewer, id)
    }
}

async fn token(browser: &Browser, stream: &Stream) -> (StatusCode, serde_json::Value) {
    let page = browser
        .post_htmx(&format!("/s/{}/token", stream.id), &[])
        .await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or(serde_json::Value::Null),
    )
}

/// Connects `browser`'s viewer token with a real LiveKit client.
async fn connect(browser: &Browser, stream: &Stream, seconds: u32) -> LiveKitClient {
    let (status, body) = token(browser, stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        seconds,
    )
    .await;
    let hello = client.next().await;
    assert_eq!(hello["connected"], true, "{hello}");
    client
}

/// POSTs like a button of the participants panel: htmx, aimed at #participants.
async fn post_from_panel(browser: &Browser, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = browser.csrf_token().await;
    Browser::read(
        browser
            .client
            .post(browser.url(path))
            .header("HX-Request", "true")
            .header("HX-Target", "participants")
            .header("X-CSRF-Token", csrf)
            .form(fields)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// LiveKit's own view of one participant, once they show up (10 s at most).
async fn in_room(
    app: &TestApp,
    stream: &Stream,
    identity: UserId,
) -> livekit_protocol::ParticipantInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let people = app
            .state
            .livekit
            .rooms
            .list_participants(&stream.room_name)
            .await
            .unwrap();
        if let Some(p) = people
            .into_iter()
            .find(|p| stagepass::livekit::user_of(&p.identity) == Some(identity))
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{identity} never showed up in the room"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Queryable, Debug)]
struct BanRow {
    id: i64,
    kind: String,
    until: Option<DateTime<Utc>>,
    reason: Option<String>,
    banned_by: Option<i64>,
    lifted_at: Option<DateTime<Utc>>,
    lifted_by: Option<i64>,
}

async fn bans_of(app: &TestApp, user: UserId) -> Vec<BanRow> {
    bans::table
        .filter(bans::user_id.eq(user.0))
        .order(bans::id.asc())
        .select((
            bans::id,
            bans::kind,
            bans::until,
            bans::reason,
            bans::banned_by,
            bans::lifted_at,
            bans::lifted_by,
        ))
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

/// Seconds from the database's now() to a ban's end.
async fn seconds_left(app: &TestApp, ban: i64) -> f64 {
    #[derive(QueryableByName)]
    struct Left {
        #[diesel(sql_type = Double)]
        s: f64,
    }
    let left: Left = diesel::sql_query(
        "SELECT extract(epoch FROM until - now())::float8 AS s FROM bans WHERE id = $1",
    )
    .bind::<BigInt, _>(ban)
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    left.s
}

/// The audit entries of `action`: actor, subject, details.
async fn audited(
    app: &TestApp,
    action: &str,
) -> Vec<(Option<i64>, Option<String>, serde_json::Value)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .order(audit_log::id.asc())
        .select((audit_log::actor_id, audit_log::subject, audit_log::details))
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_banned_viewer_is_removed_from_the_real_room_refused_a_token_and_unbanning_restores_it() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (viewer, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    let mut client = connect(&viewer, &s.stream, 30).await;

    // A moderator bans her from the moderation page, with a plain form.
    let banned_at = Instant::now();
    let page = s
        .moderator
        .submit(
            &s.moderate(),
            "#ban-form",
            &[
                ("email", " Viewer@Example.com "),
                ("reason", "spam links"),
                ("length", "permanent"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), Some(s.moderate()));
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    eprintln!("removed {:?} after the ban", banned_at.elapsed());

    let after = s.moderator.follow(&page).await;
    assert!(
        after
            .text_of("#alerts")
            .contains("Vera Viewer is banned from"),
        "{}",
        after.text
    );
    let rows = bans_of(&s.app, viewer_id).await;
    assert_eq!(rows.len(), 1);
    let ban = &rows[0];
    assert_eq!(ban.kind, "ban");
    assert_eq!(ban.until, None, "permanent");
    assert_eq!(ban.reason.as_deref(), Some("spam links"));
    assert_eq!(ban.banned_by, Some(s.moderator_id.0));
    let listed = after.text_of(&format!("#ban-{}", ban.id));
    // The moderator sees the display name, never the email.
    assert!(!listed.contains("viewer@example.com"), "{listed}");
    for part in [
        "Vera Viewer",
        "Banned",
        "permanently",
        "spam links",
        "Max Mod",
    ] {
        assert!(listed.contains(part), "{part} in {listed}");
    }

    let (status, body) = token(&viewer, &s.stream).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("banned"), "{body}");
    let entries = audited(&s.app, "moderation.banned").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.moderator_id.0));
    assert_eq!(entries[0].1, Some(viewer_id.to_string()));
    assert_eq!(entries[0].2["reason"], "spam links");
    assert_eq!(entries[0].2["stream_id"], s.stream.id.0);

    // Lifting it (plain form again) gives her tokens back.
    let lift = s
        .moderator
        .submit(&s.moderate(), &format!("#ban-{} .lift-form", ban.id), &[])
        .await;
    assert_eq!(lift.status, StatusCode::SEE_OTHER, "{}", lift.text);
    let after = s.moderator.follow(&lift).await;
    assert!(
        after.text_of("#alerts").contains("ban is lifted"),
        "{}",
        after.text
    );
    assert!(after.has("#no-bans"));
    let rows = bans_of(&s.app, viewer_id).await;
    assert!(rows[0].lifted_at.is_some());
    assert_eq!(rows[0].lifted_by, Some(s.moderator_id.0));
    let (status, body) = token(&viewer, &s.stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = audited(&s.app, "moderation.ban_lifted").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.moderator_id.0));
    assert_eq!(entries[0].1, Some(viewer_id.to_string()));

    // A ban for two days, with htmx: the bans section comes back, the panel is told to refresh.
    let stream_id = s.stream.id.to_string();
    let viewer_field = viewer_id.to_string();
    let section = s
        .owner
        .post_htmx(
            &s.bans(),
            &[
                ("user_id", &viewer_field),
                ("length", "days"),
                ("amount", "2"),
                ("stream", &stream_id),
            ],
        )
        .await;
    assert_eq!(section.status, StatusCode::OK, "{}", section.text);
    assert!(
        section
            .text
            .trim_start()
            .starts_with("<section id=\"bans\""),
        "{}",
        section.text
    );
    assert_eq!(
        section.header("hx-trigger").as_deref(),
        Some("participants-changed")
    );
    assert!(
        section.text_of("#bans-note").contains("until"),
        "{}",
        section.text
    );
    let rows = bans_of(&s.app, viewer_id).await;
    let left = seconds_left(&s.app, rows[1].id).await;
    assert!(
        (2.0 * 86400.0 - 60.0..=2.0 * 86400.0).contains(&left),
        "{left}"
    );
    let (status, _) = token(&viewer, &s.stream).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Banning her again while banned says so instead.
    let again = s
        .owner
        .post_htmx(
            &s.bans(),
            &[("user_id", &viewer_field), ("stream", &stream_id)],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        again.text_of("#ban-user-error").contains("already banned"),
        "{}",
        again.text
    );
    assert_eq!(bans_of(&s.app, viewer_id).await.len(), 2);
}

#[tokio::test]
async fn a_timeout_lasts_its_minutes_and_keeps_the_viewer_in_the_room() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (viewer, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    let mut client = connect(&viewer, &s.stream, 8).await;
    in_room(&s.app, &s.stream, viewer_id).await;

    // From the participants panel's "10 min" button.
    let stream_id = s.stream.id.to_string();
    let viewer_field = viewer_id.to_string();
    let panel = post_from_panel(
        &s.moderator,
        &s.timeouts(),
        &[
            ("user_id", &viewer_field),
            ("minutes", "10"),
            ("stream", &stream_id),
        ],
    )
    .await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    assert!(
        panel
            .text
            .trim_start()
            .starts_with("<section id=\"participants\""),
        "{}",
        panel.text
    );
    assert_eq!(panel.header("hx-trigger").as_deref(), Some("bans-changed"));
    assert!(
        panel
            .text_of("#participants-note")
            .contains("Vera Viewer can't chat for 10 minutes"),
        "{}",
        panel.text
    );
    assert!(
        panel.has(&format!("#participant-{viewer_id} .participant-timeout")),
        "{}",
        panel.text
    );

    let rows = bans_of(&s.app, viewer_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, "timeout");
    assert_eq!(rows[0].banned_by, Some(s.moderator_id.0));
    let left = seconds_left(&s.app, rows[0].id).await;
    assert!(
        (540.0..=600.0).contains(&left),
        "until ≈ now() + 10 min: {left} s left"
    );
    let entries = audited(&s.app, "moderation.timed_out").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.moderator_id.0));
    assert_eq!(entries[0].1, Some(viewer_id.to_string()));
    assert_eq!(entries[0].2["minutes"], 10);

    // A timeout is about chat: she keeps watching, and keeps getting tokens.
    let report = client.next().await;
    assert_eq!(report["disconnected"], false, "still in the room: {report}");
    let (status, _) = token(&viewer, &s.stream).await;
    assert_eq!(status, StatusCode::OK);

    // A new timeout replaces the running one; other lengths are refused.
    let panel = post_from_panel(
        &s.owner,
        &s.timeouts(),
        &[
            ("user_id", &viewer_field),
            ("minutes", "1"),
            ("stream", &stream_id),
        ],
    )
    .await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    let rows = bans_of(&s.app, viewer_id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].lifted_by,
        Some(s.owner_id.0),
        "the 10 minutes are replaced"
    );
    let left = seconds_left(&s.app, rows[1].id).await;
    assert!((0.0..=60.0).contains(&left), "{left}");
    let refused = post_from_panel(
        &s.owner,
        &s.timeouts(),
        &[
            ("user_id", &viewer_field),
            ("minutes", "5"),
            ("stream", &stream_id),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text_of("#participants-note")
            .contains("Choose 1, 10 or 60 minutes")
    );
    assert_eq!(bans_of(&s.app, viewer_id).await.len(), 2);

    // The moderation page lists the timeout, which can be lifted.
    let page = s.owner.get(&s.moderate()).await;
    let row = page.text_of(&format!("#ban-{}", rows[1].id));
    assert!(
        row.contains("Chat timeout") && row.contains("Vera Viewer"),
        "{row}"
    );
    let lifted = s
        .owner
        .post_htmx(
            &format!(
                "/studio/channels/{}/bans/{}/lift",
                s.channel.handle, rows[1].id
            ),
            &[("stream", &stream_id)],
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.text);
    assert!(
        lifted
            .text_of("#bans-note")
            .contains("Vera Viewer can chat again")
    );
    assert_eq!(audited(&s.app, "moderation.timeout_lifted").await.len(), 1);
}

#[tokio::test]
async fn the_participants_panel_shows_who_is_in_the_real_room_and_remove_kicks_them() {
    let s = setup().await;

    // Before going live there is no room.
    let panel = s.moderator.get_htmx(&s.panel()).await;
    assert_eq!(panel.status, StatusCode::OK);
    assert!(
        panel
            .text_of("#participants-not-live")
            .contains("The stream is not live.")
    );

    builders::go_live(&s.owner, s.stream.id).await;
    let (viewer, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    let mut client = connect(&viewer, &s.stream, 30).await;
    in_room(&s.app, &s.stream, viewer_id).await;

    let panel = s.moderator.get_htmx(&s.panel()).await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    assert!(
        panel
            .text
            .trim_start()
            .starts_with("<section id=\"participants\""),
        "{}",
        panel.text
    );
    assert_eq!(
        panel.attr("#participants", "hx-get"),
        Some(s.panel()),
        "the panel polls itself"
    );
    let row = format!("#participant-{viewer_id}");
    assert_eq!(
        panel.text_of(&format!("{row} .participant-name")),
        "Vera Viewer"
    );
    assert_eq!(
        panel.attr(&row, "data-identity"),
        Some(viewer_id.to_string())
    );
    assert_eq!(
        panel.attr(&row, "data-publishing").as_deref(),
        Some("false")
    );
    assert!(panel.text_of(&row).contains("Watching"));
    assert!(!panel.has(&format!("{row} .participant-role")));
    assert!(panel.has(&format!("{row} .participant-joined time")));
    for action in [".remove-form", ".timeout-buttons", ".ban-button"] {
        assert!(panel.has(&format!("{row} {action}")), "{action}");
    }
    // The moderation page shows the same panel, and offers her in its pickers.
    let page = s.moderator.get(&s.moderate()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.text_of(&format!("{row} .participant-name")),
        "Vera Viewer"
    );
    assert!(page.has(&format!("#ban-user option[value=\"{viewer_id}\"]")));
    assert!(page.has(&format!("#timeout-user option[value=\"{viewer_id}\"]")));
    assert_eq!(
        page.attr("#watch-link", "href"),
        Some(format!("/s/{}", s.stream.id))
    );
    assert!(!page.has("#audit-link"), "the audit log is the owner's");

    // A moderator can't remove the owner (watching, as a viewer); she can.
    let refused = s
        .moderator
        .post_htmx(
            &format!(
                "/studio/streams/{}/participants/{}/remove",
                s.stream.id, s.owner_id
            ),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.text_of("#participants-note"),
        "A moderator can't remove or mute the channel's owner."
    );

    let removed = s
        .moderator
        .post_htmx(
            &format!(
                "/studio/streams/{}/participants/{viewer_id}/remove",
                s.stream.id
            ),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert!(
        removed
            .text_of("#participants-note")
            .contains("Vera Viewer was removed from the room"),
        "{}",
        removed.text
    );
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let panel = s.moderator.get_htmx(&s.panel()).await;
    assert!(!panel.has(&row), "{}", panel.text);
    let entries = audited(&s.app, "moderation.participant_removed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.moderator_id.0));
    assert_eq!(entries[0].1, Some(viewer_id.to_string()));
    assert_eq!(entries[0].2["stream_id"], s.stream.id.0);

    // Removing someone who is not there says so.
    let again = s
        .moderator
        .post_htmx(
            &format!(
                "/studio/streams/{}/participants/{viewer_id}/remove",
                s.stream.id
            ),
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .text_of("#participants-note")
            .contains("no longer in the room")
    );
}

#[tokio::test]
async fn when_livekit_is_unreachable_the_panel_says_so_instead_of_failing() {
    let closed = services::free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("LIVEKIT_URL".into(), format!("http://127.0.0.1:{closed}"));
    })
    .await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "offline").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    builders::set_live(&app, stream.id, "0 seconds").await;

    let panel = owner
        .get_htmx(&format!("/studio/streams/{}/participants", stream.id))
        .await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    assert!(
        panel
            .text_of("#participants-unreachable")
            .contains("could not be reached"),
        "{}",
        panel.text
    );
    let page = owner
        .get(&format!("/studio/streams/{}/moderate", stream.id))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.has("#participants-unreachable"));
    assert!(page.has("#ban-form"), "banning by email still works");
    let remove = owner
        .post_htmx(
            &format!("/studio/streams/{}/participants/7/remove", stream.id),
            &[],
        )
        .await;
    assert_eq!(remove.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        remove
            .text_of("#participants-note")
            .contains("could not be reached")
    );
}

/// LiveKit's own view of the participant `identity`, now.
async fn livekit_view(
    app: &TestApp,
    stream: &Stream,
    identity: &str,
) -> Option<livekit_protocol::ParticipantInfo> {
    app.state
        .livekit
        .rooms
        .list_participants(&stream.room_name)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.identity == identity)
}

/// The owner broadcasting: a microphone track published with their real host
/// token from the studio, staying for `seconds`; answers the client and the
/// track once LiveKit lists it.
async fn broadcast(s: &Setup, seconds: u32) -> (LiveKitClient, livekit_protocol::TrackInfo) {
    let host = s
        .owner
        .post_htmx(&format!("/studio/streams/{}/token", s.stream.id), &[])
        .await;
    assert_eq!(host.status, StatusCode::OK, "{}", host.text);
    let host: serde_json::Value = serde_json::from_str(&host.text).unwrap();
    let mut client = LiveKitClient::start(
        host["url"].as_str().unwrap(),
        host["token"].as_str().unwrap(),
        "publish-stay",
        seconds,
    )
    .await;
    let hello = client.next().await;
    assert_eq!(hello["connected"], true, "{hello}");
    assert_eq!(hello["identity"], format!("host-{}", s.owner_id), "{hello}");
    let published = client.next().await;
    assert_eq!(published["published"], true, "{published}");
    let identity = Participant::Host(s.owner_id).identity();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(track) = livekit_view(&s.app, &s.stream, &identity)
            .await
            .and_then(|p| p.tracks.as_slice().first().cloned())
        {
            return (client, track);
        }
        assert!(Instant::now() < deadline, "the track never showed up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A participant that is not a user, joining with a token minted here the
/// way the app mints it (`identity`, `name`, its grants) and staying for
/// `seconds`; `publish` publishes a microphone track.
async fn join_as(
    s: &Setup,
    (identity, name): (&str, &str),
    grants: VideoGrants,
    publish: bool,
    seconds: u32,
) -> LiveKitClient {
    let config = &s.app.state.config.livekit;
    let token = AccessToken::with_api_key(&config.api_key, config.api_secret.expose_secret())
        .with_identity(identity)
        .with_name(name)
        .with_grants(VideoGrants {
            room_join: true,
            room: s.stream.room_name.clone(),
            ..grants
        })
        .to_jwt()
        .unwrap();
    let mode = if publish { "publish-stay" } else { "stay" };
    let mut client = LiveKitClient::start(config.public_url.as_str(), &token, mode, seconds).await;
    let hello = client.next().await;
    assert_eq!(hello["connected"], true, "{hello}");
    if publish {
        let published = client.next().await;
        assert_eq!(published["published"], true, "{published}");
    }
    client
}

/// Waits (10 s at most) until LiveKit lists `identity` with as many tracks.
async fn wait_listed(
    s: &Setup,
    identity: &str,
    tracks: usize,
) -> livekit_protocol::ParticipantInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = livekit_view(&s.app, &s.stream, identity).await
            && p.tracks.len() == tracks
        {
            return p;
        }
        assert!(Instant::now() < deadline, "LiveKit never listed {identity}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_moderator_cannot_take_the_owners_broadcast_off_the_air_and_the_owner_can() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (mut client, track) = broadcast(&s, 40).await;
    assert!(!track.muted);
    let host = Participant::Host(s.owner_id).identity();
    let participant = |action: &str| {
        format!(
            "/studio/streams/{}/participants/{host}/{action}",
            s.stream.id
        )
    };
    let row = format!("#participant-{host}");
    const REFUSED: &str = "Only the channel's owner can remove or mute the broadcast.";

    // A moderator asks to remove or mute the broadcast, through the panel
    // (htmx), with and without a track, and as a plain form post: 403, with
    // why, where the moderator is looking.
    let removed = post_from_panel(&s.moderator, &participant("remove"), &[]).await;
    assert_eq!(removed.status, StatusCode::FORBIDDEN, "{}", removed.text);
    assert_eq!(removed.text_of("#participants-note"), REFUSED);
    assert!(removed.has(&row), "the panel still lists the broadcast");
    for fields in [vec![("track", track.sid.as_str())], vec![]] {
        let muted = post_from_panel(&s.moderator, &participant("mute"), &fields).await;
        assert_eq!(muted.status, StatusCode::FORBIDDEN, "{}", muted.text);
        assert_eq!(muted.text_of("#participants-note"), REFUSED);
    }
    let csrf = s.moderator.csrf_token().await;
    let plain = s
        .moderator
        .post_raw(&participant("remove"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN, "{}", plain.text);
    assert_eq!(plain.text_of(".alert-error p"), REFUSED);

    // Their panel shows the broadcast, without buttons to stop it.
    let panel = s.moderator.get_htmx(&s.panel()).await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    assert_eq!(
        panel.text_of(&format!("{row} .participant-name")),
        "Olive Owner"
    );
    assert_eq!(
        panel.text_of(&format!("{row} .participant-activity")),
        "Broadcast from the browser"
    );
    assert!(!panel.has(&format!("{row} .remove-form")), "{}", panel.text);
    assert!(!panel.has(&format!("{row} .mute-form")), "{}", panel.text);

    // LiveKit saw nothing of it: the broadcast is there, its track on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = livekit_view(&s.app, &s.stream, &host)
        .await
        .expect("the broadcast is still in the room");
    let still_track = still.tracks.iter().find(|t| t.sid == track.sid);
    assert!(
        still_track.is_some_and(|t| !t.muted),
        "the broadcast's track was touched: {still:?}"
    );
    assert!(
        audited(&s.app, "moderation.participant_removed")
            .await
            .is_empty()
    );
    assert!(audited(&s.app, "moderation.track_muted").await.is_empty());

    // The owner may: her panel offers both, and mute mutes in LiveKit.
    let panel = s.owner.get_htmx(&s.panel()).await;
    let track_sel = format!("{row} .track[data-track-sid=\"{}\"]", track.sid);
    assert!(
        panel.has(&format!("{track_sel} .mute-form")),
        "{}",
        panel.text
    );
    assert!(panel.has(&format!("{row} .remove-form")), "{}", panel.text);
    let muted = post_from_panel(&s.owner, &participant("mute"), &[("track", &track.sid)]).await;
    assert_eq!(muted.status, StatusCode::OK, "{}", muted.text);
    assert!(
        muted
            .text_of("#participants-note")
            .contains("Muted Olive Owner's microphone"),
        "{}",
        muted.text
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !livekit_view(&s.app, &s.stream, &host)
        .await
        .is_some_and(|p| p.tracks.iter().any(|t| t.sid == track.sid && t.muted))
    {
        assert!(Instant::now() < deadline, "LiveKit never muted the track");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // And remove: the broadcast leaves the room.
    let removed = post_from_panel(&s.owner, &participant("remove"), &[]).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert!(
        removed
            .text_of("#participants-note")
            .contains("Olive Owner was removed from the room"),
        "{}",
        removed.text
    );
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let entries = audited(&s.app, "moderation.participant_removed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.owner_id.0));
    assert_eq!(entries[0].1, Some(s.owner_id.to_string()));
}

#[tokio::test]
async fn the_owner_mutes_a_published_track_through_livekit() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (client, track) = broadcast(&s, 30).await;
    assert!(!track.muted);
    let host = Participant::Host(s.owner_id).identity();

    let row = format!("#participant-{host}");
    let panel = s.owner.get_htmx(&s.panel()).await;
    assert_eq!(
        panel.attr(&row, "data-publishing").as_deref(),
        Some("true"),
        "{}",
        panel.text
    );
    assert!(
        panel
            .text_of(&format!("{row} .participant-role"))
            .contains("Owner")
    );
    let track_sel = format!("{row} .track[data-track-sid=\"{}\"]", track.sid);
    assert_eq!(
        panel.attr(&track_sel, "data-muted").as_deref(),
        Some("false")
    );
    assert!(panel.text_of(&track_sel).contains("Microphone"));
    assert!(panel.has(&format!("{track_sel} .mute-form")));
    assert!(!panel.has(&format!("{row} .ban-button")), "nor banned");

    let mute = format!("/studio/streams/{}/participants/{host}/mute", s.stream.id);
    let muted = s.owner.post_htmx(&mute, &[("track", &track.sid)]).await;
    assert_eq!(muted.status, StatusCode::OK, "{}", muted.text);
    assert!(
        muted
            .text_of("#participants-note")
            .contains("Muted Olive Owner's microphone"),
        "{}",
        muted.text
    );
    // LiveKit's own ListParticipants shows the track muted.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = livekit_view(&s.app, &s.stream, &host).await.unwrap();
        if p.tracks.iter().any(|t| t.sid == track.sid && t.muted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "LiveKit never muted the track: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let panel = s.owner.get_htmx(&s.panel()).await;
    assert_eq!(
        panel.attr(&track_sel, "data-muted").as_deref(),
        Some("true")
    );
    assert!(!panel.has(&format!("{track_sel} .mute-form")));
    let entries = audited(&s.app, "moderation.track_muted").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, Some(s.owner_id.0));
    assert_eq!(entries[0].1, Some(s.owner_id.to_string()));
    assert_eq!(entries[0].2["track_sid"], track.sid.as_str());
    assert_eq!(entries[0].2["source"], "Microphone");

    // Nothing left to mute.
    let again = s.owner.post_htmx(&mute, &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .text_of("#participants-note")
            .contains("no unmuted track")
    );
    client.stop().await;
}

#[tokio::test]
async fn the_recorder_is_never_listed_and_ingress_is_the_owners_to_stop() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (viewer, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    let watcher = connect(&viewer, &s.stream, 40).await;
    in_room(&s.app, &s.stream, viewer_id).await;
    // The built-in recorder: hidden, subscribe-only, marked a recorder.
    let recorder = Participant::Recorder(s.stream.id).identity();
    let recording = join_as(
        &s,
        (&recorder, "Recorder"),
        VideoGrants {
            can_subscribe: Some(true),
            can_publish: Some(false),
            can_publish_data: Some(false),
            hidden: true,
            recorder: true,
            ..Default::default()
        },
        false,
        40,
    )
    .await;
    // OBS through LiveKit Ingress, publishing.
    let ingress = Participant::Ingress(s.stream.id).identity();
    let obs = join_as(
        &s,
        (&ingress, "OBS"),
        VideoGrants {
            can_subscribe: Some(false),
            can_publish: Some(true),
            can_publish_data: Some(false),
            ..Default::default()
        },
        true,
        40,
    )
    .await;
    wait_listed(&s, &ingress, 1).await;
    wait_listed(&s, &recorder, 0).await;

    let panel = s.moderator.get_htmx(&s.panel()).await;
    assert_eq!(panel.status, StatusCode::OK, "{}", panel.text);
    let identities: Vec<String> = panel
        .html()
        .select(&scraper::Selector::parse(".participant[data-identity]").unwrap())
        .filter_map(|e| e.value().attr("data-identity").map(str::to_owned))
        .collect();
    assert_eq!(
        identities,
        [ingress.clone(), viewer_id.to_string()],
        "the broadcast first, then the viewer; never the recorder"
    );
    assert_eq!(panel.text_of("#participants .participant-count"), "(2)");
    let row = format!("#participant-{ingress}");
    assert_eq!(
        panel.text_of(&format!("{row} .participant-name")),
        "Encoder"
    );
    assert_eq!(
        panel.text_of(&format!("{row} .participant-activity")),
        "Broadcast through LiveKit Ingress"
    );
    assert!(!panel.has(&format!("{row} .remove-form")));
    assert!(!panel.has(&format!("{row} .mute-form")));
    assert!(!panel.has(&format!("{row} .ban-button")));
    // The moderation page's pickers don't offer the recorder either.
    let page = s.moderator.get(&s.moderate()).await;
    assert!(!page.text.contains(&recorder), "{}", page.text);

    let at = |who: &str, action: &str| {
        format!(
            "/studio/streams/{}/participants/{who}/{action}",
            s.stream.id
        )
    };
    for action in ["remove", "mute"] {
        let refused = post_from_panel(&s.moderator, &at(&ingress, action), &[]).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{action}: {}",
            refused.text
        );
        assert_eq!(
            refused.text_of("#participants-note"),
            "Only the channel's owner can remove or mute the broadcast."
        );
    }
    for asker in [&s.moderator, &s.owner] {
        let refused = post_from_panel(asker, &at(&recorder, "remove"), &[]).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert!(
            refused
                .text_of("#participants-note")
                .contains("The recorder is not a viewer"),
            "{}",
            refused.text
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ingress_now = livekit_view(&s.app, &s.stream, &ingress)
        .await
        .expect("the ingress is still in the room");
    assert!(
        ingress_now.tracks.iter().all(|t| !t.muted),
        "{ingress_now:?}"
    );
    assert!(livekit_view(&s.app, &s.stream, &recorder).await.is_some());
    assert!(
        audited(&s.app, "moderation.participant_removed")
            .await
            .is_empty()
    );
    assert!(audited(&s.app, "moderation.track_muted").await.is_empty());
    for client in [watcher, recording, obs] {
        client.stop().await;
    }
}

#[tokio::test]
async fn strangers_and_moderators_of_other_channels_are_refused_every_moderation_route() {
    let s = setup().await;
    let (_, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    builders::ban(&s.app, s.channel.id, viewer_id).await;
    let ban_id = bans_of(&s.app, viewer_id).await[0].id;
    let (stranger, _) = builders::user(&s.app, "stranger@example.com", "Stranger").await;
    let (elsewhere, elsewhere_id) = builders::user(&s.app, "else@example.com", "Elsewhere").await;
    let (_, other_owner) = builders::user(&s.app, "other@example.com", "Other").await;
    let other = builders::channel(&s.app, other_owner, "other-channel").await;
    builders::moderator(&s.app, other.id, elsewhere_id).await;
    // Announced: an unannounced draft is a 404 to them (exposure.rs).
    builders::announce(&s.app, s.stream.id).await;

    let id = s.stream.id;
    let handle = &s.channel.handle;
    let viewer_field = viewer_id.to_string();
    let stream_field = id.to_string();
    let gets = [
        format!("/studio/streams/{id}/moderate"),
        format!("/studio/streams/{id}/participants"),
        format!("/studio/channels/{handle}/audit"),
    ];
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/studio/streams/{id}/participants/{viewer_id}/mute"),
            vec![],
        ),
        (
            format!("/studio/streams/{id}/participants/{viewer_id}/remove"),
            vec![],
        ),
        (
            format!("/studio/channels/{handle}/bans"),
            vec![("email", "viewer@example.com"), ("stream", &stream_field)],
        ),
        (
            format!("/studio/channels/{handle}/bans/{ban_id}/lift"),
            vec![],
        ),
        (
            format!("/studio/channels/{handle}/timeouts"),
            vec![("user_id", &viewer_field), ("minutes", "10")],
        ),
    ];
    for (who, browser) in [
        ("stranger", &stranger),
        ("other channel's moderator", &elsewhere),
    ] {
        for path in &gets {
            let page = browser.get(path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}: GET {path}");
            assert!(
                page.text.contains("Only the"),
                "{who}: GET {path}: {}",
                page.text
            );
        }
        for (path, fields) in &posts {
            let page = browser.post_htmx(path, fields).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}: POST {path}");
        }
    }
    // The audit log is the owner's alone.
    let page = s.moderator.get(&gets[2]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text
            .contains("Only the owner of this channel can read its audit log.")
    );
    // Nothing changed.
    let rows = bans_of(&s.app, viewer_id).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].lifted_at.is_none());
    assert!(audited(&s.app, "moderation.banned").await.is_empty());

    // Unknown things are 404; anonymous visitors are sent to sign in.
    for path in [
        "/studio/streams/999999/moderate",
        "/studio/streams/999999/participants",
        "/studio/streams/abc/moderate",
        "/studio/channels/no-such-channel/audit",
    ] {
        assert_eq!(
            s.owner.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let unknown = s
        .owner
        .post_htmx(&format!("/studio/channels/{handle}/bans/999999/lift"), &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let anonymous = s.app.anonymous();
    for path in gets.iter().chain([&"/moderation".to_owned()]) {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location().unwrap().starts_with("/signin?next="),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_owner_and_moderators_cannot_be_banned_or_timed_out() {
    let s = setup().await;
    let (_, second_id) = builders::user(&s.app, "second@example.com", "Second Mod").await;
    builders::moderator(&s.app, s.channel.id, second_id).await;

    let page = s
        .moderator
        .submit(
            &s.moderate(),
            "#ban-form",
            &[("email", "owner@example.com"), ("length", "permanent")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    assert!(
        page.text_of("#ban-user-error")
            .contains("The channel's owner can't be banned."),
        "{}",
        page.text
    );
    assert_eq!(
        page.attr("#ban-email", "value").as_deref(),
        Some("owner@example.com"),
        "kept"
    );

    let stream_id = s.stream.id.to_string();
    for (browser, email) in [
        (&s.owner, "mod@example.com"),
        (&s.moderator, "second@example.com"),
    ] {
        let section = browser
            .post_htmx(&s.bans(), &[("email", email), ("stream", &stream_id)])
            .await;
        assert_eq!(section.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            section
                .text
                .trim_start()
                .starts_with("<section id=\"bans\"")
        );
        assert!(
            section
                .text_of("#ban-user-error")
                .contains("is a moderator of this channel"),
            "{}",
            section.text
        );
    }
    let owner_field = s.owner_id.to_string();
    let timeout = s
        .moderator
        .post_htmx(
            &s.timeouts(),
            &[
                ("user_id", &owner_field),
                ("minutes", "10"),
                ("stream", &stream_id),
            ],
        )
        .await;
    assert_eq!(timeout.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        timeout
            .text_of("#timeout-user-error")
            .contains("owner can't be timed out")
    );

    // Other mistakes, next to their fields.
    for (fields, error, words) in [
        (
            vec![("email", "")],
            "#ban-user-error",
            "Choose someone in the room",
        ),
        (
            vec![("email", "nobody@example.com")],
            "#ban-user-error",
            "No account uses that email",
        ),
        (
            vec![
                ("email", "owner@example.com"),
                ("length", "days"),
                ("amount", "400"),
            ],
            "#ban-length-error",
            "between 1 hour and 366 days",
        ),
    ] {
        let mut fields = fields;
        fields.push(("stream", &stream_id));
        let page = s.moderator.post_htmx(&s.bans(), &fields).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            page.text_of(error).contains(words),
            "{words}: {}",
            page.text
        );
    }
    let long = "x".repeat(201);
    let (_, viewer) = builders::user(&s.app, "viewer@example.com", "Vera").await;
    let page = s
        .moderator
        .post_htmx(
            &s.bans(),
            &[
                ("email", "viewer@example.com"),
                ("reason", &long),
                ("stream", &stream_id),
            ],
        )
        .await;
    assert!(page.text_of("#ban-reason-error").contains("at most 200"));
    assert!(bans_of(&s.app, viewer).await.is_empty());

    let count: i64 = bans::table
        .count()
        .get_result(&mut *s.app.conn().await)
        .await
        .unwrap();
    assert_eq!(count, 0, "nobody was banned");
}

#[tokio::test]
async fn the_owners_audit_log_lists_every_action_and_filters_by_action_actor_and_date() {
    let s = setup().await;
    let (_, alice) = builders::user(&s.app, "alice@example.com", "Alice").await;
    let (_, bob) = builders::user(&s.app, "bob@example.com", "Bob").await;
    let stream_id = s.stream.id.to_string();
    let alice_field = alice.to_string();
    let bob_field = bob.to_string();

    let banned = s
        .owner
        .post_htmx(
            &s.bans(),
            &[
                ("user_id", &alice_field),
                ("reason", "spam"),
                ("stream", &stream_id),
            ],
        )
        .await;
    assert_eq!(banned.status, StatusCode::OK, "{}", banned.text);
    let timed_out = s
        .moderator
        .post_htmx(
            &s.timeouts(),
            &[
                ("user_id", &bob_field),
                ("minutes", "60"),
                ("stream", &stream_id),
            ],
        )
        .await;
    assert_eq!(timed_out.status, StatusCode::OK, "{}", timed_out.text);
    let ban_id = bans_of(&s.app, alice).await[0].id;
    let lifted = s
        .moderator
        .post_htmx(
            &format!("/studio/channels/{}/bans/{ban_id}/lift", s.channel.handle),
            &[("stream", &stream_id)],
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK);

    let actions = |page: &Page| -> Vec<String> {
        let html = page.html();
        let sel = scraper::Selector::parse(".audit-row").unwrap();
        html.select(&sel)
            .map(|r| r.value().attr("data-action").unwrap().to_owned())
            .collect()
    };
    let page = s.owner.get(&s.audit()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        actions(&page),
        [
            "moderation.ban_lifted",
            "moderation.timed_out",
            "moderation.banned"
        ],
        "newest first"
    );
    let banned_row = page.text_of(".audit-row[data-action=\"moderation.banned\"]");
    for part in [
        "Olive Owner",
        "Banned from the channel permanently",
        "Alice (alice@example.com)",
        "reason: spam",
    ] {
        assert!(banned_row.contains(part), "{part} in {banned_row}");
    }
    let timeout_row = page.text_of(".audit-row[data-action=\"moderation.timed_out\"]");
    for part in [
        "Max Mod",
        "mod@example.com",
        "Timed out of chat for 60 min",
        "Bob (bob@example.com)",
    ] {
        assert!(timeout_row.contains(part), "{part} in {timeout_row}");
    }
    // The filter names actions in words; their keys are the values.
    let options: Vec<String> = page.texts("#filter-action option");
    for a in [
        "Lifted a ban",
        "Banned from the channel",
        "Timed out of chat",
    ] {
        assert!(options.iter().any(|o| o == a), "{a} in {options:?}");
    }
    assert!(page.has("#filter-action option[value=\"moderation.banned\"]"));
    assert!(!page.text.contains("<code class=\"muted audit-action\">"));

    let today = Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let yesterday = today.pred_opt().unwrap();
    for (query, expected) in [
        (
            "?action=moderation.banned".to_owned(),
            vec!["moderation.banned"],
        ),
        (
            "?actor=MOD%40example".to_owned(),
            vec!["moderation.ban_lifted", "moderation.timed_out"],
        ),
        ("?actor=owner".to_owned(), vec!["moderation.banned"]),
        (
            "?actor=owner&action=moderation.timed_out".to_owned(),
            vec![],
        ),
        (format!("?from={tomorrow}"), vec![]),
        (format!("?to={yesterday}"), vec![]),
        (
            format!("?from={today}&to={today}"),
            vec![
                "moderation.ban_lifted",
                "moderation.timed_out",
                "moderation.banned",
            ],
        ),
        // What can't be read is no filter, not an error.
        (
            "?from=soon&page=-2".to_owned(),
            vec![
                "moderation.ban_lifted",
                "moderation.timed_out",
                "moderation.banned",
            ],
        ),
    ] {
        let page = s.owner.get(&format!("{}{query}", s.audit())).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert_eq!(actions(&page), expected, "{query}");
    }
    let page = s
        .owner
        .get(&format!("{}?action=moderation.banned", s.audit()))
        .await;
    assert_eq!(
        page.attr("#filter-action option[selected]", "value")
            .as_deref(),
        Some("moderation.banned")
    );
    assert!(
        s.owner
            .get(&format!("{}?actor=nobody", s.audit()))
            .await
            .has("#no-entries")
    );

    // htmx swaps the list alone.
    let fragment = s
        .owner
        .get_htmx(&format!("{}?actor=owner", s.audit()))
        .await;
    assert!(
        fragment
            .text
            .trim_start()
            .starts_with("<section id=\"audit\""),
        "{}",
        fragment.text
    );
    assert_eq!(actions(&fragment), ["moderation.banned"]);

    // 50 a page.
    diesel::sql_query(
        "INSERT INTO audit_log (actor_id, channel_id, action, subject, created_at) \
         SELECT $1, $2, 'stream.live', NULL, now() - interval '1 day' FROM generate_series(1, 50)",
    )
    .bind::<BigInt, _>(s.owner_id.0)
    .bind::<BigInt, _>(s.channel.id.0)
    .execute(&mut *s.app.conn().await)
    .await
    .unwrap();
    let first = s.owner.get(&s.audit()).await;
    assert_eq!(actions(&first).len(), 50);
    assert!(
        first.text_of("#audit-count").contains("53 entries"),
        "{}",
        first.text_of("#audit-count")
    );
    let next = first.attr("a[rel=next]", "href").expect("a next page");
    let second = s.owner.get(&next).await;
    assert_eq!(actions(&second), ["stream.live"; 3]);
    assert!(second.has("a[rel=prev]") && !second.has("a[rel=next]"));
}

#[tokio::test]
async fn the_dashboard_lists_a_moderators_channels_and_they_watch_without_a_pass() {
    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let upcoming = builders::stream(&s.app, &s.channel, AccessKind::Pass).await;
    diesel::sql_query("UPDATE streams SET title = 'Next week', scheduled_at = now() + interval '7 days' WHERE id = $1")
        .bind::<BigInt, _>(upcoming.id.0)
        .execute(&mut *s.app.conn().await)
        .await
        .unwrap();
    // The moderator also owns a channel of their own.
    builders::channel(&s.app, s.moderator_id, "max-own").await;

    let page = s.moderator.get("/moderation").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let card = "#moderated-mod-channel";
    assert_eq!(page.attr(card, "data-role").as_deref(), Some("moderator"));
    assert!(page.text_of(card).contains("mod-channel channel"));
    let live = format!("{card} .live-streams [data-stream-id=\"{}\"]", s.stream.id);
    assert!(
        page.has(&format!("{live} a[href=\"/s/{}\"]", s.stream.id)),
        "{}",
        page.text
    );
    assert!(page.has(&format!(
        "{live} a[href=\"/studio/streams/{}/moderate\"]",
        s.stream.id
    )));
    let soon = format!(
        "{card} .upcoming-streams [data-stream-id=\"{}\"]",
        upcoming.id
    );
    assert!(page.text_of(&soon).contains("Next week"));
    assert_eq!(
        page.attr("#moderated-max-own", "data-role").as_deref(),
        Some("owner")
    );
    assert!(page.text_of("#moderated-max-own").contains("Owner"));

    // Moderators watch without a pass: the access rule mints them a token.
    let (status, body) = token(&s.moderator, &s.stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // And the moderation page is theirs, without the owner's links.
    let moderate = s.moderator.get(&s.moderate()).await;
    assert_eq!(moderate.status, StatusCode::OK);
    assert!(
        moderate.has("#participants") && moderate.has("#ban-form") && moderate.has("#timeout-form")
    );
    assert_eq!(moderate.text_of("#stream-state"), "Live");

    // The studio links here; someone on no team sees how it works.
    let studio = s.owner.get("/studio").await;
    assert!(studio.has("a[href=\"/moderation\"]"));
    let stream_page = s
        .owner
        .get(&format!("/studio/streams/{}", s.stream.id))
        .await;
    assert!(stream_page.has(&format!("a[href=\"{}\"]", s.moderate())));
    let (nobody, _) = builders::user(&s.app, "nobody@example.com", "Nobody").await;
    let empty = nobody.get("/moderation").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.has("#no-moderation"));
}

#[tokio::test]
async fn in_a_real_browser_the_panel_updates_itself_and_its_ban_button_removes_the_viewer() {
    use crate::util::PASSWORD;
    use crate::util::browser::Browser as Chromium;

    let s = setup().await;
    builders::go_live(&s.owner, s.stream.id).await;
    let (viewer, viewer_id) = s.viewer("viewer@example.com", "Vera Viewer").await;
    let chromium = Chromium::start().await;
    chromium
        .sign_in(&s.app.url, "mod@example.com", PASSWORD)
        .await;
    chromium
        .goto(&format!("{}{}", s.app.url, s.moderate()))
        .await;
    chromium.wait_for("#participants-empty").await;

    // She joins: the panel shows her without a reload (it polls every 5 s).
    let mut client = connect(&viewer, &s.stream, 40).await;
    let row = format!("#participant-{viewer_id}");
    chromium.wait_for(&format!("{row} .participant-name")).await;
    assert_eq!(
        chromium.text(&format!("{row} .participant-name")).await,
        "Vera Viewer"
    );

    // The panel's Ban button asks first, then bans; the bans section refreshes itself.
    chromium.click(&format!("#ban-{viewer_id}")).await;
    let question = chromium.accept_dialog().await;
    assert!(
        question.contains("Ban Vera Viewer from the channel?"),
        "{question}"
    );
    chromium.wait_for("#participants-note").await;
    assert!(
        chromium
            .text("#participants-note")
            .await
            .contains("Vera Viewer is banned")
    );
    let gone = client.next().await;
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    chromium
        .wait_for(&format!("#ban-list .ban-row[data-user-id=\"{viewer_id}\"]"))
        .await;
    assert_eq!(chromium.path().await, s.moderate(), "no navigation");
    chromium.close().await;
}
