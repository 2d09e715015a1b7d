//! The owner's grants: the filtered list, comps by email, extending, revoking
//! (which removes a watching viewer from the real LiveKit room), who may do
//! any of it, and the audit trail.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::StreamId;
use stagepass::db::schema::{access_grants, audit_log};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::builders::pass;
use crate::util::builders::{self, GrantBuilder, LiveKitClient, Studio};
use crate::util::{Browser, Page, TestApp};

#[derive(Queryable, Debug)]
struct Stored {
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
}

async fn stored(app: &TestApp, id: i64) -> Stored {
    access_grants::table
        .find(id)
        .select((
            access_grants::expires_at,
            access_grants::revoked_at,
            access_grants::revoked_reason,
        ))
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn audit(app: &TestApp, action: &str, subject: i64) -> Vec<(Option<i64>, serde_json::Value)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .filter(audit_log::subject.eq(subject.to_string()))
        .select((audit_log::actor_id, audit_log::details))
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

/// The grant ids a list page shows, top to bottom.
fn listed(page: &Page) -> Vec<i64> {
    let html = page.html();
    let rows = scraper::Selector::parse(".grant-row").unwrap();
    html.select(&rows)
        .map(|r| r.value().attr("data-grant-id").unwrap().parse().unwrap())
        .collect()
}

async fn token_status(browser: &Browser, stream: &Stream) -> (StatusCode, serde_json::Value) {
    let page = browser
        .post_htmx(&format!("/s/{}/token", stream.id), &[])
        .await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or(serde_json::Value::Null),
    )
}

