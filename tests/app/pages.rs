//! Pages as people see them in Chromium: times in the viewer's own zone
//! (with the zone named, the UTC label kept as a tooltip), countdowns in the
//! same words on the home card and the watch page, and on a phone's
//! 390 px no element wider than the screen on the pages used most, with the
//! navigation folded behind its Menu button (screenshots of each page at
//! 390 px go to target/pages/).

use chrono::{Duration, FixedOffset, Utc};
use stagepass::db::streams::AccessKind;

use crate::util::PASSWORD;
use crate::util::browser::{Browser, TIMEOUT};
use crate::util::builders::{self, Studio};

#[tokio::test]
async fn times_show_in_the_viewer_s_zone_with_its_name() {
    let studio = Studio::spawn("kolkata", AccessKind::Pass).await;
    let app = &studio.app;
    let at = Utc::now() + Duration::hours(2);
    builders::schedule_in(app, studio.stream.id, "2 hours").await;

    let viewer = Browser::start().await;
    viewer.time_zone("Asia/Kolkata").await;
    viewer
        .goto(&format!("{}/c/{}", app.url, studio.channel.handle))
        .await;
    let shown = viewer
        .wait_until(
            "the scheduled time in the viewer's zone",
            "const t = document.querySelector('#upcoming time, time[datetime]'); \
             return t?.dataset.local && { text: t.textContent, title: t.title, zone: t.dataset.local }",
            TIMEOUT,
        )
        .await;
    let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    // The minute may have turned between the schedule and now: either is the time.
    // In the browser's locale: "18:29" or "06:29 PM".
    let expected: Vec<String> = [at, at - Duration::minutes(1)]
        .iter()
        .flat_map(|t| {
            let local = t.with_timezone(&india);
            [
                local.format("%H:%M").to_string(),
                local.format("%I:%M %p").to_string(),
            ]
        })
        .collect();
    let text = shown["text"].as_str().unwrap();
    assert!(
        expected.iter().any(|e| text.contains(e.as_str())),
        "{shown} shows none of {expected:?}"
    );
    assert!(text.contains("GMT+5:30"), "the zone is named: {shown}");
    assert!(
        shown["title"].as_str().unwrap().ends_with(" UTC"),
        "{shown}"
    );
    // ICU may name the zone by its older alias.
    assert!(
        ["Asia/Kolkata", "Asia/Calcutta"].contains(&shown["zone"].as_str().unwrap()),
        "{shown}"
    );

    // The home page's card and the watch page count down in the same words.
    viewer.goto(&format!("{}/", app.url)).await;
    let card = viewer
        .text(&format!(
            "#starting-soon [data-stream-id=\"{}\"] time",
            studio.stream.id
        ))
        .await;
    viewer
        .goto(&format!("{}/s/{}", app.url, studio.stream.id))
        .await;
    let countdown = viewer.text("#countdown").await;
    assert!(
        ["in 1 h 59 min", "in 2 h"].contains(&card.as_str()),
        "{card}"
    );
    assert_eq!(card, countdown, "the card and the watch page agree");
    // And the script speaks the server's words: the pages as served say the same.
    let served = app.anonymous();
    let served_card = served.get("/").await.text_of(&format!(
        "#starting-soon [data-stream-id=\"{}\"] time",
        studio.stream.id
    ));
    let served_countdown = served
        .get(&format!("/s/{}", studio.stream.id))
        .await
        .text_of("#countdown");
    for label in [&served_card, &served_countdown] {
        assert!(
            ["in 1 h 59 min", "in 2 h"].contains(&label.as_str()),
            "{label}"
        );
    }

    // Without JavaScript the same page says UTC.
    let plain = app
        .anonymous()
        .get(&format!("/c/{}", studio.channel.handle))
        .await;
    assert!(
        plain
            .texts("time[datetime]")
            .iter()
            .any(|t| t.ends_with(" UTC")),
        "{}",
        plain.text
    );
    viewer.close().await;
}

