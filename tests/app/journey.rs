//! The whole journey, as a real day goes, in real browsers through the real
//! UI: a creator signs up, makes a channel, a pass and a stream, goes live
//! with the fake camera and records; a viewer signs up, buys the pass with the
//! development provider, watches and chats; a moderator (added on the team
//! page) deletes the viewer's message and times them out; the creator ends
//! the stream; the recording completes and the viewer opens the replay.
//!
//! Each step leaves a screenshot under target/journey/NN-step.png; three of
//! them are the pictures in the README (docs/*.png).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use stagepass::db::StreamId;
use stagepass::db::recordings::{Recording, Status};
use stagepass::db::schema::recordings;

use crate::util::browser::{Browser, TIMEOUT, copy_to_docs};
use crate::util::{PASSWORD, TestApp};

const CREATOR: &str = "hana@example.com";
const VIEWER: &str = "fay@example.com";
const MODERATOR: &str = "mo@example.com";
const HANDLE: &str = "hana";

/// Media, webhooks and recordings take their time on a small machine.
const LONG: Duration = Duration::from_secs(60);

/// Numbered screenshots of the journey, under target/journey/.
struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    fn new() -> Shots {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/journey");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating target/journey");
        Shots { dir, n: 0 }
    }

    async fn take(&mut self, browser: &Browser, step: &str) -> PathBuf {
        self.n += 1;
        let file = self.dir.join(format!("{:02}-{step}.png", self.n));
        browser.screenshot(&file).await;
        file
    }
}

