//! Followers' notifications: going live (from the studio against the real
//! LiveKit, and from OBS through the stand-in's ingress) and scheduling
//! notify followers — once, not the channel's team, not strangers; the bell
//! counts unread ones on every page; the list pages, opens, marks read.

use std::time::{Duration, Instant};

use chrono::{Datelike, Timelike, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::notifications;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::{self, Status};
use stagepass::db::{ChannelId, StreamId, UserId};

use crate::util::builders;
use crate::util::{Browser, Page, TestApp, standin};

/// A follow, as the discover page's button makes it.
pub async fn follow(app: &TestApp, user: UserId, channel: ChannelId) {
    diesel::sql_query(
        "INSERT INTO follows (user_id, channel_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(channel.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}

/// (id, kind, read) of `user`'s notifications, oldest first.
async fn rows(app: &TestApp, user: UserId) -> Vec<(i64, String, bool)> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .order(notifications::id)
        .select((
            notifications::id,
            notifications::kind,
            notifications::read_at.is_not_null(),
        ))
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

/// The bell's number and label on a page, or None when it is hidden.
fn bell(page: &Page) -> (String, Option<String>) {
    let label = page
        .attr("#notification-bell", "aria-label")
        .expect("a bell for signed-in users");
    let count = page.text_of("[data-testid=notification-count]");
    let hidden = page
        .attr("[data-testid=notification-count]", "hidden")
        .is_some();
    (label, (!hidden).then_some(count))
}

async fn go_live(owner: &Browser, stream: StreamId) {
    let page = builders::go_live(owner, stream).await;
    assert_eq!(
        page.header("hx-redirect"),
        Some(format!("/studio/streams/{stream}/broadcast"))
    );
}

#[tokio::test]
async fn a_follower_is_notified_once_when_the_channel_goes_live_and_marks_it_read() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let (stranger, stranger_id) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let (_moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    let channel = builders::channel(&app, owner_id, "bell-channel").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    for who in [fan_id, moderator_id, owner_id] {
        follow(&app, who, channel.id).await;
    }

    let before = fan.get("/").await;
    assert_eq!(
        bell(&before),
        ("Notifications, none unread".to_owned(), None),
        "no bell number before anything happened"
    );
    assert!(
        !app.anonymous().get("/").await.has("#notification-bell"),
        "signed-out visitors have no bell"
    );

    go_live(&owner, stream.id).await;
    let live = streams::find(&mut *app.conn().await, stream.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.status, Status::Live);
    let listed = app
        .state
        .livekit
        .rooms
        .list_rooms(vec![stream.room_name.clone()])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "the real LiveKit room exists");

    // The follower's next page shows 1 on the bell.
    let next = fan.get("/passes").await;
    assert_eq!(
        bell(&next),
        ("Notifications, 1 unread".to_owned(), Some("1".to_owned()))
    );
    let list = fan.get("/notifications").await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.texts("#notification-list > li");
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].contains("bell-channel channel"), "{}", items[0]);
    assert!(items[0].contains("went live"), "{}", items[0]);
    assert!(items[0].contains("Friday session"), "{}", items[0]);
    assert!(items[0].contains("New"), "{}", items[0]);

    // Nobody else hears: not a stranger, not the team following their own channel.
    for who in [stranger_id, moderator_id, owner_id] {
        assert!(rows(&app, who).await.is_empty());
    }
    assert_eq!(bell(&stranger.get("/").await).1, None);
    assert!(
        stranger
            .get("/notifications")
            .await
            .has("#notifications-empty")
    );

    // Going live again notifies nobody twice.
    go_live(&owner, stream.id).await;
    assert_eq!(rows(&app, fan_id).await.len(), 1);

    // The bell's own fragment (what it polls) says the same.
    let polled = fan.get_htmx("/notifications/bell").await;
    assert_eq!(polled.status, StatusCode::OK);
    assert_eq!(bell(&polled).1.as_deref(), Some("1"));
    assert_eq!(
        app.anonymous().get_htmx("/notifications/bell").await.status,
        StatusCode::NO_CONTENT
    );

    // Mark read (htmx): the item comes back read, the bell is told to refresh.
    let (id, kind, read) = rows(&app, fan_id).await.remove(0);
    assert_eq!((kind.as_str(), read), ("live", false));
    let marked = fan
        .post_htmx(&format!("/notifications/{id}/read"), &[])
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    assert_eq!(
        marked.header("hx-trigger").as_deref(),
        Some("notifications-changed")
    );
    assert_eq!(
        marked
            .attr(&format!("#notification-{id}"), "data-read")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        bell(&fan.get("/").await),
        ("Notifications, none unread".to_owned(), None)
    );
    // Someone else's notification is not theirs to mark.
    let other = stranger
        .post_htmx(&format!("/notifications/{id}/read"), &[])
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn going_live_from_obs_notifies_followers_too() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let channel = builders::channel(&app, owner_id, "obs-bell").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    follow(&app, fan_id, channel.id).await;
    let studio = format!("/studio/streams/{}", stream.id);
    let created = owner
        .submit(&studio, "#ingress-create-form", &[("kind", "rtmp")])
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let ingress = streams::ingress_of(&mut *app.conn().await, stream.id)
        .await
        .unwrap()
        .unwrap();
    standin::ingress_goes_live(&ingress.ingress_id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while rows(&app, fan_id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no notification after OBS went live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&app, fan_id).await[0].1, "live");
    assert_eq!(bell(&fan.get("/").await).1.as_deref(), Some("1"));
}