/// Elements wider than the window, outside the tables that scroll sideways
/// (and the skip link and screen-reader texts, off screen on purpose).
pub const TOO_WIDE: &str = "\
    const w = document.documentElement.clientWidth; \
    const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) { \
        const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; }; \
    const wide = [...document.body.querySelectorAll('*')] \
        .filter((el) => { const r = el.getBoundingClientRect(); return r.width > 0 && (r.right > w + 1 || r.left < -1); }) \
        .filter((el) => !scrolls(el) && !el.closest('.skip-link, .visually-hidden')) \
        .map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + [...el.classList].join('.')); \
    return { overflow: document.documentElement.scrollWidth - w, wide };";

#[tokio::test]
async fn at_390_px_nothing_is_wider_than_the_screen_and_the_menu_folds() {
    let studio = Studio::spawn("phone", AccessKind::Pass).await;
    let app = &studio.app;
    let stream = studio.stream.id;
    builders::pass_holder(app, studio.channel.id, "fan@example.com", "Fay Fan").await;
    builders::go_live(&studio.owner, stream).await;

    let owner = Browser::start().await;
    owner.sign_in(&app.url, "owner@example.com", PASSWORD).await;
    owner.resize(390, 844).await;
    let fan_browser = Browser::start().await;
    fan_browser
        .sign_in(&app.url, "fan@example.com", PASSWORD)
        .await;
    fan_browser.resize(390, 844).await;

    let handle = &studio.channel.handle;
    let pages: Vec<(&Browser, String)> = vec![
        (&fan_browser, "/".to_owned()),
        (&fan_browser, format!("/s/{stream}")),
        (&owner, format!("/studio/streams/{stream}/broadcast")),
        (&owner, format!("/studio/streams/{stream}")),
        (&owner, format!("/studio/channels/{handle}/grants")),
        (&owner, format!("/studio/channels/{handle}/analytics")),
        (&owner, format!("/studio/streams/{stream}/analytics")),
    ];
    for (browser, path) in pages {
        browser.goto(&format!("{}{path}", app.url)).await;
        browser.wait_for("main").await;
        if path.starts_with("/s/") {
            browser.wait_for("#player").await;
        }
        // For a person's look: target/pages/phone-*.png.
        let name = path.trim_matches('/').replace('/', "-");
        browser
            .screenshot(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/pages")
                    .join(format!(
                        "phone-{}.png",
                        if name.is_empty() { "home" } else { &name }
                    )),
            )
            .await;
        let seen = browser.js(TOO_WIDE).await;
        assert_eq!(seen["overflow"], 0, "{path} scrolls sideways: {seen}");
        assert_eq!(seen["wide"], serde_json::json!([]), "{path}: {seen}");
    }

    // The grants table says it scrolls sideways.
    owner
        .goto(&format!("{}/studio/channels/{handle}/grants", app.url))
        .await;
    assert!(
        owner
            .js("return document.querySelector('.scroll-hint')?.checkVisibility() ?? false")
            .await
            .as_bool()
            .unwrap(),
        "the grants table's scroll hint"
    );
    // Chart labels stay readable on a phone, in the theme's colours.
    owner
        .goto(&format!("{}/studio/channels/{handle}/analytics", app.url))
        .await;
    let labels = owner
        .js("const t = [...document.querySelectorAll('.chart-svg text')].filter(t => t.textContent.trim()); \
             return { count: t.length, smallest: Math.min(...t.map(x => x.getBoundingClientRect().height)), \
               fill: t[0] && getComputedStyle(t[0]).fill, \
               background: getComputedStyle(document.querySelector('.chart-image')).backgroundColor }")
        .await;
    assert!(labels["count"].as_u64().unwrap() > 0, "{labels}");
    assert!(labels["smallest"].as_f64().unwrap() >= 9.0, "{labels}");
    assert_ne!(labels["fill"], "rgb(0, 0, 0)", "{labels}");
    assert_ne!(labels["background"], "rgb(255, 255, 255)", "{labels}");

    // The navigation is one row: the brand and Menu; Menu unfolds the links.
    fan_browser.goto(&format!("{}/", app.url)).await;
    assert!(
        !fan_browser
            .js("return document.getElementById('nav-links').checkVisibility()")
            .await
            .as_bool()
            .unwrap()
    );
    fan_browser.click(".nav-toggle").await;
    assert_eq!(
        fan_browser
            .attr(".nav-toggle", "aria-expanded")
            .await
            .as_deref(),
        Some("true")
    );
    fan_browser.click("[data-testid=nav-account]").await;
    fan_browser
        .wait_until(
            "the account page through the menu",
            "return location.pathname === '/account'",
            TIMEOUT,
        )
        .await;

    fan_browser.close().await;
    owner.close().await;
}

