//! The watch page's player in a real browser: the host goes live from the
//! broadcast page in headless Chromium (fake camera, simulcast), a pass
//! holder's Chromium watches, and every control is used as a viewer would:
//! keyboard shortcuts, mute and volume (remembered over a reload), pause, the
//! quality menu, the stats panel, theatre mode. The host's states reach the
//! viewer: camera off, "Be right back", a shared screen with the camera as
//! picture-in-picture. The viewer count leaves the team out.

use std::time::Duration;

use fantoccini::key::Key;
use stagepass::db::StreamId;
use stagepass::db::streams::AccessKind;

use crate::util::PASSWORD;
use crate::util::browser::{Browser, TIMEOUT};
use crate::util::builders::{self, Studio};

/// Long enough for a mute to cross LiveKit on a loaded 2-core machine; the
/// usual time is well under a second (`make bench` measures, tests don't).
const STATE_CHANGE: Duration = Duration::from_secs(5);

fn card_is(kind: &str) -> String {
    format!(
        "const c = document.getElementById('player-card'); \
         return !c.hidden && c.dataset.kind === '{kind}' && c.innerText"
    )
}

/// The owner goes live from the broadcast page in Chromium and publishes.
async fn host_goes_live(url: &str, stream: StreamId) -> Browser {
    let host = Browser::start().await;
    host.sign_in(url, "owner@example.com", PASSWORD).await;
    host.goto(&format!("{url}/studio/streams/{stream}/broadcast"))
        .await;
    host.wait_until(
        "the camera preview",
        "return document.getElementById('preview').videoWidth > 0",
        TIMEOUT,
    )
    .await;
    host.click("#go-live-form [type=submit]").await;
    host.wait_until(
        "the broadcast to connect",
        "return document.getElementById('connection-state')?.dataset.state === 'live'",
        TIMEOUT,
    )
    .await;
    host
}

async fn wait_playing(viewer: &Browser, what: &str) -> f64 {
    viewer
        .wait_until(
            what,
            "const v = document.getElementById('stream-video'); \
             return !v.paused && v.videoWidth > 0 && v.currentTime > 0 && v.currentTime",
            TIMEOUT,
        )
        .await
        .as_f64()
        .unwrap()
}

/// Open presence rows of `identity` in the stream's room.
async fn open_presence(app: &crate::util::TestApp, stream: StreamId, identity: &str) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use stagepass::db::schema::presence;
    presence::table
        .filter(presence::stream_id.eq(stream))
        .filter(presence::identity.eq(identity))
        .filter(presence::left_at.is_null())
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

/// The volume and muting of the host's audio elements, and what the controls say.
async fn audio_state(viewer: &Browser) -> serde_json::Value {
    viewer
        .wait_until(
            "the host's audio element",
            "const a = [...document.querySelectorAll('#player audio')]; \
             return a.length > 0 && { volume: a[0].volume, muted: a[0].muted, \
               slider: document.getElementById('volume').value }",
            TIMEOUT,
        )
        .await
}

