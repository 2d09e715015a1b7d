//! Redeem codes: the owner generates and exports them; viewers redeem them —
//! once each, atomically (50 people racing for one single-use code get one
//! grant between them), with a clear word for every way it can fail.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use reqwest::StatusCode;
use stagepass::db::channels::Channel;
use stagepass::db::schema::{
    access_grants, access_passes, audit_log, redeem_codes, redemptions, streams,
};
use stagepass::db::streams::AccessKind;
use stagepass::db::{PassId, StreamId, UserId};

use crate::util::builders::{self, Studio, pass};
use crate::util::{Browser, TestApp};

/// A fixed-window pass (an event) of the whole channel.
async fn window_pass(
    app: &TestApp,
    channel: &Channel,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> PassId {
    diesel::insert_into(access_passes::table)
        .values((
            access_passes::channel_id.eq(channel.id),
            access_passes::name.eq(name),
            access_passes::price_cents.eq(0),
            access_passes::currency.eq("EUR"),
            access_passes::scope.eq("channel"),
            access_passes::window_starts_at.eq(from),
            access_passes::window_ends_at.eq(to),
        ))
        .returning(access_passes::id)
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

/// Codes for a pass, made the way the generate form makes them.
async fn codes_for(app: &TestApp, pass: PassId, count: usize, uses: i32) -> Vec<String> {
    stagepass::db::codes::generate(&mut *app.conn().await, pass, count, uses, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.code)
        .collect()
}

#[derive(Queryable, Debug)]
struct GrantRow {
    user_id: UserId,
    stream_id: Option<StreamId>,
    pass_id: Option<PassId>,
    source: String,
    includes_replays: bool,
    starts_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

async fn grants_of(app: &TestApp, user: UserId) -> Vec<GrantRow> {
    access_grants::table
        .filter(access_grants::user_id.eq(user))
        .select((
            access_grants::user_id,
            access_grants::stream_id,
            access_grants::pass_id,
            access_grants::source,
            access_grants::includes_replays,
            access_grants::starts_at,
            access_grants::expires_at,
        ))
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn grant_count(app: &TestApp) -> i64 {
    access_grants::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn uses_of(app: &TestApp, code: &str) -> i32 {
    redeem_codes::table
        .filter(redeem_codes::code.eq(code))
        .select(redeem_codes::uses)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

/// Redeems with a plain form post (CSRF token as a field), as a page without htmx would.
pub async fn redeem(browser: &Browser, code: &str, return_to: &str) -> crate::util::Page {
    let token = browser.csrf_token().await;
    browser
        .post_raw(
            "/redeem",
            &[
                ("csrf_token", &token),
                ("code", code),
                ("return_to", return_to),
            ],
        )
        .await
}

/// The flash the next page shows.
async fn flash(browser: &Browser) -> String {
    browser.get("/").await.text_of("#alerts")
}

#[tokio::test]
async fn owners_generate_codes_see_them_and_download_them_as_csv() {
    let Studio {
        app,
        owner,
        channel,
        ..
    } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let pass = pass(&app, &channel, "Season pass", None, 24).await;
    let page_path = format!("/studio/passes/{pass}/codes");

    let page = owner.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text_of("h1").contains("Season pass"));
    assert!(page.has("#no-codes"));

    let done = owner
        .submit(
            &page_path,
            "#generate-form",
            &[("count", "5"), ("uses", "1"), ("expires_at", "")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location().as_deref(), Some(page_path.as_str()));
    let page = owner.follow(&done).await;
    assert!(
        page.text_of("#alerts")
            .contains("5 codes generated for Season pass")
    );
    let shown = page.texts(".code-row .code");
    assert_eq!(shown.len(), 5);

    let rows: Vec<(String, i32, i32, Option<DateTime<Utc>>)> = redeem_codes::table
        .filter(redeem_codes::pass_id.eq(pass))
        .select((
            redeem_codes::code,
            redeem_codes::max_uses,
            redeem_codes::uses,
            redeem_codes::expires_at,
        ))
        .load(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for (code, max_uses, uses, expires) in &rows {
        assert_eq!((*max_uses, *uses, *expires), (1, 0, None));
        assert!(shown.contains(code), "{code} is on the page");
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 3, "{code}");
        for g in groups {
            assert_eq!(g.len(), 4, "{code}");
            assert!(
                g.bytes()
                    .all(|b| b"23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(&b)),
                "{code} uses the unambiguous alphabet"
            );
        }
    }
    let audit: serde_json::Value = audit_log::table
        .filter(audit_log::action.eq("codes.generated"))
        .filter(audit_log::subject.eq(pass.to_string()))
        .select(audit_log::details)
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(audit["count"], 5);

    // The CSV: a download, a header and one line per code.
    let csv = owner.get(&format!("/studio/passes/{pass}/codes.csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let disposition = csv.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(disposition.contains(".csv"), "{disposition}");
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["code", "max_uses", "uses", "expires_at"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 5);
    assert_eq!(csv.text.lines().count(), 6, "a header and 5 data lines");
    for r in &records {
        assert!(rows.iter().any(|(code, ..)| code == &r[0]));
        assert_eq!((&r[1], &r[2], &r[3]), ("1", "0", ""));
        for cell in r.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "no cell a spreadsheet would run: {cell}"
            );
        }
    }

    // Expiring, multi-use codes.
    let expiry = (Utc::now() + Duration::days(3))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let done = owner
        .submit(
            &page_path,
            "#generate-form",
            &[("count", "2"), ("uses", "25"), ("expires_at", &expiry)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let with_expiry: i64 = redeem_codes::table
        .filter(redeem_codes::max_uses.eq(25))
        .filter(redeem_codes::expires_at.is_not_null())
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(with_expiry, 2);
}

#[tokio::test]
async fn the_generate_form_explains_what_is_wrong_next_to_each_field() {
    let Studio {
        app,
        owner,
        channel,
        ..
    } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let pass = pass(&app, &channel, "Day pass", None, 24).await;
    let page_path = format!("/studio/passes/{pass}/codes");
    let past = (Utc::now() - Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();

    for (fields, field, message) in [
        (
            [("count", "0"), ("uses", "1"), ("expires_at", "")],
            "#count-error",
            "between 1 and 1,000",
        ),
        (
            [("count", "1001"), ("uses", "1"), ("expires_at", "")],
            "#count-error",
            "between 1 and 1,000",
        ),
        (
            [("count", "ten"), ("uses", "1"), ("expires_at", "")],
            "#count-error",
            "between 1 and 1,000",
        ),
        (
            [("count", "3"), ("uses", "0"), ("expires_at", "")],
            "#uses-error",
            "1 to 10,000",
        ),
        (
            [("count", "3"), ("uses", "10001"), ("expires_at", "")],
            "#uses-error",
            "1 to 10,000",
        ),
        (
            [("count", "3"), ("uses", "1"), ("expires_at", past.as_str())],
            "#expires_at-error",
            "has passed",
        ),
        (
            [("count", "3"), ("uses", "1"), ("expires_at", "soon")],
            "#expires_at-error",
            "like 2026-11-22",
        ),
    ] {
        let page = owner.submit(&page_path, "#generate-form", &fields).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(
            page.text_of(field).contains(message),
            "{fields:?}: {}",
            page.text
        );
        // What was typed stays in the form.
        assert_eq!(page.attr("#count", "value").as_deref(), Some(fields[0].1));
    }
    // htmx gets the form alone, to swap in place.
    let page = owner
        .post_htmx(
            &page_path,
            &[("count", "0"), ("uses", "1"), ("expires_at", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text
            .trim_start()
            .starts_with("<section id=\"generate\""),
        "{}",
        page.text
    );
    assert!(page.has("#count-error"));

    let none: i64 = redeem_codes::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(none, 0, "nothing was generated");

    // Archived passes get no new codes (the ones handed out keep working).
    diesel::update(access_passes::table.find(pass))
        .set(access_passes::archived_at.eq(Utc::now()))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let page = owner
        .submit(
            &page_path,
            "#generate-form",
            &[("count", "3"), ("uses", "1")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text_of(".form-error").contains("archived"));
}

#[tokio::test]
async fn only_the_owner_manages_codes() {
    let Studio { app, channel, .. } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let pass = pass(&app, &channel, "Day pass", None, 24).await;
    codes_for(&app, pass, 2, 1).await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;

    for (who, browser) in [("moderator", &moderator), ("stranger", &stranger)] {
        for path in [
            format!("/studio/passes/{pass}/codes"),
            format!("/studio/passes/{pass}/codes.csv"),
        ] {
            let page = browser.get(&path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{who} {path}");
            assert!(!page.text.contains("code-row"), "{who} sees no codes");
        }
        let token = browser.csrf_token().await;
        let page = browser
            .post_raw(
                &format!("/studio/passes/{pass}/codes"),
                &[("csrf_token", &token), ("count", "5"), ("uses", "1")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}");
    }
    let count: i64 = redeem_codes::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(count, 2, "nobody else generated any");

    let anonymous = app
        .anonymous()
        .get(&format!("/studio/passes/{pass}/codes"))
        .await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.location().unwrap().starts_with("/signin"));
    assert_eq!(
        stranger.get("/studio/passes/999999/codes").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn redeeming_a_code_grants_its_pass_and_lands_on_return_to() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let stream_pass = pass(&app, &channel, "Friday ticket", Some(stream.id), 24).await;
    let channel_pass = pass(&app, &channel, "Season pass", None, 48).await;
    let code = codes_for(&app, stream_pass, 1, 1).await.remove(0);
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Vera Viewer").await;

    // Typed by hand: lower case, spaces, no hyphens.
    let typed = code.replace('-', " ").to_lowercase();
    let return_to = format!("/s/{}/pass", stream.id);
    let page = redeem(&viewer, &typed, &return_to).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), Some(return_to));
    let said = flash(&viewer).await;
    assert!(
        said.contains("Code redeemed: Friday ticket until"),
        "{said}"
    );

    let grants = grants_of(&app, viewer_id).await;
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.user_id, viewer_id);
    assert_eq!(g.source, "code");
    assert_eq!(g.pass_id, Some(stream_pass));
    assert_eq!(g.stream_id, Some(stream.id), "the stream pass's scope");
    assert!(g.includes_replays);
    assert_eq!(g.expires_at - g.starts_at, Duration::hours(24));
    assert!((g.starts_at - Utc::now()).num_seconds().abs() < 30);
    assert_eq!(uses_of(&app, &code).await, 1);
    let redemption: (UserId, Option<i64>) = redemptions::table
        .select((redemptions::user_id, redemptions::grant_id))
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(redemption.0, viewer_id);
    assert!(redemption.1.is_some());

    // A channel pass's code: a channel-wide grant. A foreign return_to is ignored.
    let code = codes_for(&app, channel_pass, 1, 1).await.remove(0);
    let page = redeem(&viewer, &code, "https://evil.example/").await;
    assert_eq!(page.location().as_deref(), Some("/passes"));
    let grants = grants_of(&app, viewer_id).await;
    let g = grants
        .iter()
        .find(|g| g.pass_id == Some(channel_pass))
        .unwrap();
    assert_eq!(g.stream_id, None, "the whole channel");
    assert_eq!(g.expires_at - g.starts_at, Duration::hours(48));

    // The owner sees who redeemed what.
    let page = owner
        .get(&format!("/studio/passes/{stream_pass}/codes"))
        .await;
    let codes_page = page.text_of(".code-row");
    assert!(codes_page.contains("1 / 1"), "{codes_page}");
    assert!(codes_page.contains("Vera Viewer"), "{codes_page}");
    assert!(codes_page.contains("viewer@example.com"), "{codes_page}");
    let audit: i64 = audit_log::table
        .filter(audit_log::action.eq("code.redeemed"))
        .filter(audit_log::actor_id.eq(viewer_id))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(audit, 2);

    // Signed out: to sign-in first, and back to the pass page after.
    let anonymous = app.anonymous();
    let page = redeem(&anonymous, &code, "/c/codes-channel/passes").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location().as_deref(),
        Some("/signin?next=%2Fc%2Fcodes-channel%2Fpasses")
    );
}

#[tokio::test]
async fn the_pass_pages_redeem_form_redeems_and_comes_back_with_the_news() {
    let Studio {
        app,
        channel,
        stream,
        ..
    } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    // Announced (an unscheduled draft has no public pages).
    diesel::update(streams::table.find(stream.id))
        .set(streams::scheduled_at.eq(Utc::now() + Duration::days(1)))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let ticket = pass(&app, &channel, "Friday ticket", Some(stream.id), 24).await;
    let code = codes_for(&app, ticket, 1, 1).await.remove(0);
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let here = format!("/s/{}/pass", stream.id);
    // Where the pass page says to go on to once the code worked (the watch page).
    let back_to = viewer
        .get(&here)
        .await
        .attr("#redeem-form input[name=return_to]", "value")
        .unwrap();
    assert_eq!(back_to, format!("/s/{}", stream.id));

    // A wrong code keeps the viewer on the pass page, with its code field.
    let page = viewer
        .submit(&here, "#redeem-form", &[("code", "ZZZZ-ZZZZ-ZZZZ")])
        .await;
    assert_eq!(page.location(), Some(here.clone()));
    let back = viewer.follow(&page).await;
    assert!(back.text_of("#alerts").contains("We don't know that code"));
    assert!(back.has("#redeem-form input[name=code]"), "{}", back.text);

    let page = viewer
        .submit(&here, "#redeem-form", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), Some(back_to));
    let back = viewer.follow(&page).await;
    assert!(
        back.text_of("#alerts")
            .contains("Code redeemed: Friday ticket until"),
        "{}",
        back.text
    );
    assert_eq!(grants_of(&app, viewer_id).await.len(), 1);
}

#[tokio::test]
async fn every_refusal_says_why_and_makes_no_grant() {
    let Studio { app, channel, .. } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let day = pass(&app, &channel, "Day pass", None, 24).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let (other, _) = builders::user(&app, "other@example.com", "Other").await;

    let used = codes_for(&app, day, 1, 1).await.remove(0);
    assert_eq!(
        redeem(&other, &used, "/passes").await.status,
        StatusCode::SEE_OTHER
    );
    let expired = codes_for(&app, day, 1, 5).await.remove(0);
    diesel::update(redeem_codes::table.filter(redeem_codes::code.eq(&expired)))
        .set(redeem_codes::expires_at.eq(Utc::now() - Duration::minutes(1)))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let shared = codes_for(&app, day, 1, 10).await.remove(0);
    let event = window_pass(
        &app,
        &channel,
        "Last week's gala",
        Utc::now() - Duration::days(8),
        Utc::now() - Duration::days(7),
    )
    .await;
    let over = codes_for(&app, event, 1, 1).await.remove(0);

    // The multi-use code works once for this viewer.
    assert_eq!(
        redeem(&viewer, &shared, "/passes").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(flash(&viewer).await.contains("Code redeemed"));
    let before = grant_count(&app).await;

    for (what, code, message) in [
        ("unknown", "ZZZZ-ZZZZ-ZZZZ", "We don't know that code"),
        ("nonsense", "hello there", "We don't know that code"),
        ("used up", used.as_str(), "That code has been used up."),
        ("expired", expired.as_str(), "That code has expired."),
        (
            "already redeemed",
            shared.as_str(),
            "You have already redeemed this code.",
        ),
        ("window over", over.as_str(), "is over"),
        ("empty", "  ", "Enter the code you were given."),
    ] {
        let page = redeem(&viewer, code, "/c/codes-channel/passes").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
        assert_eq!(
            page.location().as_deref(),
            Some("/c/codes-channel/passes"),
            "{what}"
        );
        let said = flash(&viewer).await;
        assert!(said.contains(message), "{what}: {said}");
        assert_eq!(grant_count(&app).await, before, "{what}: no grant");
    }
    // The refused second redemption gave its use back.
    assert_eq!(uses_of(&app, &shared).await, 1);
    assert_eq!(uses_of(&app, &expired).await, 0);
    assert_eq!(uses_of(&app, &over).await, 0);
    assert_eq!(grants_of(&app, viewer_id).await.len(), 1);

    // Someone banned from the channel gets no grant from its codes (as at
    // checkout), and the code keeps its use for someone else.
    let (banned, banned_id) = builders::user(&app, "banned@example.com", "Banned").await;
    builders::ban(&app, channel.id, banned_id).await;
    let page = redeem(&banned, &shared, "/passes").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let said = flash(&banned).await;
    assert!(said.contains("banned from this channel"), "{said}");
    assert!(said.contains("not used up"), "{said}");
    assert!(grants_of(&app, banned_id).await.is_empty());
    assert_eq!(uses_of(&app, &shared).await, 1);
    let page = banned
        .post_htmx("/redeem", &[("code", &shared), ("return_to", "/passes")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text_of("#code-error")
            .contains("banned from this channel")
    );

    // With htmx: the form again, with the error next to the code field,
    // in place of the page's #redeem-form.
    let page = viewer
        .post_htmx("/redeem", &[("code", &used), ("return_to", "/s/1/pass")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(page.header("hx-retarget").as_deref(), Some("#redeem-form"));
    assert_eq!(page.header("hx-reswap").as_deref(), Some("outerHTML"));
    assert_eq!(page.text_of("#code-error"), "That code has been used up.");
    assert_eq!(
        page.attr("#redeem-form input[name=return_to]", "value")
            .as_deref(),
        Some("/s/1/pass")
    );
    assert_eq!(
        page.attr("#redeem-code", "aria-invalid").as_deref(),
        Some("true")
    );

    // Codes of an archived pass still work, like grants already made from it.
    let kept = codes_for(&app, day, 1, 1).await.remove(0);
    diesel::update(access_passes::table.find(day))
        .set(access_passes::archived_at.eq(Utc::now()))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let page = viewer
        .post_htmx("/redeem", &[("code", &kept), ("return_to", "/passes")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.header("hx-redirect").as_deref(), Some("/passes"));
    assert_eq!(grants_of(&app, viewer_id).await.len(), 2);

    let failures: Vec<serde_json::Value> = audit_log::table
        .filter(audit_log::action.eq("code.redeem_failed"))
        .filter(audit_log::actor_id.eq(viewer_id))
        .select(audit_log::details)
        .load(&mut *app.conn().await)
        .await
        .unwrap();
    let reasons: Vec<&str> = failures
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    for reason in [
        "unknown",
        "used_up",
        "expired",
        "already_redeemed",
        "window_over",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
}

#[tokio::test]
async fn ten_failed_attempts_in_ten_minutes_and_then_no_more() {
    let Studio { app, channel, .. } = Studio::spawn("codes-channel", AccessKind::Pass).await;
    let day = pass(&app, &channel, "Day pass", None, 24).await;
    let good = codes_for(&app, day, 1, 1).await.remove(0);
    let (guesser, guesser_id) = builders::user(&app, "guesser@example.com", "Guesser").await;
    for i in 0..10 {
        let page = redeem(&guesser, &format!("GUES-SSSS-{i:04}"), "/passes").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    assert!(flash(&guesser).await.contains("We don't know that code"));
    // Even a good code waits now.
    let page = guesser
        .post_htmx("/redeem", &[("code", &good), ("return_to", "/passes")])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.text_of("#code-error").starts_with("Too many attempts"));
    let page = redeem(&guesser, &good, "/passes").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(flash(&guesser).await.contains("Too many attempts"));
    assert!(grants_of(&app, guesser_id).await.is_empty());
    assert_eq!(uses_of(&app, &good).await, 0);

    // Someone else is not held back by the guesser.
    let (other, other_id) = builders::user(&app, "other@example.com", "Other").await;
    assert_eq!(
        redeem(&other, &good, "/passes").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(grants_of(&app, other_id).await.len(), 1);

    // The window slides: failures older than ten minutes no longer count.
    diesel::update(audit_log::table.filter(audit_log::actor_id.eq(guesser_id)))
        .set(audit_log::created_at.eq(Utc::now() - Duration::minutes(11)))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    let page = redeem(&guesser, "GUES-SSSS-AAAA", "/passes").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(flash(&guesser).await.contains("We don't know that code"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redemptions_of_one_single_use_code_give_exactly_one_grant() {
    // A bigger pool than usual, so that many transactions really race for the row.
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_POOL_SIZE".into(), "16".into());
    })
    .await;
    let (_, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "race").await;
    let day = pass(&app, &channel, "Day pass", None, 24).await;
    let code = codes_for(&app, day, 1, 1).await.remove(0);

    // Fifty people, signed in, each with their CSRF token ready (a few at a
    // time: sign-up hashes passwords, which is slow on purpose).
    let people: Vec<(Browser, String)> = futures_util::stream::iter(0..50)
        .map(|i| {
            let app = &app;
            async move {
                let browser = app
                    .signed_up(&format!("racer{i}@example.com"), &format!("Racer {i}"))
                    .await;
                let token = browser.csrf_token().await;
                (browser, token)
            }
        })
        .buffer_unordered(2)
        .collect()
        .await;

    // All at once, on several threads.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(people.len()));
    let tasks: Vec<_> = people
        .into_iter()
        .map(|(browser, token)| {
            let (code, start) = (code.clone(), start.clone());
            tokio::spawn(async move {
                let request = browser
                    .client
                    .post(browser.url("/redeem"))
                    .header("HX-Request", "true")
                    .header("X-CSRF-Token", token)
                    .form(&[("code", code.as_str()), ("return_to", "/passes")]);
                start.wait().await;
                Browser::read(request.send().await.unwrap()).await
            })
        })
        .collect();
    let mut won = 0;
    let mut lost = 0;
    for task in tasks {
        let page = task.await.unwrap();
        match page.status {
            StatusCode::OK => {
                assert_eq!(page.header("hx-redirect").as_deref(), Some("/passes"));
                won += 1;
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(page.text_of("#code-error"), "That code has been used up.");
                lost += 1;
            }
            other => panic!("unexpected {other}: {}", page.text),
        }
    }
    assert_eq!((won, lost), (1, 49));

    let mut conn = app.conn().await;
    let grants: i64 = access_grants::table
        .filter(access_grants::pass_id.eq(day))
        .count()
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(grants, 1, "exactly one grant");
    assert_eq!(uses_of(&app, &code).await, 1);
    let redeemed: i64 = redemptions::table
        .count()
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(redeemed, 1);
}

#[tokio::test]
async fn guesses_from_one_address_are_limited_across_accounts() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REDEEM_MAX_FAILURES_PER_ADDRESS".into(), "3".into());
    })
    .await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (bob, bob_id) = builders::user(&app, "bob@example.com", "Bob").await;
    let guess = |who: Browser, code: &'static str| async move {
        who.post_htmx("/redeem", &[("code", code), ("return_to", "/passes")])
            .await
    };
    // Each account stays far below its own limit (10)...
    for (who, code) in [
        (&ann, "GUES-SAAA-AAAA"),
        (&ann, "GUES-SAAA-AAAB"),
        (&bob, "GUES-SAAA-AAAC"),
    ] {
        let page = guess(who.clone(), code).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // ...but the address has made its three guesses.
    let page = guess(bob.clone(), "GUES-SAAA-AAAD").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let error = page.text_of("#code-error");
    assert!(
        error.starts_with("Too many attempts from your network"),
        "{error}"
    );
    assert!(error.contains("Wait 10 minutes, then try again"), "{error}");
    let failures: i64 = audit_log::table
        .filter(audit_log::actor_id.eq(bob_id))
        .filter(audit_log::action.eq("code.redeem_failed"))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(failures, 1, "the refused guess changed nothing");
}