/// A refused sign-up says why next to each field, and the page's console
/// stays clean: nothing the Content Security Policy had to refuse.
#[tokio::test]
async fn a_refused_sign_up_leaves_the_console_clean() {
    let app = crate::util::TestApp::spawn().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/signup", app.url)).await;
    let _ = b.console().await; // only what follows counts
    // Typed as a person would, each field wrong in its own way.
    for (css, text) in [
        ("#email", "not-an-email"),
        ("#display_name", " "),
        ("#password", "short"),
    ] {
        b.wait_for(css).await.send_keys(text).await.unwrap();
    }
    b.click("#signup-form [type=submit]").await;
    b.wait_for("#email-error").await;
    for _ in 0..2 {
        b.wait_for("#signup-form [type=submit]:not([disabled])")
            .await;
        b.click("#signup-form [type=submit]").await;
        b.wait_for("#email-error").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let console = b.console().await;
    assert!(
        !console.contains("Content Security Policy"),
        "the console: {console}"
    );
    b.close().await;
}

/// The operator's console in Chromium: its overview as the README shows it,
/// a suspension done through the page (htmx swaps the user's row, after the
/// confirmation), and at 390 px every console page fits the screen.
#[tokio::test]
async fn the_console_on_a_desktop_and_on_a_phone() {
    let studio = Studio::spawn("console", AccessKind::Public).await;
    let app = &studio.app;
    builders::go_live(&studio.owner, studio.stream.id).await;
    let (_, viewer) = builders::user(app, "viewer@example.com", "Vera Viewer").await;
    builders::user(app, "root@example.com", "Rita Root").await;
    stagepass::db::users::set_admin(&mut *app.conn().await, "root@example.com", true)
        .await
        .unwrap()
        .unwrap();

    let b = Browser::start().await;
    b.resize(1280, 900).await;
    b.sign_in(&app.url, "root@example.com", PASSWORD).await;
    b.goto(&format!("{}/admin", app.url)).await;
    b.wait_for("#live-now").await;
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pages/admin.png");
    b.screenshot(&shot).await;
    crate::util::browser::copy_to_docs(&shot, "admin.png");

    b.goto(&format!("{}/admin/users?q=viewer", app.url)).await;
    let row = format!("#user-{viewer}");
    b.click(&format!("{row} .suspend summary")).await;
    b.wait_for(&format!("#suspend-reason-{viewer}"))
        .await
        .send_keys("Spam in chat")
        .await
        .unwrap();
    b.click(&format!("{row} .suspend-form [type=submit]")).await;
    assert!(b.accept_dialog().await.contains("viewer@example.com"));
    b.wait_for(&format!("{row}[data-state=suspended] .form-success"))
        .await;
    assert!(
        b.text(&format!("{row} .suspended-reason"))
            .await
            .contains("Spam in chat")
    );

    b.resize(390, 844).await;
    for path in [
        "/admin",
        "/admin/applications",
        "/admin/users",
        "/admin/channels",
        "/admin/audit",
    ] {
        b.goto(&format!("{}{path}", app.url)).await;
        b.wait_for("#admin-nav").await;
        let name = path.trim_matches('/').replace('/', "-");
        b.screenshot(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/pages")
                .join(format!("phone-{name}.png")),
        )
        .await;
        let seen = b.js(TOO_WIDE).await;
        assert_eq!(seen["overflow"], 0, "{path} scrolls sideways: {seen}");
        assert_eq!(seen["wide"], serde_json::json!([]), "{path}: {seen}");
    }
    b.close().await;
}