/// `<input type="datetime-local">` value `days` from now (UTC, whole minutes).
fn in_days(days: i64) -> (String, String) {
    let t = Utc::now() + chrono::Duration::days(days);
    (
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        ),
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute()
        ),
    )
}

#[tokio::test]
async fn scheduling_notifies_followers_and_a_new_time_makes_it_unread_again() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let (_stranger, stranger_id) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let channel = builders::channel(&app, owner_id, "sched-channel").await;
    follow(&app, fan_id, channel.id).await;

    // A draft without a schedule tells nobody.
    let new_page = format!("/studio/channels/{}/streams/new", channel.handle);
    let quiet = owner
        .submit(
            &new_page,
            "#stream-form",
            &[
                ("title", "Unannounced"),
                ("access", "pass"),
                ("scheduled_at", ""),
            ],
        )
        .await;
    assert_eq!(quiet.status, StatusCode::SEE_OTHER, "{}", quiet.text);
    assert!(rows(&app, fan_id).await.is_empty());

    let (when, label) = in_days(2);
    let created = owner
        .submit(
            &new_page,
            "#stream-form",
            &[
                ("title", "Album launch"),
                ("access", "public"),
                ("scheduled_at", &when),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let studio = created.location().unwrap();
    let listed = rows(&app, fan_id).await;
    assert_eq!(listed.len(), 1);
    let (id, kind, read) = listed[0].clone();
    assert_eq!((kind.as_str(), read), ("scheduled", false));
    assert!(rows(&app, stranger_id).await.is_empty());
    assert!(rows(&app, owner_id).await.is_empty());

    let list = fan.get("/notifications").await;
    let item = list.text_of(&format!("#notification-{id}"));
    assert!(item.contains("scheduled a stream for"), "{item}");
    assert!(item.contains(&label), "{item} should say {label}");
    assert!(item.contains("Album launch"), "{item}");
    assert_eq!(bell(&list).1.as_deref(), Some("1"));

    // Clicking it through marks it read and opens the watch page.
    let opened = fan
        .submit(
            "/notifications",
            &format!("#notification-{id} form.notification-open"),
            &[],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.text);
    let stream_id = studio.trim_start_matches("/studio/streams/");
    assert_eq!(opened.location(), Some(format!("/s/{stream_id}")));
    assert!(rows(&app, fan_id).await[0].2, "read after opening");

    // Saving without changing the time tells nobody anything.
    let same = owner
        .submit(
            &studio,
            "#stream-form",
            &[
                ("title", "Album launch party"),
                ("access", "public"),
                ("scheduled_at", &when),
            ],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "{}", same.text);
    assert!(rows(&app, fan_id).await[0].2, "still read");

    // A new time: a new notification in its place, unread, with the new time.
    let (later, later_label) = in_days(3);
    let moved = owner
        .submit(
            &studio,
            "#stream-form",
            &[
                ("title", "Album launch party"),
                ("access", "public"),
                ("scheduled_at", &later),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.text);
    let listed = rows(&app, fan_id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].1.as_str(), listed[0].2), ("scheduled", false));
    assert!(listed[0].0 > id, "a new id: {listed:?}");
    let id = listed[0].0;
    let list = fan.get("/notifications").await;
    assert!(
        list.text_of(&format!("#notification-{id}"))
            .contains(&later_label)
    );
    assert_eq!(bell(&list).1.as_deref(), Some("1"));

    // Taking the schedule away withdraws the announcement.
    let unscheduled = owner
        .submit(
            &studio,
            "#stream-form",
            &[
                ("title", "Album launch party"),
                ("access", "public"),
                ("scheduled_at", ""),
            ],
        )
        .await;
    assert_eq!(
        unscheduled.status,
        StatusCode::SEE_OTHER,
        "{}",
        unscheduled.text
    );
    assert!(rows(&app, fan_id).await.is_empty());
}