/// How many participants LiveKit's own RoomService sees in the stream's room.
async fn in_room(app: &TestApp, stream: &Stream) -> usize {
    app.state
        .livekit
        .rooms
        .list_participants(&stream.room_name)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_grants_page_lists_and_filters_by_state_holder_and_pass() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("grants-channel", AccessKind::Pass).await;
    let season = pass(&app, &channel, "Season pass", None, 720).await;
    let ticket = pass(&app, &channel, "Friday ticket", Some(stream.id), 24).await;
    let (_, alice) = builders::user(&app, "alice@example.com", "Alice").await;
    let (_, bob) = builders::user(&app, "bob@example.com", "Bob").await;
    let (_, carol) = builders::user(&app, "carol@example.com", "Carol").await;
    let (_, dave) = builders::user(&app, "dave@example.com", "Dave").await;

    let active = GrantBuilder::new(&app, alice, channel.id)
        .pass(Some(season))
        .starts_in("-1 hour")
        .expires_in("1 day")
        .create()
        .await;
    let expired = GrantBuilder::new(&app, bob, channel.id)
        .stream(Some(stream.id))
        .pass(Some(ticket))
        .starts_in("-2 days")
        .expires_in("-1 day")
        .create()
        .await;
    let upcoming = GrantBuilder::new(&app, carol, channel.id)
        .starts_in("1 day")
        .expires_in("2 days")
        .create()
        .await;
    let revoked = GrantBuilder::new(&app, dave, channel.id)
        .pass(Some(season))
        .starts_in("-1 hour")
        .expires_in("1 day")
        .create()
        .await;
    builders::revoke(&app, revoked).await;
    // Another channel's grant never shows here.
    let (_, them) = builders::user(&app, "them@example.com", "Them").await;
    let theirs = builders::channel(&app, them, "theirs").await;
    let foreign = GrantBuilder::new(&app, alice, theirs.id)
        .starts_in("-1 hour")
        .expires_in("1 day")
        .create()
        .await;

    let base = format!("/studio/channels/{}/grants", channel.handle);
    let page = owner.get(&base).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        listed(&page),
        vec![revoked, upcoming, expired, active],
        "newest first"
    );
    assert!(!listed(&page).contains(&foreign));
    let row = |page: &Page, id: i64| page.text_of(&format!("#grant-{id}"));
    let alice_row = row(&page, active);
    for part in [
        "Alice",
        "alice@example.com",
        "Season pass",
        "whole channel",
        "purchase",
        "Active",
    ] {
        assert!(alice_row.contains(part), "{part} in {alice_row}");
    }
    let bob_row = row(&page, expired);
    for part in ["Friday ticket", "Friday session", "Expired"] {
        assert!(bob_row.contains(part), "{part} in {bob_row}");
    }
    let carol_row = row(&page, upcoming);
    assert!(
        carol_row.contains("comp") && carol_row.contains("Upcoming"),
        "{carol_row}"
    );
    let dave_row = row(&page, revoked);
    assert!(
        dave_row.contains("Revoked") && dave_row.contains("test"),
        "{dave_row}"
    );
    assert!(
        !page.has(&format!("#grant-{revoked} .revoke-form")),
        "revocation is final"
    );
    assert!(page.has(&format!("#grant-{active} .revoke-form")));

    for (query, expected) in [
        ("?status=active", vec![active]),
        ("?status=expired", vec![expired]),
        ("?status=upcoming", vec![upcoming]),
        ("?status=revoked", vec![revoked]),
        ("?user=ALI", vec![active]),
        ("?user=example.com&status=active", vec![active]),
        (&format!("?pass={season}"), vec![revoked, active]),
        (&format!("?pass={ticket}"), vec![expired]),
        (&format!("?pass={season}&status=active"), vec![active]),
        ("?user=nobody", vec![]),
        // Search text is text, not a pattern.
        ("?user=%25", vec![]),
        // Nonsense filters are ignored, not errors.
        (
            "?status=bogus&pass=x&page=-3",
            vec![revoked, upcoming, expired, active],
        ),
    ] {
        let page = owner.get(&format!("{base}{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert_eq!(listed(&page), expected, "{query}");
    }
    let page = owner.get(&format!("{base}?status=revoked")).await;
    assert_eq!(
        page.attr("#filter-status option[selected]", "value")
            .as_deref(),
        Some("revoked")
    );
    let page = owner.get(&format!("{base}?user=nobody")).await;
    assert!(page.has("#no-grants"));

    // htmx gets the list alone.
    let fragment = owner.get_htmx(&format!("{base}?status=active")).await;
    assert!(
        fragment
            .text
            .trim_start()
            .starts_with("<section id=\"grants\""),
        "{}",
        fragment.text
    );
    assert_eq!(listed(&fragment), vec![active]);

    // 50 a page.
    diesel::sql_query(
        "INSERT INTO access_grants (user_id, channel_id, source, starts_at, expires_at) \
         SELECT $1, $2, 'comp', now() - interval '1 hour', now() + interval '1 hour' FROM generate_series(1, 50)",
    )
    .bind::<BigInt, _>(carol.0)
    .bind::<BigInt, _>(channel.id.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    let first = owner.get(&base).await;
    assert_eq!(listed(&first).len(), 50);
    assert!(first.text_of("#grants-count").contains("54 grants"));
    let next = first.attr("a[rel=next]", "href").expect("a next page");
    let second = owner.get(&next).await;
    assert_eq!(listed(&second), vec![revoked, upcoming, expired, active]);
    assert!(second.has("a[rel=prev]") && !second.has("a[rel=next]"));
    // Past the end: the last page.
    let beyond = owner.get(&format!("{base}?page=9")).await;
    assert_eq!(listed(&beyond), vec![revoked, upcoming, expired, active]);
}

#[tokio::test]
async fn a_comp_by_email_lets_them_watch_the_live_stream() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("grants-channel", AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Vera Viewer").await;
    let (status, _) = token_status(&viewer, &stream).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no grant, no token");

    let base = format!("/studio/channels/{}/grants", channel.handle);
    let stream_id = stream.id.to_string();
    let page = owner
        .submit(
            &base,
            "#comp-form",
            &[
                ("email", " Viewer@Example.com "),
                ("amount", "2"),
                ("unit", "hours"),
                ("scope", &stream_id),
                ("includes_replays", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), Some(base.clone()));
    let list = owner.follow(&page).await;
    assert!(
        list.text_of("#alerts")
            .contains("Vera Viewer can watch that stream until")
    );

    let (id, stream_of, source, starts, expires, replays): (
        i64,
        Option<StreamId>,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        bool,
    ) = access_grants::table
        .filter(access_grants::user_id.eq(viewer_id))
        .select((
            access_grants::id,
            access_grants::stream_id,
            access_grants::source,
            access_grants::starts_at,
            access_grants::expires_at,
            access_grants::includes_replays,
        ))
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        (stream_of, source.as_str(), replays),
        (Some(stream.id), "comp", true)
    );
    assert_eq!(expires - starts, Duration::hours(2));
    assert!((starts - Utc::now()).num_seconds().abs() < 30);
    assert_eq!(listed(&list), vec![id]);

    let (status, body) = token_status(&viewer, &stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["token"].as_str().unwrap().starts_with("eyJ"));

    let entries = audit(&app, "grant.comped", id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1["user_id"], viewer_id.0);

    // What can go wrong, next to the field.
    let (_, moderator) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, moderator).await;
    let (_, them) = builders::user(&app, "them@example.com", "Them").await;
    let theirs = builders::channel(&app, them, "theirs").await;
    let their_stream = builders::stream(&app, &theirs, AccessKind::Pass)
        .await
        .id
        .to_string();
    for (fields, field, message) in [
        (
            [
                ("email", "nobody@example.com"),
                ("amount", "1"),
                ("unit", "days"),
                ("scope", ""),
            ],
            "#comp-email-error",
            "No account uses that email",
        ),
        (
            [
                ("email", ""),
                ("amount", "1"),
                ("unit", "days"),
                ("scope", ""),
            ],
            "#comp-email-error",
            "Enter the email",
        ),
        (
            [
                ("email", "mod@example.com"),
                ("amount", "1"),
                ("unit", "days"),
                ("scope", ""),
            ],
            "#comp-email-error",
            "on this channel's team",
        ),
        (
            [
                ("email", "viewer@example.com"),
                ("amount", "0"),
                ("unit", "hours"),
                ("scope", ""),
            ],
            "#comp-duration-error",
            "between 1 hour and 366 days",
        ),
        (
            [
                ("email", "viewer@example.com"),
                ("amount", "367"),
                ("unit", "days"),
                ("scope", ""),
            ],
            "#comp-duration-error",
            "between 1 hour and 366 days",
        ),
        (
            [
                ("email", "viewer@example.com"),
                ("amount", "1"),
                ("unit", "days"),
                ("scope", their_stream.as_str()),
            ],
            "#comp-scope-error",
            "one of its streams",
        ),
    ] {
        let page = owner.submit(&base, "#comp-form", &fields).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(
            page.text_of(field).contains(message),
            "{fields:?}: {}",
            page.text
        );
        assert_eq!(
            page.attr("#comp-email", "value").as_deref(),
            Some(fields[0].1.trim())
        );
    }
    let fragment = owner
        .post_htmx(
            &base,
            &[
                ("email", "nobody@example.com"),
                ("amount", "1"),
                ("unit", "days"),
            ],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        fragment
            .text
            .trim_start()
            .starts_with("<section id=\"comp\"")
    );
    let count: i64 = access_grants::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(count, 1, "no grant from a refused form");

    // A second comp for the same scope adds time after the first instead of overlapping.
    let page = owner
        .submit(
            &base,
            "#comp-form",
            &[
                ("email", "viewer@example.com"),
                ("amount", "1"),
                ("unit", "days"),
                ("scope", &stream_id),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let latest: (DateTime<Utc>, DateTime<Utc>) = access_grants::table
        .filter(access_grants::user_id.eq(viewer_id))
        .order(access_grants::id.desc())
        .select((access_grants::starts_at, access_grants::expires_at))
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(latest.0, expires);
    assert_eq!(latest.1, expires + Duration::days(1));
}

#[tokio::test]
async fn extending_moves_the_end_and_revoking_is_final() {
    let Studio {
        app,
        owner,
        channel,
        ..
    } = Studio::spawn("grants-channel", AccessKind::Pass).await;
    let (_, viewer) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let id = GrantBuilder::new(&app, viewer, channel.id)
        .starts_in("-1 hour")
        .expires_in("1 hour")
        .create()
        .await;
    let base = format!("/studio/channels/{}/grants", channel.handle);
    let row = format!("#grant-{id}");
    let before = stored(&app, id).await.expires_at;

    // By an amount: from the current end. The filters of the view come back.
    let page = owner
        .submit(
            &format!("{base}?status=active"),
            &format!("{row} .extend-form"),
            &[("amount", "3"), ("unit", "hours"), ("until", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), Some(format!("{base}?status=active")));
    assert!(
        owner
            .follow(&page)
            .await
            .text_of("#alerts")
            .contains("grant now ends")
    );
    let after = stored(&app, id).await.expires_at;
    assert_eq!(after - before, Duration::hours(3));
    let entries = audit(&app, "grant.extended", id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1["user_id"], viewer.0);
    let old: DateTime<Utc> =
        serde_json::from_value(entries[0].1["old_expires_at"].clone()).unwrap();
    let new: DateTime<Utc> =
        serde_json::from_value(entries[0].1["new_expires_at"].clone()).unwrap();
    assert_eq!((old, new), (before, after));

    // To a date.
    let until = (after + Duration::days(10))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let page = owner
        .submit(&base, &format!("{row} .extend-form"), &[("until", &until)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(
        stored(&app, id)
            .await
            .expires_at
            .format("%Y-%m-%dT%H:%M")
            .to_string(),
        until
    );

    // Backwards, or nonsense: refused next to the form, nothing changes.
    let end = stored(&app, id).await.expires_at;
    let past = (Utc::now() - Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    for fields in [
        vec![("until", past.as_str())],
        vec![("amount", "0"), ("unit", "hours"), ("until", "")],
        vec![("amount", "400"), ("unit", "days"), ("until", "")],
    ] {
        let page = owner
            .submit(&base, &format!("{row} .extend-form"), &fields)
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(
            page.has(&format!("{row} .extend-error")),
            "{fields:?}: {}",
            page.text
        );
        assert_eq!(
            page.attr(&format!("{row} details[open] form"), "class")
                .as_deref(),
            Some("form extend-form")
        );
    }
    assert_eq!(stored(&app, id).await.expires_at, end);

    // htmx: the row alone, saying what happened.
    let fragment = owner
        .post_htmx(
            &format!("/studio/grants/{id}/extend"),
            &[("amount", "1"), ("unit", "days")],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::OK, "{}", fragment.text);
    assert!(
        fragment
            .text
            .trim_start()
            .starts_with(&format!("<tr id=\"grant-{id}\""))
    );
    assert!(fragment.text.contains("grant now ends"));
    assert_eq!(stored(&app, id).await.expires_at, end + Duration::days(1));

    // Revoking needs a reason of at most 200 characters.
    for (reason, message) in [("  ", "Say why"), (&"x".repeat(201)[..], "at most 200")] {
        let page = owner
            .submit(&base, &format!("{row} .revoke-form"), &[("reason", reason)])
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            page.text_of(&format!("{row} .reason-error"))
                .contains(message),
            "{}",
            page.text
        );
        assert!(stored(&app, id).await.revoked_at.is_none());
    }
    let page = owner
        .submit(
            &base,
            &format!("{row} .revoke-form"),
            &[("reason", "Chargeback")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let gone = stored(&app, id).await;
    assert!(gone.revoked_at.is_some());
    assert_eq!(gone.revoked_reason.as_deref(), Some("Chargeback"));
    let entries = audit(&app, "grant.revoked", id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1["reason"], "Chargeback");
    assert_eq!(entries[0].1["user_id"], viewer.0);

    // Final: neither revoked again nor extended.
    let again = owner
        .post_htmx(
            &format!("/studio/grants/{id}/revoke"),
            &[("reason", "Twice")],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text.contains("already revoked"));
    let extended = owner
        .post_htmx(
            &format!("/studio/grants/{id}/extend"),
            &[("amount", "1"), ("unit", "days")],
        )
        .await;
    assert_eq!(extended.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(extended.text.contains("revocation is final"));
    assert_eq!(
        stored(&app, id).await.revoked_reason.as_deref(),
        Some("Chargeback")
    );
    assert_eq!(audit(&app, "grant.revoked", id).await.len(), 1);
}

#[tokio::test]
async fn revoking_removes_a_watching_viewer_from_the_room_and_refuses_new_tokens() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("grants-channel", AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let id = GrantBuilder::new(&app, viewer_id, channel.id)
        .starts_in("-1 minute")
        .expires_in("1 hour")
        .create()
        .await;
    let (status, body) = token_status(&viewer, &stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        40,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    // Wait until the app knows they are there (participant_joined webhook).
    let deadline = Instant::now() + StdDuration::from_secs(15);
    loop {
        let present: i64 = stagepass::db::schema::presence::table
            .filter(stagepass::db::schema::presence::user_id.eq(viewer_id))
            .filter(stagepass::db::schema::presence::left_at.is_null())
            .count()
            .get_result(&mut *app.conn().await)
            .await
            .unwrap();
        if present > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer's presence was recorded"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }

    assert_eq!(
        in_room(&app, &stream).await,
        1,
        "watching until the revocation"
    );

    let page = owner
        .submit(
            &format!("/studio/channels/{}/grants", channel.handle),
            &format!("#grant-{id} .revoke-form"),
            &[("reason", "Shared their login")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let revoked = Instant::now();
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let took = revoked.elapsed();
    eprintln!("removed {took:?} after the revocation");
    assert!(
        took < StdDuration::from_secs(5),
        "removed within seconds: {took:?}"
    );

    let (status, body) = token_status(&viewer, &stream).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Your pass has ended")
    );
}

#[tokio::test]
async fn only_the_owner_manages_grants() {
    let Studio {
        app,
        owner,
        channel,
        ..
    } = Studio::spawn("grants-channel", AccessKind::Pass).await;
    let (_, viewer) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let id = GrantBuilder::new(&app, viewer, channel.id)
        .starts_in("-1 hour")
        .expires_in("1 hour")
        .create()
        .await;
    let before = stored(&app, id).await.expires_at;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let (other_owner, other_id) = builders::user(&app, "other@example.com", "Other Owner").await;
    let theirs = builders::channel(&app, other_id, "theirs").await;
    let base = format!("/studio/channels/{}/grants", channel.handle);

    for (who, browser) in [
        ("moderator", &moderator),
        ("stranger", &stranger),
        ("another channel's owner", &other_owner),
    ] {
        let page = browser.get(&base).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}");
        assert!(
            !page.text.contains("viewer@example.com"),
            "{who} sees no holder"
        );
        let page = browser
            .post_htmx(
                &base,
                &[
                    ("email", "viewer@example.com"),
                    ("amount", "1"),
                    ("unit", "days"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}");
    }
    // The moderator knows the channel's grants exist: 403. For anyone else a
    // grant of a channel they are not on is not there at all: 404.
    for (who, browser, status) in [
        ("moderator", &moderator, StatusCode::FORBIDDEN),
        ("stranger", &stranger, StatusCode::NOT_FOUND),
        (
            "another channel's owner",
            &other_owner,
            StatusCode::NOT_FOUND,
        ),
    ] {
        let extend = browser
            .post_htmx(
                &format!("/studio/grants/{id}/extend"),
                &[("amount", "30"), ("unit", "days")],
            )
            .await;
        assert_eq!(extend.status, status, "{who} extend");
        let revoke = browser
            .post_htmx(
                &format!("/studio/grants/{id}/revoke"),
                &[("reason", "mine now")],
            )
            .await;
        assert_eq!(revoke.status, status, "{who} revoke");
    }
    let after = stored(&app, id).await;
    assert_eq!(after.expires_at, before);
    assert!(after.revoked_at.is_none());

    // The other owner's own grants are theirs; this owner can't touch them either.
    let their_grant = GrantBuilder::new(&app, viewer, theirs.id)
        .starts_in("-1 hour")
        .expires_in("1 hour")
        .create()
        .await;
    let page = owner
        .post_htmx(
            &format!("/studio/grants/{their_grant}/revoke"),
            &[("reason", "nope")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(stored(&app, their_grant).await.revoked_at.is_none());

    let anonymous = app.anonymous().get(&base).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.location().unwrap().starts_with("/signin"));
    assert_eq!(
        owner.get("/studio/channels/nope/grants").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        owner
            .post_htmx("/studio/grants/999999/revoke", &[("reason", "x")])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        audit_log::table
            .filter(audit_log::action.like("grant.%"))
            .count()
            .get_result::<i64>(&mut *app.conn().await)
            .await
            .unwrap(),
        0,
        "nothing happened, nothing logged"
    );
}
