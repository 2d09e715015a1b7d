//! Going live and watching in a real browser: headless Chromium with a fake
//! camera publishes to the real livekit-server from the broadcast page, a pass
//! holder's Chromium plays it on the watch page, a stranger gets no player,
//! and ending the stream reaches the viewer without a reload. A viewer follows
//! a channel from its page and the bell tells them when it goes live.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use stagepass::db::UserId;
use stagepass::db::channels::{self, NewChannel};
use stagepass::db::schema::users;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::{self, NewStream, Stream};
use stagepass::lifecycle::new_room_name;

use crate::util::browser::{Browser, TIMEOUT};
use crate::util::builders::GrantBuilder;
use crate::util::{PASSWORD, TestApp};

async fn user_id(app: &TestApp, email: &str) -> UserId {
    users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

/// A pass-only stream (draft) on a new channel owned by `owner`.
async fn draft_stream(app: &TestApp, owner: UserId) -> Stream {
    let mut conn = app.conn().await;
    let channel = channels::create(
        &mut conn,
        NewChannel {
            handle: "hana",
            title: "Hana Live",
            description: "",
            owner_id: owner,
        },
    )
    .await
    .unwrap();
    let room = new_room_name(&app.state);
    streams::create(
        &mut conn,
        &NewStream {
            channel_id: channel.id,
            title: "Opening night",
            description: "",
            access: AccessKind::Pass,
            scheduled_at: None,
            room_name: &room,
        },
    )
    .await
    .unwrap()
}

/// The JS condition "the element's data-state is `state`".
fn state_is(css: &str, state: &str) -> String {
    format!("return document.querySelector('{css}')?.dataset.state === '{state}'")
}

#[tokio::test]
async fn owner_goes_live_a_pass_holder_watches_a_stranger_cannot_and_the_end_reaches_the_viewer() {
    let app = TestApp::spawn().await;
    app.signed_up("host@example.com", "Hana Host").await;
    app.signed_up("fan@example.com", "Fay Fan").await;
    app.signed_up("stranger@example.com", "Sam Stranger").await;
    let host = user_id(&app, "host@example.com").await;
    let fan = user_id(&app, "fan@example.com").await;
    let stream = draft_stream(&app, host).await;
    GrantBuilder::new(&app, fan, stream.channel_id)
        .starts_in("-1 minute")
        .expires_in("1 hour")
        .create()
        .await;
    let broadcast_path = format!("/studio/streams/{}/broadcast", stream.id);
    let watch_url = format!("{}/s/{}", app.url, stream.id);

    // 1. The owner checks the camera, goes live, and publishes.
    let owner = Browser::start().await;
    owner.sign_in(&app.url, "host@example.com", PASSWORD).await;
    owner.goto(&format!("{}{broadcast_path}", app.url)).await;
    owner
        .wait_until(
            "the camera preview before going live",
            "return document.getElementById('preview').videoWidth > 0",
            TIMEOUT,
        )
        .await;
    assert_eq!(
        owner
            .attr("#toggle-camera", "aria-pressed")
            .await
            .as_deref(),
        Some("true")
    );
    owner.click("#go-live-form [type=submit]").await;
    owner.wait_for("#broadcast[data-status=live]").await;
    assert_eq!(owner.path().await, broadcast_path);
    owner
        .wait_until(
            "the broadcast to connect",
            &state_is("#connection-state", "live"),
            TIMEOUT,
        )
        .await;
    assert_eq!(owner.text("#connection-state").await, "Live");
    owner
        .wait_until(
            "the elapsed time to tick",
            "return /^00:00:(0[1-9]|[1-5][0-9])$/.test(document.getElementById('elapsed').textContent)",
            Duration::from_secs(5),
        )
        .await;

    let participants = app
        .state
        .livekit
        .rooms
        .list_participants(&stream.room_name)
        .await
        .unwrap();
    let publisher = participants
        .iter()
        .find(|p| p.identity == stagepass::livekit::host_identity(host))
        .unwrap_or_else(|| panic!("the owner is not in the room: {participants:?}"));
    let kinds: Vec<&str> = publisher
        .tracks
        .iter()
        .map(|t| t.r#type().as_str_name())
        .collect();
    assert!(
        kinds.contains(&"VIDEO"),
        "the owner publishes no video: {kinds:?}"
    );
    assert!(
        kinds.contains(&"AUDIO"),
        "the owner publishes no audio: {kinds:?}"
    );

    // 2. The pass holder's video plays: frames decoded, and time moving on.
    let viewer = Browser::start().await;
    viewer.sign_in(&app.url, "fan@example.com", PASSWORD).await;
    viewer.goto(&watch_url).await;
    viewer.wait_for("#player").await;
    let started = viewer
        .wait_until(
            "the stream video to play",
            "const v = document.getElementById('stream-video'); \
             return v.videoWidth > 0 && v.currentTime > 0 && v.currentTime",
            TIMEOUT,
        )
        .await;
    let started = started.as_f64().unwrap();
    viewer
        .wait_until(
            "the video's currentTime to advance",
            &format!("return document.getElementById('stream-video').currentTime > {started} + 1"),
            Duration::from_secs(10),
        )
        .await;
    viewer
        .wait_until(
            "the player to say it plays",
            &state_is("#player-state", "playing"),
            TIMEOUT,
        )
        .await;
    assert_eq!(viewer.text("#player-state").await.to_uppercase(), "LIVE");
    let participants = app
        .state
        .livekit
        .rooms
        .list_participants(&stream.room_name)
        .await
        .unwrap();
    let watcher = participants
        .iter()
        .find(|p| p.identity == fan.to_string())
        .unwrap_or_else(|| panic!("the viewer is not in the room: {participants:?}"));
    assert!(
        watcher.tracks.is_empty(),
        "a viewer publishes nothing: {:?}",
        watcher.tracks
    );

    // 3. A signed-in stranger sees why, gets no player, and no token.
    let stranger = Browser::start().await;
    stranger
        .sign_in(&app.url, "stranger@example.com", PASSWORD)
        .await;
    stranger.goto(&watch_url).await;
    assert!(
        stranger
            .text("#no-access")
            .await
            .contains("access pass holders")
    );
    assert!(!stranger.has("#player").await);
    assert!(!stranger.has("video").await);
    let refused = stranger
        .js("return (async () => { \
               const csrf = document.querySelector('meta[name=csrf-token]').content; \
               const r = await fetch(document.getElementById('stage').dataset.tokenUrl, \
                 { method: 'POST', headers: { 'X-CSRF-Token': csrf } }); \
               return { status: r.status, body: await r.json() }; \
             })()")
        .await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(
        refused["body"]["error"].as_str().unwrap().contains("pass"),
        "{refused}"
    );
    assert!(refused["body"].get("token").is_none(), "{refused}");
    stranger.close().await;

    // 4. The owner ends the stream (confirming); the viewer's page says so without a reload.
    viewer.js("window.sameDocument = true; return true").await;
    owner.click("#end-form [type=submit]").await;
    let question = owner.accept_dialog().await;
    assert!(
        question.starts_with("End the stream for everyone?"),
        "{question}"
    );
    owner
        .wait_until(
            "the owner to land on the stream's studio page",
            &format!(
                "return location.pathname === '/studio/streams/{}'",
                stream.id
            ),
            TIMEOUT,
        )
        .await;
    let ended = viewer
        .wait_until(
            "the viewer to be told the stream ended",
            "return document.getElementById('ended-notice')?.innerText",
            Duration::from_secs(15),
        )
        .await;
    assert!(
        ended.as_str().unwrap().contains("This stream has ended"),
        "{ended}"
    );
    assert!(!viewer.has("#player").await);
    assert_eq!(
        viewer.js("return window.sameDocument === true").await,
        true,
        "the page was reloaded"
    );
    let rooms = app
        .state
        .livekit
        .rooms
        .list_rooms(vec![stream.room_name.clone()])
        .await
        .unwrap();
    assert!(rooms.is_empty(), "the room is still there");

    viewer.close().await;
    owner.close().await;
}

#[tokio::test]
async fn a_viewer_without_a_pass_buys_one_and_the_watch_page_plays() {
    let app = TestApp::spawn().await;
    app.signed_up("host@example.com", "Hana Host").await;
    app.signed_up("buyer@example.com", "Bo Buyer").await;
    let host = user_id(&app, "host@example.com").await;
    let stream = draft_stream(&app, host).await;
    {
        use stagepass::db::schema::access_passes;
        diesel::insert_into(access_passes::table)
            .values((
                access_passes::channel_id.eq(stream.channel_id),
                access_passes::name.eq("Day pass"),
                access_passes::price_cents.eq(500_i64),
                access_passes::currency.eq("USD"),
                access_passes::scope.eq("channel"),
                access_passes::duration_seconds.eq(24 * 3600),
            ))
            .execute(&mut app.conn().await)
            .await
            .unwrap();
    }

    // The owner is live and publishing from the broadcast page.
    let owner = Browser::start().await;
    owner.sign_in(&app.url, "host@example.com", PASSWORD).await;
    owner
        .goto(&format!(
            "{}/studio/streams/{}/broadcast",
            app.url, stream.id
        ))
        .await;
    owner.click("#go-live-form [type=submit]").await;
    owner.wait_for("#broadcast[data-status=live]").await;
    owner
        .wait_until(
            "the broadcast to connect",
            &state_is("#connection-state", "live"),
            TIMEOUT,
        )
        .await;

    // The viewer has no pass: the watch page sends them to the pass page.
    let viewer = Browser::start().await;
    viewer
        .sign_in(&app.url, "buyer@example.com", PASSWORD)
        .await;
    viewer.goto(&format!("{}/s/{}", app.url, stream.id)).await;
    assert!(!viewer.has("#player").await);
    viewer.click("#get-pass").await;
    viewer.wait_for(".buy-form").await;
    assert_eq!(viewer.path().await, format!("/s/{}/pass", stream.id));
    assert!(viewer.text(".buy-form").await.contains("$5.00"));

    // Buying with the development provider: a confirmation page, then the stream.
    viewer.click(".buy-form [type=submit]").await;
    viewer.wait_for("#dev-confirm-form").await;
    viewer.click("#dev-confirm-form [type=submit]").await;
    viewer.wait_for("#player").await;
    assert_eq!(viewer.path().await, format!("/s/{}", stream.id));
    let started = viewer
        .wait_until(
            "the stream video to play after buying",
            "const v = document.getElementById('stream-video'); \
             return v.videoWidth > 0 && v.currentTime > 0 && v.currentTime",
            TIMEOUT,
        )
        .await;
    viewer
        .wait_until(
            "the video's currentTime to advance",
            &format!(
                "return document.getElementById('stream-video').currentTime > {} + 1",
                started.as_f64().unwrap()
            ),
            Duration::from_secs(10),
        )
        .await;
    // The pass's end is shown beside the player.
    assert!(viewer.has("#time-left").await);

    viewer.close().await;
    owner.close().await;
}

#[tokio::test]
async fn a_viewer_chats_another_sees_it_and_a_moderators_deletion_reaches_them_live() {
    let app = TestApp::spawn().await;
    let owner_http = app.signed_up("host@example.com", "Hana Host").await;
    app.signed_up("ann@example.com", "Ann Viewer").await;
    app.signed_up("ben@example.com", "Ben Viewer").await;
    let host = user_id(&app, "host@example.com").await;
    let stream = draft_stream(&app, host).await;
    for email in ["ann@example.com", "ben@example.com"] {
        let user = user_id(&app, email).await;
        GrantBuilder::new(&app, user, stream.channel_id)
            .starts_in("-1 minute")
            .expires_in("1 hour")
            .create()
            .await;
    }
    let live = owner_http
        .post_htmx(&format!("/studio/streams/{}/live", stream.id), &[])
        .await;
    assert_eq!(live.status, reqwest::StatusCode::OK);
    let watch_url = format!("{}/s/{}", app.url, stream.id);

    let ann = Browser::start().await;
    ann.sign_in(&app.url, "ann@example.com", PASSWORD).await;
    ann.goto(&watch_url).await;
    let ben = Browser::start().await;
    ben.sign_in(&app.url, "ben@example.com", PASSWORD).await;
    ben.goto(&watch_url).await;
    ben.wait_for(".chat-form").await;
    let owner = Browser::start().await;
    owner.sign_in(&app.url, "host@example.com", PASSWORD).await;
    owner.goto(&watch_url).await;
    owner.wait_for(".chat-form").await;
    // Give the three SSE connections a moment to open before the post.
    for b in [&ben, &owner] {
        b.wait_until(
            "the chat stream to connect",
            "return [...document.querySelectorAll('[sse-connect]')].every(e => e['htmx-internal-data']?.sseEventSource?.readyState === 1)",
            TIMEOUT,
        )
        .await;
    }

    // Ann types and presses Enter; the box clears.
    let input = ann.wait_for(".chat-form input[name=body]").await;
    input
        .send_keys("Hello from Ann <b>!</b>\u{E007}")
        .await
        .unwrap();
    ann.wait_until(
        "the box to clear after sending",
        "return document.querySelector('.chat-form input[name=body]').value === ''",
        TIMEOUT,
    )
    .await;

    // Ben sees it without reloading, escaped.
    let seen = ben
        .wait_until(
            "Ann's message on Ben's page",
            "const m = [...document.querySelectorAll('.chat-msg')].find(li => li.innerText.includes('Hello from Ann')); \
             return m ? m.id : null",
            TIMEOUT,
        )
        .await;
    let id = seen.as_str().unwrap().to_owned();
    assert_eq!(
        ben.text(&format!("#{id} .chat-body")).await,
        "Hello from Ann <b>!</b>"
    );
    assert!(
        !ben.has(&format!("#{id} .chat-body b")).await,
        "markup is escaped"
    );
    assert!(
        !ben.has(&format!("#{id} .chat-delete")).await,
        "viewers can't delete"
    );

    // The owner (a moderator of the channel) deletes it; it vanishes from Ben's page.
    ben.js("window.sameDocument = true; return true").await;
    owner.wait_for(&format!("#{id} .chat-delete")).await;
    owner.click(&format!("#{id} .chat-delete")).await;
    let question = owner.accept_dialog().await;
    assert!(question.contains("Delete this message"), "{question}");
    ben.wait_until(
        "the deleted message to disappear from Ben's page",
        &format!("return document.getElementById('{id}') === null"),
        TIMEOUT,
    )
    .await;
    assert_eq!(
        ben.js("return window.sameDocument === true").await,
        true,
        "Ben's page was reloaded"
    );

    ann.close().await;
    ben.close().await;
    owner.close().await;
}

#[tokio::test]
async fn a_viewer_follows_from_the_channel_page_and_the_bell_shows_the_go_live() {
    let app = TestApp::spawn().await;
    let studio = app.signed_up("host@example.com", "Hana Host").await;
    app.signed_up("fan@example.com", "Fay Fan").await;
    let host = user_id(&app, "host@example.com").await;
    let stream = draft_stream(&app, host).await;

    // The viewer finds the channel and follows it with one click.
    let viewer = Browser::start().await;
    viewer.sign_in(&app.url, "fan@example.com", PASSWORD).await;
    viewer.goto(&format!("{}/c/hana", app.url)).await;
    viewer.wait_for("#notification-bell").await;
    assert!(
        viewer.has("[data-testid=notification-count][hidden]").await,
        "no unread notifications yet"
    );
    assert_eq!(
        viewer.text("[data-testid=follower-count]").await,
        "0 followers"
    );
    assert_eq!(viewer.text("[data-testid=follow-button]").await, "Follow");
    viewer.js("window.sameDocument = true; return true").await;
    viewer.click("[data-testid=follow-button]").await;
    viewer
        .wait_until(
            "the button to say Following",
            "return document.querySelector('[data-testid=follow-button]').textContent.trim() === 'Following'",
            TIMEOUT,
        )
        .await;
    assert_eq!(
        viewer.text("[data-testid=follower-count]").await,
        "1 follower"
    );
    assert_eq!(
        viewer.js("return window.sameDocument === true").await,
        true,
        "following swapped the button in place"
    );

    // The creator goes live from the studio.
    let live = studio
        .post_htmx(&format!("/studio/streams/{}/live", stream.id), &[])
        .await;
    assert_eq!(live.status, reqwest::StatusCode::OK, "{}", live.text);

    // The bell on the page the viewer still has open shows it (it refreshes
    // itself every 30 s), and leads to the notification.
    viewer
        .wait_until(
            "the bell to show 1",
            "const c = document.querySelector('[data-testid=notification-count]'); \
             return !!c && !c.hidden && c.textContent.trim() === '1'",
            Duration::from_secs(45),
        )
        .await;
    assert_eq!(
        viewer
            .attr("#notification-bell", "aria-label")
            .await
            .as_deref(),
        Some("Notifications, 1 unread")
    );
    assert_eq!(viewer.js("return window.sameDocument === true").await, true);
    viewer.click("#notification-bell").await;
    viewer.wait_for(".notification[data-kind=live]").await;
    let item = viewer.text(".notification[data-kind=live]").await;
    assert!(
        item.contains("Hana Live") && item.contains("went live") && item.contains("Opening night"),
        "{item}"
    );

    studio
        .post_htmx(&format!("/studio/streams/{}/end", stream.id), &[])
        .await;
    viewer.close().await;
}

/// A guest: never signed in, they watch a public stream in Chromium (the
/// video plays) and read its chat live, but the chat has no box for them.
/// They are in the room as `guest-…`, subscribe-only, and counted as a viewer.
#[tokio::test]
async fn a_guest_watches_a_public_stream_and_reads_the_chat_without_an_account() {
    let studio = crate::util::builders::Studio::spawn("open-house", AccessKind::Public).await;
    let app = &studio.app;
    let (fan_http, _) = crate::util::builders::user(app, "fan@example.com", "Fay Fan").await;
    let owner =
        crate::util::browser::go_live_at(&app.url, "owner@example.com", studio.stream.id).await;
    let watch_url = format!("{}/s/{}", app.url, studio.stream.id);

    let guest = Browser::start().await;
    guest.goto(&watch_url).await;
    guest.wait_for("#player").await;
    let started = guest
        .wait_until(
            "the stream video to play for the guest",
            "const v = document.getElementById('stream-video'); \
             return v.videoWidth > 0 && v.currentTime > 0 && v.currentTime",
            TIMEOUT,
        )
        .await
        .as_f64()
        .unwrap();
    guest
        .wait_until(
            "the guest's video to advance",
            &format!("return document.getElementById('stream-video').currentTime > {started} + 1"),
            Duration::from_secs(10),
        )
        .await;
    // No box: a way to sign in instead.
    assert!(guest.has(".chat-guest a[href^='/signin']").await);
    assert!(!guest.has(".chat-form input[name=body]").await);
    guest
        .wait_until(
            "the guest's chat stream to connect",
            "return [...document.querySelectorAll('[sse-connect]')].every(e => e['htmx-internal-data']?.sseEventSource?.readyState === 1)",
            TIMEOUT,
        )
        .await;
    let said = fan_http
        .post_htmx(
            &format!("/s/{}/chat", studio.stream.id),
            &[("body", "hello guests")],
        )
        .await;
    assert_eq!(said.status, reqwest::StatusCode::OK, "{}", said.text);
    guest
        .wait_until(
            "the fan's message on the guest's page",
            "return [...document.querySelectorAll('.chat-msg')].some(li => li.innerText.includes('hello guests'))",
            TIMEOUT,
        )
        .await;

    // In the room as a guest, publishing nothing; counted as a viewer.
    let people = app
        .state
        .livekit
        .rooms
        .list_participants(&studio.stream.room_name)
        .await
        .unwrap();
    let them = people
        .iter()
        .find(|p| p.identity.starts_with("guest-"))
        .unwrap_or_else(|| panic!("no guest in the room: {people:?}"));
    assert!(them.tracks.is_empty());
    assert_eq!(
        stagepass::livekit::Participant::parse(&them.identity),
        stagepass::livekit::Participant::Guest(
            stagepass::auth::guest::GuestTag::parse(&them.identity["guest-".len()..]).unwrap()
        )
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let viewers = stagepass::db::presence::current_viewers(
            &mut *app.conn().await,
            studio.stream.id,
            studio.channel.id,
        )
        .await
        .unwrap();
        if viewers == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest is not counted: {viewers}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    guest.close().await;
    owner.close().await;
}
