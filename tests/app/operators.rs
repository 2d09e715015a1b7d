//! The instance's operators (issue 15): admins made on the command line, the
//! /admin console, suspending users (sessions, rooms and chat streams end at
//! once), hiding channels, creator approval with its decision in the bell,
//! and the sign-up limits per address and per instance.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use stagepass::db::UserId;
use stagepass::db::streams::{AccessKind, Status};

use crate::util::builders::{self, LiveKitClient, Studio, grant};
use crate::util::sse::Sse;
use crate::util::{Browser, PASSWORD, Page, TestApp};

/// Runs `stagepass admin <args>` against the app's database, as an operator
/// would: (exit code, stdout + stderr).
fn admin_command(app: &TestApp, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagepass"))
        .arg("admin")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.env["DATABASE_URL"])
        .env("PUBLIC_URL", &app.url)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("running stagepass admin");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// An instance admin, signed up through the form and granted on the command line.
async fn admin(app: &TestApp) -> Browser {
    let (browser, _) = builders::user(app, "root@example.com", "Rita Root").await;
    let (code, out) = admin_command(app, &["grant", "root@example.com"]);
    assert_eq!(code, 0, "{out}");
    browser
}

async fn sign_in(app: &TestApp, email: &str) -> Page {
    app.anonymous()
        .submit(
            "/signin",
            "#signin-form",
            &[("email", email), ("password", PASSWORD)],
        )
        .await
}

const CONSOLE: [(&str, &str); 5] = [
    ("/admin", "Console"),
    ("/admin/applications", "Creator applications"),
    ("/admin/users", "Users"),
    ("/admin/channels", "Channels"),
    ("/admin/audit", "Audit log"),
];

#[tokio::test]
async fn the_console_is_for_admins_made_on_the_command_line() {
    let app = TestApp::spawn().await;
    let (code, out) = admin_command(&app, &["grant", "nobody@example.com"]);
    assert_eq!(code, 1);
    assert!(out.contains("no account has the email"), "{out}");

    let (bob, _) = builders::user(&app, "bob@example.com", "Bob").await;
    let root = admin(&app).await;
    for (path, heading) in CONSOLE {
        let page = root.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert_eq!(page.text_of("h1"), heading, "{path}");
        assert!(page.has("#admin-nav"), "{path}");
        let refused = bob.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            refused.text.contains("admins only"),
            "{path}: {}",
            refused.text
        );
        let anonymous = app.anonymous().get(path).await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{path}");
    }
    assert!(root.get("/").await.has("[data-testid=nav-admin]"));
    assert!(!bob.get("/").await.has("[data-testid=nav-admin]"));

    // The figures are the instance's.
    let page = root.get("/admin").await;
    assert_eq!(page.text_of("#figure-users"), "2");
    assert_eq!(page.text_of("#figure-live"), "0");
    assert!(page.has("#live-empty"));
    assert_eq!(
        page.texts("#sign-ups .sign-up-count")
            .first()
            .map(String::as_str),
        Some("2"),
        "today's sign-ups come first"
    );

    // Revoking takes effect on the next request: no console, no link.
    let (code, out) = admin_command(&app, &["revoke", "root@example.com"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(root.get("/admin").await.status, StatusCode::FORBIDDEN);
    let (_, _) = admin_command(&app, &["grant", "root@example.com"]);
    let audit = root.get("/admin/audit").await;
    let actions = audit.texts(".audit-action");
    assert_eq!(
        actions,
        ["admin.granted", "admin.revoked", "admin.granted"],
        "{}",
        audit.text
    );
}

/// A viewer with a pass, watching a live stream through a real LiveKit
/// client, with the chat's event stream open.
struct Watching {
    app: TestApp,
    root: Browser,
    viewer: Browser,
    viewer_id: UserId,
    stream: stagepass::db::streams::Stream,
    client: LiveKitClient,
    chat: Sse,
}

async fn watching() -> Watching {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("suspense", AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Vera Viewer").await;
    grant(&app, viewer_id, channel.id, None, "-1 minute", "1 hour").await;
    let token = viewer
        .post_htmx(&format!("/s/{}/token", stream.id), &[])
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let body: serde_json::Value = serde_json::from_str(&token.text).unwrap();
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        30,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    let chat = Sse::open(&viewer, &format!("/s/{}/chat/events", stream.id), None).await;
    let said = viewer
        .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "hello")])
        .await;
    assert_eq!(said.status, StatusCode::OK, "{}", said.text);
    let root = admin(&app).await;
    Watching {
        app,
        root,
        viewer,
        viewer_id,
        stream,
        client,
        chat,
    }
}