/// Types `text` into the input matching `css` (after emptying it).
async fn fill(b: &Browser, css: &str, text: &str) {
    let el = b.wait_for(css).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Waits until the page's path matches the regular expression `re`.
async fn wait_path(b: &Browser, what: &str, re: &str) -> String {
    let script = format!(
        "return new RegExp({}).test(location.pathname) && location.pathname",
        serde_json::to_string(re).unwrap()
    );
    let path = b.wait_until(what, &script, TIMEOUT).await;
    path.as_str().unwrap().to_owned()
}

/// Waits until the text of the first element matching `css` contains `needle`.
async fn wait_text(b: &Browser, what: &str, css: &str, needle: &str) -> String {
    let script = format!(
        "const e = document.querySelector({css}); const t = e ? e.innerText : ''; \
         return t.includes({needle}) && t",
        css = serde_json::to_string(css).unwrap(),
        needle = serde_json::to_string(needle).unwrap(),
    );
    b.wait_until(what, &script, TIMEOUT)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs up through the real sign-up form; the browser is then signed in.
async fn sign_up(app: &TestApp, email: &str, name: &str) -> Browser {
    let b = Browser::start().await;
    b.goto(&format!("{}/signup", app.url)).await;
    fill(&b, "#signup-form #email", email).await;
    fill(&b, "#signup-form #display_name", name).await;
    fill(&b, "#signup-form #password", PASSWORD).await;
    b.click("#signup-form [type=submit]").await;
    b.wait_for("[data-testid=nav-account]").await;
    b
}

/// The id of the chat message (on `b`'s page) whose text contains `needle`.
async fn message_id(b: &Browser, what: &str, needle: &str) -> String {
    let script = format!(
        "const m = [...document.querySelectorAll('.chat-msg')].find(li => li.innerText.includes({})); \
         return m ? m.id : null",
        serde_json::to_string(needle).unwrap()
    );
    b.wait_until(what, &script, TIMEOUT)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits (in the database: the UI's panel polls for it too) until the
/// stream's latest recording has `status`.
async fn wait_recording(app: &TestApp, stream: StreamId, status: Status) -> Recording {
    let deadline = Instant::now() + LONG;
    loop {
        let rows: Vec<Recording> = recordings::table
            .filter(recordings::stream_id.eq(stream))
            .order(recordings::id)
            .select(Recording::as_select())
            .load(&mut app.conn().await)
            .await
            .unwrap();
        if let Some(r) = rows.last().filter(|r| r.status == status) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no recording became {status} within {LONG:?}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits up to `timeout` for `script` to answer true, without failing: for
/// pictures that look better once a poll has caught up.
async fn soft_wait(b: &Browser, script: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if b.js(script).await == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_real_day() {
    let app = TestApp::spawn().await;
    let mut shots = Shots::new();

    // 1. The creator signs up and creates a channel.
    let creator = sign_up(&app, CREATOR, "Hana Host").await;
    shots.take(&creator, "creator-signed-up").await;
    creator
        .goto(&format!("{}/studio/channels/new", app.url))
        .await;
    fill(&creator, "#channel-form #handle", HANDLE).await;
    fill(&creator, "#channel-form #title", "Hana Live").await;
    fill(
        &creator,
        "#channel-form #description",
        "Live music from a small room.",
    )
    .await;
    shots.take(&creator, "new-channel").await;
    creator.click("#channel-form [type=submit]").await;
    wait_path(
        &creator,
        "the studio after creating the channel",
        "^/studio$",
    )
    .await;
    creator.wait_for(&format!("#channel-{HANDLE}")).await;

    // 2. A pass: channel-wide, $5 for 1 day, replays included.
    creator
        .goto(&format!("{}/studio/channels/{HANDLE}/passes", app.url))
        .await;
    fill(&creator, "#pass-form #name", "Day pass").await;
    fill(&creator, "#pass-form #price", "5.00").await;
    creator.click("#pass-form #scope-channel").await;
    fill(&creator, "#pass-form #duration", "1").await;
    creator
        .js("const s = document.querySelector('#pass-form #duration_unit'); \
             s.value = 'days'; s.dispatchEvent(new Event('change', { bubbles: true })); return true")
        .await;
    if creator
        .js("return document.querySelector('#pass-form #includes_replays').checked")
        .await
        != true
    {
        creator.click("#pass-form #includes_replays").await;
    }
    creator.click("#pass-form [type=submit]").await;
    wait_text(
        &creator,
        "the pass to be on sale",
        "#new-pass .form-success",
        "on sale",
    )
    .await;
    let listed = creator.text("#pass-list").await;
    assert!(listed.contains("Day pass"), "{listed}");
    shots.take(&creator, "pass-on-sale").await;

    // 3. The moderator has an account; the creator adds them on the team page.
    let moderator = sign_up(&app, MODERATOR, "Mo Moderator").await;
    creator
        .goto(&format!("{}/studio/channels/{HANDLE}/team", app.url))
        .await;
    fill(&creator, "#add-moderator-form #email", MODERATOR).await;
    creator.click("#add-moderator-form [type=submit]").await;
    wait_text(
        &creator,
        "the moderator to join the team",
        "#team",
        "Mo Moderator is now a moderator",
    )
    .await;
    shots.take(&creator, "team").await;

    // 4. A stream (pass holders only, a draft until it goes live).
    creator
        .goto(&format!("{}/studio/channels/{HANDLE}/streams/new", app.url))
        .await;
    fill(&creator, "#stream-form #title", "Opening night").await;
    fill(
        &creator,
        "#stream-form #description",
        "Songs old and new, and your requests in the chat.",
    )
    .await;
    creator.click("#stream-form #access-pass").await;
    creator.click("#stream-form [type=submit]").await;
    let stream_path = wait_path(
        &creator,
        "the stream's studio page",
        "^/studio/streams/[^/]+$",
    )
    .await;
    let stream_id: StreamId = stream_path
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("a stream id in {stream_path}"));
    shots.take(&creator, "stream-created").await;
    let watch_url = format!("{}/s/{stream_id}", app.url);

    // 5. The creator goes live from the broadcast page with the fake camera…
    creator
        .goto(&format!("{}/studio/streams/{stream_id}/broadcast", app.url))
        .await;
    creator
        .wait_until(
            "the camera preview",
            "return document.getElementById('preview').videoWidth > 0",
            TIMEOUT,
        )
        .await;
    shots.take(&creator, "broadcast-preview").await;
    creator.click("#go-live-form [type=submit]").await;
    creator.wait_for("#broadcast[data-status=live]").await;
    creator
        .wait_until(
            "the broadcast to connect",
            "return document.getElementById('connection-state')?.dataset.state === 'live'",
            LONG,
        )
        .await;

    // …and starts recording from the recording panel.
    creator.click("#recording-start-form [type=submit]").await;
    creator.wait_for("#recording-indicator").await;
    creator.wait_for("#recording-stop-form").await;
    wait_recording(&app, stream_id, Status::Active).await;
    creator
        .wait_until(
            "the elapsed time to tick",
            "return /^00:00:(0[1-9]|[1-5][0-9])$/.test(document.getElementById('elapsed').textContent)",
            TIMEOUT,
        )
        .await;
    creator
        .wait_until(
            "the recording panel to say it records",
            "return document.querySelector('#recording[data-status=active] #recording-indicator') !== null",
            LONG,
        )
        .await;
    shots.take(&creator, "broadcast-live-recording").await;

    // 6. A viewer signs up, finds no player, and buys the pass.
    let viewer = sign_up(&app, VIEWER, "Fay Fan").await;
    viewer.goto(&watch_url).await;
    viewer.wait_for("#get-pass").await;
    assert!(!viewer.has("#player").await);
    shots.take(&viewer, "watch-without-pass").await;
    viewer.click("#get-pass").await;
    viewer.wait_for(".buy-form").await;
    let offer = viewer.text(".buy-form").await;
    assert!(offer.contains("$5.00"), "{offer}");
    shots.take(&viewer, "pass-page").await;
    viewer.click(".buy-form [type=submit]").await;
    viewer.wait_for("#dev-confirm-form").await;
    shots.take(&viewer, "dev-checkout").await;
    viewer.click("#dev-confirm-form [type=submit]").await;

    // 7. Back on the watch page, the video plays.
    viewer.wait_for("#player").await;
    assert_eq!(viewer.path().await, format!("/s/{stream_id}"));
    viewer
        .wait_until(
            "the stream video to play",
            "const v = document.getElementById('stream-video'); \
             return v && v.videoWidth > 0 && v.currentTime > 0",
            LONG,
        )
        .await;

    // 8. The viewer chats.
    viewer.wait_chat_open().await;
    viewer
        .wait_for(".chat-form input[name=body]")
        .await
        .send_keys("What a voice! Play the one about the sea?\u{E007}")
        .await
        .unwrap();
    let first = message_id(
        &viewer,
        "the viewer's message in the chat",
        "the one about the sea",
    )
    .await;
    viewer
        .wait_for(".chat-form input[name=body]")
        .await
        .send_keys("Greetings from Lisbon\u{E007}")
        .await
        .unwrap();
    let second = message_id(
        &viewer,
        "the viewer's second message",
        "Greetings from Lisbon",
    )
    .await;
    viewer
        .wait_until(
            "the box to clear after sending",
            "return document.querySelector('.chat-form input[name=body]')?.value === ''",
            TIMEOUT,
        )
        .await;
    viewer
        .wait_until(
            "the video to play on",
            "const v = document.getElementById('stream-video'); return v.currentTime > 2",
            TIMEOUT,
        )
        .await;
    // The player with chat beside it in a 1280x800 viewport (headless
    // Chromium's window counts its own frame), then the same page on a phone.
    let frame = viewer
        .js("return window.outerHeight - window.innerHeight")
        .await
        .as_u64()
        .unwrap_or(0) as u32;
    viewer.resize(1280, 800 + frame).await;
    viewer
        .js("document.activeElement?.blur(); window.scrollTo(0, 0); return true")
        .await;
    let watch_shot = shots.take(&viewer, "watch-playing-with-chat").await;
    viewer.resize(390, 844).await;
    viewer.js("window.scrollTo(0, 0); return true").await;
    let phone_shot = shots.take(&viewer, "watch-on-a-phone").await;
    viewer.resize(1280, 800).await;

    // The broadcast page, live and recording, once it counts the viewer.
    soft_wait(
        &creator,
        "return (document.getElementById('participants')?.innerText || '').includes('Fay Fan')",
        Duration::from_secs(20),
    )
    .await;
    creator.js("window.scrollTo(0, 0); return true").await;
    let broadcast_shot = shots.take(&creator, "broadcast-live-with-viewer").await;

    // The studio, live, for the README.
    creator.goto(&format!("{}/studio", app.url)).await;
    creator.wait_for(&format!("#channel-{HANDLE}")).await;
    let studio_shot = shots.take(&creator, "studio-dashboard-live").await;

    // 9. The moderator deletes the viewer's first message (confirming).
    moderator.goto(&watch_url).await;
    moderator.wait_chat_open().await;
    let seen = message_id(
        &moderator,
        "the viewer's message on the moderator's page",
        "the one about the sea",
    )
    .await;
    assert_eq!(seen, first);
    viewer.js("window.sameDocument = true; return true").await;
    moderator.click(&format!("#{first} .chat-delete")).await;
    let question = moderator.accept_dialog().await;
    assert!(question.contains("Delete this message"), "{question}");
    viewer
        .wait_until(
            "the deleted message to leave the viewer's page",
            &format!("return document.getElementById('{first}') === null"),
            TIMEOUT,
        )
        .await;
    assert!(
        viewer.has(&format!("#{second}")).await,
        "only one message was deleted"
    );
    shots.take(&moderator, "moderator-deleted-message").await;

    // 10. …and times the viewer out of the chat for 10 minutes.
    moderator
        .goto(&format!("{}/studio/streams/{stream_id}/moderate", app.url))
        .await;
    fill(&moderator, "#timeout-form #timeout-email", VIEWER).await;
    moderator
        .click("#timeout-form input[name=minutes][value='10']")
        .await;
    moderator.click("#timeout-form [type=submit]").await;
    let row = moderator
        .text("#ban-list .ban-row[data-kind=timeout]")
        .await;
    assert!(row.contains("Fay Fan"), "{row}");
    shots.take(&moderator, "moderator-timeout").await;

    // 11. The viewer's next post is refused with the reason.
    viewer
        .wait_for(".chat-form input[name=body]")
        .await
        .send_keys("Hello? Anyone?\u{E007}")
        .await
        .unwrap();
    let refused = wait_text(
        &viewer,
        "the post to be refused for the timeout",
        ".chat-form .chat-error",
        "timed out of this chat",
    )
    .await;
    assert!(
        refused.contains("You are timed out of this chat until"),
        "{refused}"
    );
    assert!(
        viewer
            .js("return ![...document.querySelectorAll('.chat-msg')].some(li => li.innerText.includes('Anyone?'))")
            .await
            == true,
        "the refused message reached the chat"
    );
    assert_eq!(viewer.js("return window.sameDocument === true").await, true);
    shots.take(&viewer, "viewer-timed-out").await;

    // 12. The creator ends the stream (confirming); the recording completes.
    creator
        .goto(&format!("{}/studio/streams/{stream_id}/broadcast", app.url))
        .await;
    creator.wait_for("#broadcast[data-status=live]").await;
    creator.click("#end-form [type=submit]").await;
    let question = creator.accept_dialog().await;
    assert!(
        question.starts_with("End the stream for everyone?"),
        "{question}"
    );
    wait_path(
        &creator,
        "the stream's studio page after ending",
        &format!("^/studio/streams/{stream_id}$"),
    )
    .await;
    viewer
        .wait_until(
            "the viewer to be told the stream ended",
            "return document.getElementById('ended-notice')?.innerText",
            TIMEOUT,
        )
        .await;
    shots.take(&viewer, "viewer-stream-ended").await;
    let done = wait_recording(&app, stream_id, Status::Complete).await;
    assert!(done.size_bytes.unwrap_or(0) > 0, "{done:?}");
    creator.goto(&format!("{}{stream_path}", app.url)).await;
    shots.take(&creator, "studio-stream-ended").await;

    // 13. The viewer's pass includes replays: the replay is there to play.
    viewer
        .goto(&format!("{}/s/{stream_id}/replays", app.url))
        .await;
    let src = viewer
        .wait_until(
            "a replay video with a source",
            "const v = document.querySelector('#replays video.replay-video[src]'); \
             return v && v.getAttribute('src')",
            LONG,
        )
        .await;
    assert!(!src.as_str().unwrap().is_empty());
    shots.take(&viewer, "replay").await;

    // The README's pictures.
    copy_to_docs(&watch_shot, "watch.png");
    copy_to_docs(&phone_shot, "watch-phone.png");
    copy_to_docs(&broadcast_shot, "broadcast.png");
    copy_to_docs(&studio_shot, "studio.png");

    moderator.close().await;
    viewer.close().await;
    creator.close().await;
}