#[tokio::test]
async fn the_list_pages_newest_first_and_mark_all_read_clears_the_bell() {
    let app = TestApp::spawn().await;
    let (_owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let channel = builders::channel(&app, owner_id, "busy-channel").await;
    let mut ids = Vec::new();
    for _ in 0..25 {
        let stream = builders::stream(&app, &channel, AccessKind::Public).await;
        diesel::sql_query(
            "INSERT INTO notifications (user_id, kind, channel_id, stream_id) VALUES ($1, 'live', $2, $3)",
        )
        .bind::<BigInt, _>(fan_id.0)
        .bind::<BigInt, _>(channel.id.0)
        .bind::<BigInt, _>(stream.id.0)
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
        ids.push(rows(&app, fan_id).await.last().unwrap().0);
    }

    let first = fan.get("/notifications").await;
    assert_eq!(bell(&first).1.as_deref(), Some("25"));
    let shown: Vec<String> = first
        .html()
        .select(&scraper::Selector::parse("#notification-list > li").unwrap())
        .map(|li| li.value().id().unwrap().to_owned())
        .collect();
    let newest: Vec<String> = ids
        .iter()
        .rev()
        .take(20)
        .map(|i| format!("notification-{i}"))
        .collect();
    assert_eq!(shown, newest, "newest first, 20 a page");
    let older = first
        .attr("#notifications-older", "href")
        .expect("a link to older ones");
    let second = fan.get(&older).await;
    assert_eq!(second.texts("#notification-list > li").len(), 5);
    assert!(!second.has("#notifications-older"));

    // Mark all read (htmx): the list comes back read and the bell is told.
    let all = fan.post_htmx("/notifications/read-all", &[]).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(
        all.header("hx-trigger").as_deref(),
        Some("notifications-changed")
    );
    assert!(all.has("#notifications"));
    assert!(!all.has("#mark-all-read-form"));
    assert!(!all.has("[data-read=false]"));
    assert!(rows(&app, fan_id).await.iter().all(|r| r.2));
    assert_eq!(bell(&fan.get("/").await).1, None);
}

#[tokio::test]
async fn the_fan_out_tells_each_follower_once_per_stream_even_when_run_twice() {
    let app = TestApp::spawn().await;
    let (_owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (_fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let channel = builders::channel(&app, owner_id, "twice").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    follow(&app, fan_id, channel.id).await;
    // The lifecycle announces only the draft → live step; a retried fan-out
    // (or two racing ones) relies on the unique constraint.
    let mut conn = app.conn().await;
    let first = stagepass::notify::stream_live(&mut conn, stream.id)
        .await
        .unwrap();
    let second = stagepass::notify::stream_live(&mut conn, stream.id)
        .await
        .unwrap();
    drop(conn);
    assert_eq!((first, second), (1, 0));
    assert_eq!(rows(&app, fan_id).await.len(), 1);
}

#[tokio::test]
async fn a_rescheduled_stream_comes_first_and_mark_all_read_spares_what_came_after() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let channel = builders::channel(&app, owner_id, "moving").await;
    follow(&app, fan_id, channel.id).await;
    let new_page = format!("/studio/channels/{}/streams/new", channel.handle);
    let (when, _) = in_days(2);
    let mut studios = Vec::new();
    for title in ["First show", "Second show"] {
        let created = owner
            .submit(
                &new_page,
                "#stream-form",
                &[
                    ("title", title),
                    ("access", "public"),
                    ("scheduled_at", &when),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
        studios.push(created.location().unwrap());
    }
    let texts = |page: &Page| page.texts("#notification-list > li");
    let list = fan.get("/notifications").await;
    assert!(
        texts(&list)[0].contains("Second show"),
        "{:?}",
        texts(&list)
    );

    // The first show moves: its announcement is news again, at the top.
    let (later, later_label) = in_days(4);
    let moved = owner
        .submit(
            &studios[0],
            "#stream-form",
            &[
                ("title", "First show"),
                ("access", "public"),
                ("scheduled_at", &later),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.text);
    let shown = fan.get("/notifications").await;
    let items = texts(&shown);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items[0].contains("First show") && items[0].contains(&later_label),
        "{items:?}"
    );

    // Someone else's notification does not open for them (and stays unread).
    let first_id = rows(&app, fan_id).await.last().unwrap().0;
    let other = stranger
        .post_htmx(&format!("/notifications/{first_id}/open"), &[])
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(rows(&app, fan_id).await.iter().all(|r| !r.2));

    // A notification arrives after the page was shown; "Mark all read" on
    // that page marks only what it showed.
    let up_to = shown
        .attr("#mark-all-read-form input[name=up_to]", "value")
        .expect("the newest id the page knew");
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    stagepass::notify::stream_live(&mut *app.conn().await, stream.id)
        .await
        .unwrap();
    let marked = fan
        .post_htmx("/notifications/read-all", &[("up_to", &up_to)])
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    let after = rows(&app, fan_id).await;
    assert_eq!(
        after.iter().map(|r| r.2).collect::<Vec<_>>(),
        [true, true, false],
        "{after:?}"
    );
    assert_eq!(marked.texts("[data-read=false]").len(), 1);
    assert_eq!(bell(&fan.get("/").await).1.as_deref(), Some("1"));
}