#[tokio::test]
async fn the_player_s_controls_work_by_keyboard_and_the_viewer_follows_the_host_s_states() {
    let studio = Studio::spawn("hana", AccessKind::Pass).await;
    let app = &studio.app;
    let stream = studio.stream.id;
    builders::pass_holder(app, studio.channel.id, "fan@example.com", "Fay Fan").await;
    let host = host_goes_live(&app.url, stream).await;

    let viewer = Browser::start().await;
    viewer.sign_in(&app.url, "fan@example.com", PASSWORD).await;
    let watch_url = format!("{}/s/{stream}", app.url);
    viewer.goto(&watch_url).await;
    wait_playing(&viewer, "the stream to play").await;

    // Every control is a labelled button, range or menu.
    let unlabelled = viewer
        .js("return [...document.querySelectorAll('.player-controls button, .player-controls input, .player-controls select')] \
               .filter(el => !(el.getAttribute('aria-label') || el.textContent.trim() || el.closest('label'))) \
               .map(el => el.outerHTML)")
        .await;
    assert_eq!(unlabelled, serde_json::json!([]), "controls without a name");

    // Volume and mute, by keyboard (the player has the focus, as after a
    // click on it): two steps down, then mute.
    let before = audio_state(&viewer).await;
    viewer
        .js("document.getElementById('player').focus(); return true")
        .await;
    assert_eq!(before["volume"], 1.0, "{before}");
    assert_eq!(before["muted"], false, "{before}");
    viewer.press(Key::Down.into()).await;
    viewer.press(Key::Down.into()).await;
    viewer.press('m').await;
    let after = audio_state(&viewer).await;
    assert!(
        (after["volume"].as_f64().unwrap() - 0.8).abs() < 0.01,
        "{after}"
    );
    assert_eq!(after["muted"], true, "{after}");
    assert_eq!(after["slider"], "80", "{after}");
    assert_eq!(viewer.text("#mute").await, "Unmute");

    // Remembered by this browser: after a reload the new audio element starts so.
    viewer.goto(&watch_url).await;
    wait_playing(&viewer, "the stream to play after the reload").await;
    let reloaded = audio_state(&viewer).await;
    assert!(
        (reloaded["volume"].as_f64().unwrap() - 0.8).abs() < 0.01,
        "{reloaded}"
    );
    assert_eq!(reloaded["muted"], true, "{reloaded}");
    viewer.click("#mute").await;
    assert_eq!(audio_state(&viewer).await["muted"], false);

    // Pause and play (k): the video stops, the pill says so, and it plays on.
    viewer.press('k').await;
    viewer
        .wait_until(
            "the player to pause",
            "return document.getElementById('stream-video').paused \
               && document.getElementById('player-state').dataset.state === 'paused'",
            STATE_CHANGE,
        )
        .await;
    assert_eq!(viewer.text("#play-pause").await, "Play");
    viewer.press('k').await;
    let resumed = wait_playing(&viewer, "the player to play again").await;
    viewer
        .wait_until(
            "the video to move on after resuming",
            &format!("return document.getElementById('stream-video').currentTime > {resumed} + 1"),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(viewer.text("#play-pause").await, "Pause");

    // Theatre (t) puts chat under the video; again, beside it.
    viewer.press('t').await;
    assert_eq!(
        viewer
            .js("return document.querySelector('.watch').classList.contains('theatre')")
            .await,
        true
    );
    let chat_below = viewer
        .js(
            "const v = document.getElementById('player').getBoundingClientRect(); \
             const c = document.querySelector('.chat').getBoundingClientRect(); \
             return c.top >= v.bottom",
        )
        .await;
    assert_eq!(chat_below, true, "in theatre mode chat is under the video");
    viewer.press('t').await;
    let chat_beside = viewer
        .js(
            "const v = document.getElementById('player').getBoundingClientRect(); \
             const c = document.querySelector('.chat').getBoundingClientRect(); \
             return c.left >= v.right && c.top < v.bottom",
        )
        .await;
    assert_eq!(chat_beside, true, "at 1280 px chat is beside the video");

    // Fullscreen (f) and back.
    viewer.press('f').await;
    viewer
        .wait_until(
            "fullscreen",
            "return document.fullscreenElement?.id === 'player'",
            STATE_CHANGE,
        )
        .await;
    viewer.press('f').await;
    viewer
        .wait_until(
            "fullscreen to end",
            "return document.fullscreenElement === null",
            STATE_CHANGE,
        )
        .await;

    // The stats panel shows what is received.
    viewer.click("#stats-toggle").await;
    let stats = viewer
        .wait_until(
            "the stats panel to fill",
            "const t = (n) => document.querySelector(`[data-stat=${n}]`).textContent; \
             return /^\\d+×\\d+$/.test(t('resolution')) && /kbit\\/s$/.test(t('bitrate')) \
               && /ms$/.test(t('latency')) && document.getElementById('player-stats').innerText",
            TIMEOUT,
        )
        .await;
    assert!(stats.as_str().unwrap().contains("Packet loss"), "{stats}");

    // The connection indicator says how the viewer's link is.
    let quality = viewer
        .wait_until(
            "the connection indicator",
            "const q = document.getElementById('connection-quality'); \
             return ['excellent', 'good', 'poor'].includes(q.dataset.quality) && q.getAttribute('aria-label')",
            TIMEOUT,
        )
        .await;
    assert!(
        quality.as_str().unwrap().starts_with("Connection: "),
        "{quality}"
    );

    // Quality: the menu lists the simulcast layers; Low caps the frame width.
    let layers = viewer
        .wait_until(
            "the quality menu to list the published layers",
            "const o = [...document.querySelectorAll('#quality option')].map(o => o.textContent); \
             return o.length >= 3 && !document.querySelector('.player-quality').hidden && o",
            TIMEOUT,
        )
        .await;
    assert_eq!(layers[0], "Auto", "{layers}");
    let low = layers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .find(|l| l.starts_with("Low · "))
        .unwrap_or_else(|| panic!("no Low layer in {layers}"))
        .to_owned();
    let low_height: u64 = low
        .trim_start_matches("Low · ")
        .trim_end_matches('p')
        .parse()
        .unwrap();
    let wide = viewer
        .wait_until(
            "a frame above the Low layer before choosing it",
            &format!(
                "const v = document.getElementById('stream-video'); \
                 return v.videoHeight > {low_height} && v.videoWidth"
            ),
            TIMEOUT,
        )
        .await;
    viewer
        .js("const s = document.getElementById('quality'); \
             s.value = [...s.options].find(o => o.textContent.startsWith('Low')).value; \
             s.dispatchEvent(new Event('change')); return true")
        .await;
    let narrow = viewer
        .wait_until(
            "the frame to drop to the Low layer",
            &format!(
                "const v = document.getElementById('stream-video'); \
                 return v.videoHeight <= {low_height} && v.videoWidth"
            ),
            TIMEOUT,
        )
        .await;
    assert!(narrow.as_u64() < wide.as_u64(), "{narrow} < {wide}");

    // The host turns the camera off: a card, not a black frame; and back.
    host.click("#toggle-camera").await;
    let card = viewer
        .wait_until("the camera-off card", &card_is("camera-off"), STATE_CHANGE)
        .await;
    assert!(
        card.as_str()
            .unwrap()
            .contains("The host turned their camera off"),
        "{card}"
    );
    // The host's preview shows the same card.
    assert!(
        host.text("#preview-card")
            .await
            .contains("The host turned their camera off")
    );
    host.click("#toggle-camera").await;
    viewer
        .wait_until(
            "the card to go on the camera's return",
            "return document.getElementById('player-card').hidden",
            STATE_CHANGE,
        )
        .await;
    wait_playing(&viewer, "the camera to play again").await;

    // Be right back: a card with how long it has lasted; Resume ends it.
    host.click("#toggle-pause").await;
    host.wait_until(
        "the broadcast page to offer Resume",
        "return document.getElementById('toggle-pause').textContent === 'Resume'",
        STATE_CHANGE,
    )
    .await;
    let brb = viewer
        .wait_until("the Be right back card", &card_is("brb"), STATE_CHANGE)
        .await;
    assert!(brb.as_str().unwrap().contains("Be right back"), "{brb}");
    viewer
        .wait_until(
            "the pause's duration to tick",
            "return /Paused for 0m 0[1-9]s/.test(document.querySelector('.player-card-detail').textContent)",
            Duration::from_secs(10),
        )
        .await;
    host.click("#toggle-pause").await;
    viewer
        .wait_until(
            "the card to go on resume",
            "return document.getElementById('player-card').hidden",
            STATE_CHANGE,
        )
        .await;
    wait_playing(&viewer, "the camera to play after the pause").await;

    // A shared screen is the main picture, the camera in the corner.
    host.click("#toggle-screen").await;
    viewer
        .wait_until(
            "the camera as picture-in-picture over the screen",
            "const p = document.getElementById('pip-video'); \
             return !p.hidden && p.videoWidth > 0 && p.currentTime > 0",
            TIMEOUT,
        )
        .await;
    // The broadcast preview shows what viewers see: the screen, the camera in the corner.
    host.wait_until(
        "the preview to show the screen with the camera over it",
        "const p = document.getElementById('preview-pip'); \
         return !p.hidden && p.videoWidth > 0 \
           && document.getElementById('preview').srcObject?.getVideoTracks()[0]?.getSettings().displaySurface !== undefined",
        TIMEOUT,
    )
    .await;
    host.click("#toggle-screen").await;
    viewer
        .wait_until(
            "the picture-in-picture to go with the screen",
            "return document.getElementById('pip-video').hidden",
            TIMEOUT,
        )
        .await;

    // The viewer count: the viewer, not the team. A moderator watching (a
    // real LiveKit client with their own viewer token) is not counted.
    let (moderator, moderator_id) = builders::user(app, "mod@example.com", "Max Mod").await;
    builders::moderator(app, studio.channel.id, moderator_id).await;
    let granted = moderator
        .post_htmx(&format!("/s/{stream}/token"), &[])
        .await;
    let granted: serde_json::Value = serde_json::from_str(&granted.text).unwrap();
    let mut watching = builders::LiveKitClient::start(
        granted["url"].as_str().unwrap(),
        granted["token"].as_str().unwrap(),
        "stay",
        60,
    )
    .await;
    assert_eq!(watching.next().await["connected"], true);
    // Once the server knows the moderator is in the room (LiveKit's webhook).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let n = open_presence(app, stream, &moderator_id.to_string()).await;
        if n > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the moderator's presence never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = viewer
        .wait_until(
            "the viewer count",
            // Ask for the fragment as its 15 s poll would, every 2 s at most.
            "if (!(Date.now() - (window.askedAt ?? 0) < 2000)) { \
               window.askedAt = Date.now(); \
               document.body.dispatchEvent(new CustomEvent('live-stats-poll')); } \
             return document.getElementById('viewer-count')?.innerText === '1 viewer' \
               && document.querySelectorAll('#live-stats').length === 1 && '1 viewer'",
            TIMEOUT,
        )
        .await;
    assert_eq!(count, "1 viewer");
    // Asked now, with the moderator known to be in the room: still one.
    let fragment = app
        .anonymous()
        .get(&format!("/s/{stream}/live-stats"))
        .await;
    assert_eq!(
        fragment.text_of("#viewer-count"),
        "1 viewer",
        "{}",
        fragment.text
    );
    watching.stop().await;
    let live_for = viewer
        .wait_until(
            "live for, in the home card's words",
            "const t = document.getElementById('live-for')?.innerText ?? ''; \
             return /^(just started|live for \\d+ min)$/.test(t) && t",
            STATE_CHANGE,
        )
        .await;
    assert!(live_for.as_str().is_some(), "{live_for}");

    viewer.close().await;
    host.close().await;
}

/// The broadcast page opened a second time takes over; the first says where
/// the broadcast is and offers to take it back, which works.
#[tokio::test]
async fn a_second_broadcast_tab_takes_over_and_the_first_can_take_it_back() {
    let studio = Studio::spawn("tabs", AccessKind::Pass).await;
    let app = &studio.app;
    let first = host_goes_live(&app.url, studio.stream.id).await;
    let second = Browser::start().await;
    second
        .sign_in(&app.url, "owner@example.com", PASSWORD)
        .await;
    second
        .goto(&format!(
            "{}/studio/streams/{}/broadcast",
            app.url, studio.stream.id
        ))
        .await;
    let live_here = "return document.getElementById('connection-state')?.dataset.state === 'live'";
    second
        .wait_until("the second tab to broadcast", live_here, TIMEOUT)
        .await;
    let told = first
        .wait_until(
            "the first tab to say where the broadcast is",
            "const s = document.getElementById('connection-state'); \
             return s.dataset.state === 'elsewhere' && s.textContent",
            TIMEOUT,
        )
        .await;
    assert!(
        told.as_str().unwrap().contains("another tab or device"),
        "{told}"
    );
    assert_eq!(first.text("#reconnect").await, "Broadcast from this tab");

    first.click("#reconnect").await;
    first
        .wait_until("the first tab to broadcast again", live_here, TIMEOUT)
        .await;
    second
        .wait_until(
            "the second tab to step aside",
            "return document.getElementById('connection-state').dataset.state === 'elsewhere'",
            TIMEOUT,
        )
        .await;
    second.close().await;
    first.close().await;
}
