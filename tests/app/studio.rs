//! The studio: the dashboard, creating, editing and deleting streams — as the
//! owner, a moderator, a stranger and an anonymous visitor meet them.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::StreamId;
use stagepass::db::schema::{audit_log, streams};
use stagepass::db::streams::Status;

use crate::util::builders;
use crate::util::builders::{create_channel, stream_in_state};
use crate::util::{Browser, TestApp};

fn datetime_local(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// Creates a stream through the real form; answers its id.
async fn create_stream(owner: &Browser, handle: &str, fields: &[(&str, &str)]) -> StreamId {
    let page = owner
        .submit(
            &format!("/studio/channels/{handle}/streams/new"),
            "#stream-form",
            fields,
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let to = page.location().unwrap();
    to.strip_prefix("/studio/streams/")
        .and_then(|id| id.parse().ok())
        .map(StreamId)
        .unwrap_or_else(|| panic!("redirected to {to}"))
}

#[derive(Queryable, Debug)]
struct Row {
    title: String,
    description: String,
    access: String,
    status: String,
    scheduled_at: Option<DateTime<Utc>>,
    room_name: String,
}

async fn row(app: &TestApp, id: StreamId) -> Option<Row> {
    streams::table
        .find(id)
        .select((
            streams::title,
            streams::description,
            streams::access,
            streams::status,
            streams::scheduled_at,
            streams::room_name,
        ))
        .first(&mut *app.conn().await)
        .await
        .optional()
        .unwrap()
}

async fn stream_count(app: &TestApp) -> i64 {
    streams::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_sign_in() {
    let app = TestApp::spawn().await;
    let anon = app.anonymous();
    for path in ["/studio", "/studio/channels/new", "/studio/streams/1"] {
        let page = anon.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        assert_eq!(
            page.location(),
            Some(format!("/signin?next={next}")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_new_stream_is_a_draft_listed_with_its_watch_link() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;

    let new_page = ann.get("/studio/channels/ann-live/streams/new").await;
    assert_eq!(new_page.status, StatusCode::OK);
    assert!(
        new_page.has("#access-pass[checked]"),
        "pass holders by default"
    );
    assert!(
        new_page
            .text_of("label[for=scheduled_at]")
            .contains("(UTC)")
    );
    assert_eq!(
        new_page.attr("#scheduled_at", "type").as_deref(),
        Some("datetime-local")
    );

    let when = Utc::now() + Duration::days(3);
    let id = create_stream(
        &ann,
        "ann-live",
        &[
            ("title", "Friday <jam>"),
            ("description", "Bring requests."),
            ("access", "public"),
            ("scheduled_at", &datetime_local(when)),
        ],
    )
    .await;

    let stored = row(&app, id).await.unwrap();
    assert_eq!(stored.status, "draft");
    assert_eq!(stored.access, "public");
    assert_eq!(stored.title, "Friday <jam>");
    assert_eq!(
        stored.scheduled_at.map(datetime_local),
        Some(datetime_local(when)),
        "the value is read as UTC"
    );
    let prefix = &app.state.config.livekit.room_prefix;
    assert!(
        stored.room_name.starts_with(prefix.as_str())
            && stored.room_name.len() >= prefix.len() + 32,
        "{} (prefix {prefix})",
        stored.room_name
    );
    let audit: i64 = audit_log::table
        .filter(audit_log::action.eq("stream.created"))
        .filter(audit_log::subject.eq(id.to_string()))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(audit, 1);

    // The stream's own page: its state, its link, the draft's controls.
    let url = format!("{}/s/{id}", app.url);
    let page = ann.get(&format!("/studio/streams/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text_of("#stream-title"), "Friday <jam>");
    assert_eq!(
        page.attr("#stream-state", "data-state").as_deref(),
        Some("scheduled")
    );
    assert_eq!(page.text_of("#watch-link"), url);
    assert_eq!(
        page.attr("#share button[data-copy]", "data-copy"),
        Some(url.clone())
    );
    assert_eq!(
        page.attr("#go-live-form", "action"),
        Some(format!("/studio/streams/{id}/live"))
    );
    assert!(page.has("#go-live-form input[name=csrf_token]"));
    assert!(!page.has("#end-form"));
    // The camera check sits beside Go live, at the top, before the details.
    assert_eq!(
        page.attr("#lifecycle #broadcast-link", "href"),
        Some(format!("/studio/streams/{id}/broadcast"))
    );
    let html = &page.text;
    assert!(
        html.find("id=\"lifecycle\"") < html.find("id=\"stream-form\""),
        "Go live comes before the details form"
    );
    // One "Chat" heading, not a card in a card.
    assert_eq!(page.texts("#chat-settings h2"), vec!["Chat"]);
    assert!(!page.has(".card > #chat-settings"));
    assert!(page.has("#delete-form"));
    assert_eq!(
        page.attr("#scheduled_at", "value"),
        Some(datetime_local(when))
    );
    assert!(page.has("#access-public[checked]"));

    // The dashboard lists it with its badge, schedule and link.
    let studio = ann.get("/studio").await;
    let item = format!(".studio-stream[data-stream-id='{id}']");
    assert_eq!(
        studio.text_of(&format!("{item} .stream-title")),
        "Friday <jam>"
    );
    assert_eq!(
        studio
            .attr(&format!("{item} .badge"), "data-state")
            .as_deref(),
        Some("scheduled")
    );
    assert_eq!(studio.text_of(&format!("{item} .watch-link")), url);
    assert_eq!(
        studio.attr(&format!("{item} button[data-copy]"), "data-copy"),
        Some(url)
    );
    assert_eq!(
        studio.attr(&format!("{item} time"), "datetime"),
        Some(when.format("%Y-%m-%dT%H:%M:00Z").to_string())
    );

    // Without a schedule it is a plain draft.
    let draft = create_stream(
        &ann,
        "ann-live",
        &[("title", "Someday"), ("access", "pass")],
    )
    .await;
    let studio = ann.get("/studio").await;
    assert_eq!(
        studio
            .attr(
                &format!(".studio-stream[data-stream-id='{draft}'] .badge"),
                "data-state"
            )
            .as_deref(),
        Some("draft")
    );
    assert_eq!(row(&app, draft).await.unwrap().scheduled_at, None);
}

#[tokio::test]
async fn a_past_or_unreadable_schedule_and_a_missing_title_are_refused() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let new = "/studio/channels/ann-live/streams/new";

    let yesterday = datetime_local(Utc::now() - Duration::days(1));
    let past = ann
        .submit(
            new,
            "#stream-form",
            &[
                ("title", "Too late"),
                ("access", "pass"),
                ("scheduled_at", &yesterday),
            ],
        )
        .await;
    assert_eq!(past.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        past.text_of("#scheduled_at-error")
            .contains("That time has passed")
    );
    assert_eq!(
        past.attr("#scheduled_at", "aria-invalid").as_deref(),
        Some("true")
    );
    assert_eq!(past.attr("#title", "value").as_deref(), Some("Too late"));

    let garbled = ann
        .submit(
            new,
            "#stream-form",
            &[
                ("title", "Huh"),
                ("access", "pass"),
                ("scheduled_at", "next friday"),
            ],
        )
        .await;
    assert_eq!(garbled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        garbled.text_of("#scheduled_at-error"),
        "Enter a date and time like 2026-11-22 18:00 (UTC)."
    );

    let fragment = ann
        .post_htmx(
            "/studio/channels/ann-live/streams",
            &[("title", " "), ("access", "everyone"), ("scheduled_at", "")],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!fragment.text.contains("<html"));
    assert!(fragment.has("form#stream-form"));
    assert_eq!(fragment.text_of("#title-error"), "Give the stream a title.");
    assert!(fragment.has("#access-error"));

    assert_eq!(stream_count(&app).await, 0);
}

#[tokio::test]
async fn editing_a_stream_saves_it_or_says_what_to_fix() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let id = create_stream(
        &ann,
        "ann-live",
        &[("title", "Draft one"), ("access", "pass")],
    )
    .await;
    let path = format!("/studio/streams/{id}");

    // Without JavaScript: 303 back to the page, with a message.
    let when = Utc::now() + Duration::days(2);
    let saved = ann
        .submit(
            &path,
            "#stream-form",
            &[
                ("title", "Opening night"),
                ("description", "Doors at six."),
                ("access", "public"),
                ("scheduled_at", &datetime_local(when)),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(saved.location(), Some(path.clone()));
    let page = ann.follow(&saved).await;
    assert!(page.text_of("#alerts").contains("saved"));
    assert_eq!(page.text_of("#stream-title"), "Opening night");
    let stored = row(&app, id).await.unwrap();
    assert_eq!(
        (
            stored.title.as_str(),
            stored.description.as_str(),
            stored.access.as_str()
        ),
        ("Opening night", "Doors at six.", "public")
    );
    assert_eq!(
        stored.scheduled_at.map(datetime_local),
        Some(datetime_local(when))
    );

    // htmx: the details part comes back re-rendered; clearing the schedule makes it a draft again.
    let ok = ann
        .post_htmx(
            &path,
            &[
                ("title", "Opening night!"),
                ("description", ""),
                ("access", "pass"),
                ("scheduled_at", ""),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(!ok.text.contains("<html"));
    assert_eq!(ok.text_of("#stream-title"), "Opening night!");
    assert_eq!(ok.text_of(".form-success"), "Saved.");
    assert_eq!(
        ok.attr("#stream-state", "data-state").as_deref(),
        Some("draft")
    );
    // The watch link's note comes back with it: a draft's link works later.
    assert!(ok.has("#share #share-when"), "{}", ok.text);
    let stored = row(&app, id).await.unwrap();
    assert_eq!(
        (stored.access.as_str(), stored.scheduled_at),
        ("pass", None)
    );

    // Errors next to the fields; nothing is saved.
    let bad = ann
        .post_htmx(
            &path,
            &[
                ("title", &"t".repeat(201)),
                ("access", "pass"),
                ("scheduled_at", "2020-01-01T10:00"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.text_of("#title-error"), "Use at most 200 characters.");
    assert!(bad.has("#scheduled_at-error"));
    assert_eq!(
        bad.text_of("#stream-title"),
        "Opening night!",
        "the heading keeps the saved title"
    );
    assert_eq!(row(&app, id).await.unwrap().title, "Opening night!");
}

#[tokio::test]
async fn a_live_stream_shows_its_controls_and_keeps_its_terms() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let live = stream_in_state(&app, channel, "On air", Status::Live, None).await;
    let path = format!("/studio/streams/{live}");

    let page = ann.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.attr("#stream-state", "data-state").as_deref(),
        Some("live")
    );
    assert_eq!(
        page.attr("#broadcast-link", "href"),
        Some(format!("/studio/streams/{live}/broadcast"))
    );
    assert_eq!(
        page.attr("#end-form", "action"),
        Some(format!("/studio/streams/{live}/end"))
    );
    assert!(page.has("#end-form input[name=csrf_token]"));
    assert!(!page.has("#go-live-form") && !page.has("#delete-form"));
    assert!(!page.has("#scheduled_at") && !page.has("input[name=access]"));

    // Title and description still change; who may watch does not.
    let saved = ann
        .post_htmx(
            &path,
            &[
                ("title", "On air now"),
                ("access", "public"),
                ("scheduled_at", "2030-01-01T10:00"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let stored = row(&app, live).await.unwrap();
    assert_eq!(
        (
            stored.title.as_str(),
            stored.access.as_str(),
            stored.status.as_str(),
            stored.scheduled_at
        ),
        ("On air now", "pass", "live", None)
    );

    // An ended stream says so.
    let ended = stream_in_state(&app, channel, "Done", Status::Ended, None).await;
    let page = ann.get(&format!("/studio/streams/{ended}")).await;
    assert_eq!(
        page.attr("#stream-state", "data-state").as_deref(),
        Some("ended")
    );
    assert!(
        page.text_of("#ended-note")
            .contains("This stream has ended")
    );
    assert!(page.text_of("#ended-note").contains(" UTC"));
    assert!(!page.has("#go-live-form") && !page.has("#end-form") && !page.has("#delete-form"));
}

#[tokio::test]
async fn drafts_can_be_deleted_but_a_live_stream_cannot() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let draft = create_stream(
        &ann,
        "ann-live",
        &[("title", "Scrap me"), ("access", "pass")],
    )
    .await;

    let deleted = ann
        .submit(&format!("/studio/streams/{draft}"), "#delete-form", &[])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(deleted.location().as_deref(), Some("/studio"));
    let studio = ann.follow(&deleted).await;
    assert!(studio.text_of("#alerts").contains("“Scrap me” was deleted"));
    assert!(!studio.has(&format!("[data-stream-id='{draft}']")));
    assert!(row(&app, draft).await.is_none());
    let (actor, subject): (Option<i64>, Option<String>) = audit_log::table
        .filter(audit_log::action.eq("stream.deleted"))
        .select((audit_log::actor_id, audit_log::subject))
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!((actor, subject), (Some(ann_id.0), Some(draft.to_string())));

    let live = stream_in_state(&app, channel, "On air", Status::Live, None).await;
    let token = ann.csrf_token().await;
    let refused = ann
        .post_raw(
            &format!("/studio/streams/{live}/delete"),
            &[("csrf_token", token.as_str())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.text_of(".alert p"),
        "Only drafts can be deleted; end the stream instead."
    );
    let htmx = ann
        .post_htmx(&format!("/studio/streams/{live}/delete"), &[])
        .await;
    assert_eq!(htmx.status, StatusCode::FORBIDDEN);
    assert_eq!(htmx.header("hx-retarget").as_deref(), Some("#alerts"));
    assert_eq!(row(&app, live).await.unwrap().status, "live");
}

#[tokio::test]
async fn moderators_and_strangers_cannot_manage_streams() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    let (sam, _) = builders::user(&app, "sam@example.com", "Sam").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    builders::moderator(&app, channel, mo_id).await;
    let id = create_stream(&ann, "ann-live", &[("title", "Mine"), ("access", "pass")]).await;
    // Announced: an unannounced draft is a 404 to strangers (exposure.rs).
    builders::announce(&app, id).await;
    let path = format!("/studio/streams/{id}");

    for who in [&mo, &sam] {
        let page = who.get(&path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(
            page.text_of(".alert p"),
            "Only the owner of this channel can manage its streams."
        );
        let edit = who
            .post_htmx(&path, &[("title", "Theirs"), ("access", "public")])
            .await;
        assert_eq!(edit.status, StatusCode::FORBIDDEN);
        let delete = who.post_htmx(&format!("{path}/delete"), &[]).await;
        assert_eq!(delete.status, StatusCode::FORBIDDEN);
        let new_page = who.get("/studio/channels/ann-live/streams/new").await;
        assert_eq!(new_page.status, StatusCode::FORBIDDEN);
        assert_eq!(
            new_page.text_of(".alert p"),
            "Only the owner of this channel can create its streams."
        );
        let create = who
            .post_htmx(
                "/studio/channels/ann-live/streams",
                &[("title", "Sneaky"), ("access", "public")],
            )
            .await;
        assert_eq!(create.status, StatusCode::FORBIDDEN);
    }
    let stored = row(&app, id).await.unwrap();
    assert_eq!(
        (stored.title.as_str(), stored.access.as_str()),
        ("Mine", "pass")
    );
    assert_eq!(stream_count(&app).await, 1);

    // The moderator sees the stream in their studio, linked to its watch page.
    let studio = mo.get("/studio").await;
    assert_eq!(
        studio.attr(
            &format!(".studio-stream[data-stream-id='{id}'] .stream-title"),
            "href"
        ),
        Some(format!("/s/{id}"))
    );

    // A stream that doesn't exist is a 404, for the owner too.
    assert_eq!(
        ann.get("/studio/streams/999999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ann.get("/studio/streams/abc").await.status,
        StatusCode::NOT_FOUND
    );
}

/// The owner's own Go live and End are theirs in the audit log, which says
/// what happened in words and links the stream by its title; the studio says
/// when a draft's watch link starts to work.
#[tokio::test]
async fn the_audit_log_credits_the_owner_s_go_live_and_end_in_words() {
    let builders::Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = builders::Studio::spawn("olive", stagepass::db::streams::AccessKind::Pass).await;

    // A draft nobody outside the team can open yet: the studio says so.
    let studio = owner.get(&format!("/studio/streams/{}", stream.id)).await;
    assert!(
        studio
            .text_of("#share-when")
            .contains("works for viewers once you schedule the stream or go live"),
        "{}",
        studio.text
    );
    assert!(!studio.text.contains("Share it anywhere"));

    builders::go_live(&owner, stream.id).await;
    let studio = owner.get(&format!("/studio/streams/{}", stream.id)).await;
    assert!(!studio.has("#share-when"));
    assert!(studio.text.contains("Share it anywhere"));
    let ended = owner
        .post_htmx(&format!("/studio/streams/{}/end", stream.id), &[])
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text);

    let audit = owner
        .get(&format!("/studio/channels/{}/audit", channel.handle))
        .await;
    for (action, words) in [
        ("stream.live", "Went live"),
        ("stream.ended", "Ended the stream"),
    ] {
        let row = format!(".audit-row[data-action=\"{action}\"]");
        assert_eq!(audit.text_of(&format!("{row} .audit-what")), words);
        let who = audit.text_of(&format!("{row} .audit-who"));
        assert!(who.contains("Owner"), "{action} by {who}");
        assert!(!who.contains("automatic"), "{action} by {who}");
        assert_eq!(
            audit.text_of(&format!("{row} .audit-subject a")),
            format!("“{}”", stream.title)
        );
        assert_eq!(
            audit.attr(&format!("{row} .audit-subject a"), "href"),
            Some(format!("/studio/streams/{}", stream.id))
        );
    }
    assert!(
        !audit.text.contains("stream.live<"),
        "no raw keys on the page"
    );

    // Browsers ask for /favicon.ico on every site: it is there.
    let icon = app.anonymous().get("/favicon.ico").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert!(icon.text.starts_with("<svg"), "{}", icon.text);
}