#[tokio::test]
async fn suspending_a_viewer_ends_their_sessions_their_place_in_the_room_and_their_chat() {
    let mut w = watching().await;
    let path = format!("/admin/users/{}/suspend", w.viewer_id);

    // A reason is required, and said next to its field; nothing changes.
    let page = w.root.post_htmx(&path, &[("reason", "  ")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text_of(".field-error").contains("Give a reason"));
    assert!(
        page.text.contains(r#"data-state="active""#),
        "{}",
        page.text
    );
    assert_eq!(w.viewer.get("/account").await.status, StatusCode::OK);

    let page = w
        .root
        .post_htmx(&path, &[("reason", "Chargeback fraud")])
        .await;
    let suspended = Instant::now();
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains(r#"data-state="suspended""#),
        "{}",
        page.text
    );
    assert!(page.text_of(".form-success").starts_with("Suspended"));
    assert!(
        page.text_of(".suspended-reason")
            .contains("Chargeback fraud")
    );

    // Out of the room, within 2 s.
    let gone = w.client.next().await;
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let took = suspended.elapsed();
    eprintln!("removed from the room {took:?} after the suspension");
    assert!(took < Duration::from_secs(2), "removed after {took:?}");

    // Their chat stream is told and closes.
    let mut e = w.chat.expect("the chat closing").await;
    while e.event == "chat" {
        e = w.chat.expect("the chat closing").await;
    }
    assert_eq!(e.event, "denied", "{}", e.data);
    assert!(
        e.data.contains("Your account has been suspended."),
        "{}",
        e.data
    );
    assert!(w.chat.next_within(Duration::from_secs(5)).await.is_none());

    // Signed out everywhere, and cannot sign in again: the form says why.
    let account = w.viewer.get("/account").await;
    assert_eq!(account.status, StatusCode::SEE_OTHER);
    assert!(account.location().unwrap().starts_with("/signin"));
    let page = sign_in(&w.app, "viewer@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert!(
        page.text_of("#signin-form .form-error")
            .contains("suspended by the instance's admins. Reason: Chargeback fraud")
    );
    // A wrong password is told nothing about the suspension.
    let page = w
        .app
        .anonymous()
        .submit(
            "/signin",
            "#signin-form",
            &[
                ("email", "viewer@example.com"),
                ("password", "not it at all"),
            ],
        )
        .await;
    assert!(!page.text.contains("suspended"), "{}", page.text);
    let people = w
        .app
        .state
        .livekit
        .rooms
        .list_participants(&w.stream.room_name)
        .await
        .unwrap();
    assert!(!people.iter().any(|p| p.identity == w.viewer_id.to_string()));

    // Restored: they sign in and watch again.
    let page = w
        .root
        .post_htmx(&format!("/admin/users/{}/restore", w.viewer_id), &[])
        .await;
    assert!(
        page.text.contains(r#"data-state="active""#),
        "{}",
        page.text
    );
    let page = sign_in(&w.app, "viewer@example.com").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let audit = w.root.get("/admin/audit").await;
    assert!(audit.texts(".audit-action").starts_with(&[
        "admin.user.restored".to_owned(),
        "admin.user.suspended".to_owned()
    ]));
    assert!(audit.text.contains("Chargeback fraud"));
    w.client.stop().await;
}

#[tokio::test]
async fn suspending_a_creator_ends_their_live_stream_and_hides_their_channel() {
    let Studio {
        app,
        owner,
        owner_id,
        channel,
        stream,
    } = Studio::spawn("gone-dark", AccessKind::Public).await;
    builders::go_live(&owner, stream.id).await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stan").await;
    assert_eq!(stranger.get("/c/gone-dark").await.status, StatusCode::OK);
    let mut stranger_chat =
        Sse::open(&stranger, &format!("/s/{}/chat/events", stream.id), None).await;
    let root = admin(&app).await;

    // No admin suspends themselves (the console would lock them out).
    let me = root.get("/admin/users?q=root@").await;
    let my_id = me.attr("tr.user-row", "data-user-id").unwrap();
    let page = root
        .post_htmx(
            &format!("/admin/users/{my_id}/suspend"),
            &[("reason", "oops")],
        )
        .await;
    assert!(page.text_of(".form-error").contains("your own account"));

    let page = root
        .post_htmx(
            &format!("/admin/users/{owner_id}/suspend"),
            &[("reason", "Impersonation")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // The owner's channel is hidden with them: its readers' chat closes at once.
    let e = stranger_chat
        .expect("the suspended owner's channel's re-check")
        .await;
    assert_eq!(e.event, "denied", "{}", e.data);
    assert!(
        e.data.contains("This stream is not available."),
        "{}",
        e.data
    );
    let status: Status = stagepass::db::streams::find(&mut *app.conn().await, stream.id)
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status, Status::Ended);
    assert!(
        app.state
            .livekit
            .rooms
            .list_rooms(vec![stream.room_name.clone()])
            .await
            .unwrap()
            .is_empty(),
        "the room is gone"
    );
    // Hidden: for strangers and anonymous visitors it does not exist.
    for who in [&stranger, &app.anonymous()] {
        assert_eq!(who.get("/c/gone-dark").await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            who.get(&format!("/s/{}", stream.id)).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let search = stranger.get("/?q=gone-dark").await;
    assert!(
        !search.text.contains("gone-dark channel"),
        "{}",
        search.text
    );
    let channels = root.get("/admin/channels?q=gone-dark").await;
    assert!(
        channels
            .text_of(".channel-state")
            .contains("Its owner is suspended")
    );
    assert_eq!(root.get("/admin").await.text_of("#figure-suspended"), "1");

    root.post_htmx(&format!("/admin/users/{owner_id}/restore"), &[])
        .await;
    assert_eq!(stranger.get("/c/gone-dark").await.status, StatusCode::OK);
    let _ = channel;
}

#[tokio::test]
async fn a_hidden_channel_exists_for_its_team_only_until_it_is_restored() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("hideaway", AccessKind::Public).await;
    builders::go_live(&owner, stream.id).await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stan").await;
    let mut stranger_chat =
        Sse::open(&stranger, &format!("/s/{}/chat/events", stream.id), None).await;
    let root = admin(&app).await;
    let hide = format!("/admin/channels/{}/hide", channel.id);

    let page = root.post_htmx(&hide, &[("reason", "")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text_of(".field-error").contains("Give a reason"));
    // Without JavaScript: back to the list, with the reason refused.
    let page = root
        .submit("/admin/channels", ".hide-form", &[("reason", "")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let list = root.follow(&page).await;
    assert!(list.text.contains("Give a reason"), "{}", list.text);
    assert_eq!(
        list.attr("tr.channel-row", "data-state").as_deref(),
        Some("shown")
    );

    let page = root
        .post_htmx(&hide, &[("reason", "Copyright strike")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains(r#"data-state="hidden""#),
        "{}",
        page.text
    );
    // Their open chat stream is closed at once, and says why.
    let e = stranger_chat.expect("the hidden channel's re-check").await;
    assert_eq!(e.event, "denied", "{}", e.data);
    assert!(
        e.data.contains("chat-denied") && !e.data.contains("sse-connect"),
        "{}",
        e.data
    );
    let ended = stagepass::db::streams::find(&mut *app.conn().await, stream.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, Status::Ended);
    for who in [&stranger, &app.anonymous()] {
        assert_eq!(who.get("/c/hideaway").await.status, StatusCode::NOT_FOUND);
        assert_eq!(
            who.get(&format!("/s/{}", stream.id)).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            who.get(&format!("/s/{}/replays", stream.id)).await.status,
            StatusCode::NOT_FOUND
        );
    }
    // Nor its thumbnail, nor its passes.
    let pass = builders::pass(&app, &channel, "Season", None, 24).await;
    for who in [&stranger, &app.anonymous()] {
        assert_eq!(
            who.get(&format!("/s/{}/thumbnail", stream.id)).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let buy = stranger
        .post_htmx(&format!("/passes/{pass}/buy"), &[])
        .await;
    assert_eq!(buy.status, StatusCode::NOT_FOUND);
    // It does not go live again; the owner is told why.
    let next = builders::stream(&app, &channel, AccessKind::Public).await;
    let token = owner.csrf_token().await;
    let page = owner
        .post_raw(
            &format!("/studio/streams/{}/live", next.id),
            &[("csrf_token", token.as_str())],
        )
        .await;
    let page = owner.follow(&page).await;
    assert!(
        page.text.contains("hidden by the instance") && page.text.contains("Copyright strike"),
        "{}",
        page.text
    );
    let still: Status = stagepass::db::streams::find(&mut *app.conn().await, next.id)
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(still, Status::Draft);
    // The team still sees its channel.
    assert_eq!(owner.get("/c/hideaway").await.status, StatusCode::OK);
    assert_eq!(
        owner.get(&format!("/s/{}", stream.id)).await.status,
        StatusCode::OK
    );
    assert_eq!(root.get("/admin").await.text_of("#figure-hidden"), "1");

    let page = root
        .post_htmx(&format!("/admin/channels/{}/restore", channel.id), &[])
        .await;
    assert!(page.text.contains(r#"data-state="shown""#), "{}", page.text);
    assert_eq!(stranger.get("/c/hideaway").await.status, StatusCode::OK);
    let audit = root.get("/admin/audit").await;
    assert!(audit.texts(".audit-action").starts_with(&[
        "admin.channel.restored".to_owned(),
        "admin.channel.hidden".to_owned()
    ]));
}

#[tokio::test]
async fn with_creator_approval_only_approved_users_create_channels_and_hear_the_decision() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CREATORS".into(), "approval".into());
    })
    .await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let root = admin(&app).await;

    let page = ann.get("/studio/channels/new").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location().as_deref(), Some("/creators/apply"));
    let create = [
        ("handle", "anns-place"),
        ("title", "Ann's place"),
        ("description", ""),
    ];
    let page = ann.post_htmx("/studio/channels", &create).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text.contains("Apply at /creators/apply"),
        "{}",
        page.text
    );

    // Applying: the form says what is missing, next to the field.
    let page = ann
        .submit(
            "/creators/apply",
            "#apply-form",
            &[("channel_name", ""), ("about", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text_of("#channel_name-error")
            .contains("Name the channel")
    );
    assert!(
        page.text_of("#about-error")
            .contains("what you will stream")
    );
    let apply = [
        ("channel_name", "Ann's place"),
        ("about", "Cello practice, live."),
    ];
    let page = ann.submit("/creators/apply", "#apply-form", &apply).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let page = ann.get("/creators/apply").await;
    assert_eq!(
        page.attr("#application-status", "data-status").as_deref(),
        Some("pending")
    );
    assert!(!page.has("#apply-form"), "one application at a time");
    let again = ann.post_htmx("/creators/apply", &apply).await;
    assert!(
        again.text.contains("waiting for an admin already"),
        "{} {}",
        again.status,
        again.text
    );

    // The admin rejects it with a reason; Ann hears it through the bell.
    let queue = root.get("/admin/applications").await;
    assert_eq!(
        root.get("/admin").await.text_of("#figure-applications"),
        "1"
    );
    let id = queue
        .attr(".application", "id")
        .unwrap()
        .trim_start_matches("application-")
        .to_owned();
    assert_eq!(queue.text_of(".applicant-email"), "ann@example.com");
    let page = root
        .post_htmx(
            &format!("/admin/applications/{id}/reject"),
            &[("reason", "")],
        )
        .await;
    assert!(page.text_of(".field-error").contains("Give a reason"));
    let page = root
        .post_htmx(
            &format!("/admin/applications/{id}/reject"),
            &[("reason", "Tell us more about your schedule")],
        )
        .await;
    assert!(
        page.text_of(".form-success").starts_with("Rejected"),
        "{}",
        page.text
    );
    let bell = ann.get("/notifications").await;
    let item = bell.text_of("#notification-list li");
    assert!(item.contains("was not approved"), "{item}");
    assert!(item.contains("Tell us more about your schedule"), "{item}");
    assert!(ann.get("/studio/channels/new").await.status == StatusCode::SEE_OTHER);
    // Deciding twice is refused.
    let page = root
        .post_htmx(&format!("/admin/applications/{id}/approve"), &[])
        .await;
    assert!(
        page.text_of(".form-error").contains("decided already"),
        "{}",
        page.text
    );

    // Applying again, approved this time.
    let page = ann.get("/creators/apply").await;
    assert!(
        page.text_of("#application-status")
            .contains("Tell us more about your schedule")
    );
    let page = ann.submit("/creators/apply", "#apply-form", &apply).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let queue = root.get("/admin/applications").await;
    let id = queue
        .attr(".application", "id")
        .unwrap()
        .trim_start_matches("application-")
        .to_owned();
    let page = root
        .post_htmx(&format!("/admin/applications/{id}/approve"), &[])
        .await;
    assert!(
        page.text_of(".form-success").starts_with("Approved"),
        "{}",
        page.text
    );
    let bell = ann.get("/notifications").await;
    assert!(bell.texts("#notification-list li")[0].contains("was approved"));
    assert_eq!(ann.get("/studio/channels/new").await.status, StatusCode::OK);
    let page = ann.post_htmx("/studio/channels", &create).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.header("hx-redirect").as_deref(), Some("/studio"));
}

fn address(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

async fn sign_up_from(app: &TestApp, from: Option<IpAddr>, email: &str) -> Page {
    Browser::from_address(&app.url, from)
        .submit(
            "/signup",
            "#signup-form",
            &[
                ("email", email),
                ("display_name", "Flood"),
                ("password", PASSWORD),
            ],
        )
        .await
}

#[tokio::test]
async fn the_sixth_sign_up_in_an_hour_from_one_address_is_refused_and_another_address_signs_up() {
    // The defaults: 5 per address an hour.
    let app = TestApp::spawn_with(|env| {
        env.remove("SIGNUP_MAX_PER_ADDRESS");
    })
    .await;
    for i in 0..5 {
        let page = sign_up_from(&app, address(1), &format!("one{i}@example.com")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }
    let page = sign_up_from(&app, address(1), "one5@example.com").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of("#signup-form .form-error")
            .contains("Too many sign-ups from your network in a short time. Wait")
    );
    let page = sign_up_from(&app, address(2), "two@example.com").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
}

#[tokio::test]
async fn sign_ups_across_the_instance_are_limited_too() {
    let app = TestApp::spawn_with(|env| {
        env.insert("SIGNUP_MAX_PER_INSTANCE".into(), "3".into());
    })
    .await;
    for i in 1..=3 {
        let page = sign_up_from(&app, address(10 + i), &format!("far{i}@example.com")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }
    let page = sign_up_from(&app, address(20), "far4@example.com").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of("#signup-form .form-error")
            .contains("sign-ups are paused. Wait 60 minutes before trying again")
    );
    assert!(page.header("retry-after").is_some());
}
