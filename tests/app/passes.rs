//! Passes: the owner creating, editing and archiving them in the studio; the
//! pages viewers buy from; "My passes" — as owners, moderators, strangers,
//! holders and anonymous visitors meet them.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::{access_passes, audit_log};
use stagepass::db::streams::Status;
use stagepass::db::{ChannelId, PassId, StreamId, UserId};

use crate::util::builders;
use crate::util::builders::{create_channel, stream_in_state};
use crate::util::{Browser, Page, TestApp};

fn datetime_local(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// Creates a pass through the studio's form (no JavaScript); answers its id.
async fn create_pass(
    app: &TestApp,
    owner: &Browser,
    handle: &str,
    fields: &[(&str, &str)],
) -> PassId {
    let page = owner
        .submit(
            &format!("/studio/channels/{handle}/passes"),
            "#pass-form",
            fields,
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(
        page.location(),
        Some(format!("/studio/channels/{handle}/passes"))
    );
    access_passes::table
        .order(access_passes::id.desc())
        .select(access_passes::id)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

/// A 24-hour channel pass at 9.00 USD, with `changes` on top.
fn channel_pass<'a>(name: &'a str, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("name", name),
        ("price", "9.00"),
        ("currency", "USD"),
        ("scope", "channel"),
        ("stream_id", ""),
        ("duration", "24"),
        ("duration_unit", "hours"),
        ("window_starts_at", ""),
        ("window_ends_at", ""),
    ];
    for (k, v) in changes {
        fields.retain(|(f, _)| f != k);
        fields.push((k, v));
    }
    fields
}

#[derive(Queryable, Debug)]
struct Row {
    name: String,
    price_cents: i64,
    currency: String,
    scope: String,
    stream_id: Option<StreamId>,
    duration_seconds: Option<i32>,
    window_starts_at: Option<DateTime<Utc>>,
    window_ends_at: Option<DateTime<Utc>>,
    includes_replays: bool,
    archived_at: Option<DateTime<Utc>>,
}

async fn row(app: &TestApp, id: PassId) -> Row {
    access_passes::table
        .find(id)
        .select((
            access_passes::name,
            access_passes::price_cents,
            access_passes::currency,
            access_passes::scope,
            access_passes::stream_id,
            access_passes::duration_seconds,
            access_passes::window_starts_at,
            access_passes::window_ends_at,
            access_passes::includes_replays,
            access_passes::archived_at,
        ))
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn pass_count(app: &TestApp) -> i64 {
    access_passes::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn audits(app: &TestApp, action: &str, pass: PassId) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .filter(audit_log::subject.eq(pass.to_string()))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

/// A grant made from `pass` (as a purchase, a code or a comp would make it).
async fn grant_from(
    app: &TestApp,
    pass: PassId,
    user: UserId,
    channel: ChannelId,
    stream: Option<StreamId>,
    starts: &str,
    expires: &str,
) -> i64 {
    let id = builders::grant(app, user, channel, stream, starts, expires).await;
    diesel::sql_query("UPDATE access_grants SET pass_id = $1, source = 'purchase' WHERE id = $2")
        .bind::<BigInt, _>(pass.0)
        .bind::<BigInt, _>(id)
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    id
}

/// An order of `pass` by `user`, `minutes_ago`, in `status`.
async fn order(
    app: &TestApp,
    user: UserId,
    pass: PassId,
    cents: i64,
    status: &str,
    minutes_ago: i64,
) -> i64 {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO orders (user_id, pass_id, amount_cents, currency, provider, status, created_at) \
         VALUES ($1, $2, $3, 'USD', 'dev', $4, now() - make_interval(mins => $5::int)) RETURNING id",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(pass.0)
    .bind::<BigInt, _>(cents)
    .bind::<Text, _>(status)
    .bind::<BigInt, _>(minutes_ago)
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    row.id
}

fn card(id: PassId) -> String {
    format!(".pass-card[data-pass-id='{id}']")
}

fn offered(page: &Page) -> Vec<String> {
    page.texts(".pass-card .pass-name")
}

#[tokio::test]
async fn the_owner_creates_a_channel_pass_and_a_stream_pass() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let friday = stream_in_state(&app, channel, "Friday session", Status::Draft, Some(48)).await;
    let old = stream_in_state(&app, channel, "Old show", Status::Ended, None).await;

    let list = ann.get("/studio/channels/ann-live/passes").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.has("#pass-list .empty"));
    let choices = list.texts("#stream_id option");
    assert!(
        choices
            .iter()
            .any(|c| c.starts_with("Friday session (scheduled")),
        "{choices:?}"
    );
    assert!(
        !choices.iter().any(|c| c.contains("Old show")),
        "ended streams are not offered"
    );
    assert!(list.has("#scope-channel[checked]"));
    assert_eq!(
        list.texts("#currency option"),
        ["USD", "EUR", "GBP", "CAD", "AUD"]
    );

    let monthly = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Monthly",
            &[
                ("price", "12.5"),
                ("currency", "EUR"),
                ("duration", "30"),
                ("duration_unit", "days"),
                ("includes_replays", "true"),
            ],
        ),
    )
    .await;
    let stored = row(&app, monthly).await;
    assert_eq!(stored.name, "Monthly");
    assert_eq!(
        (stored.price_cents, stored.currency.as_str()),
        (1250, "EUR")
    );
    assert_eq!((stored.scope.as_str(), stored.stream_id), ("channel", None));
    assert_eq!(stored.duration_seconds, Some(30 * 86400));
    assert_eq!(
        (stored.window_starts_at, stored.window_ends_at),
        (None, None)
    );
    assert!(stored.includes_replays);
    assert_eq!(audits(&app, "pass.created", monthly).await, 1);

    let from = Utc::now() + Duration::days(2);
    let to = from + Duration::hours(8);
    let friday_id = friday.to_string();
    let (from_s, to_s) = (datetime_local(from), datetime_local(to));
    let night = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Friday night",
            &[
                ("price", "4"),
                ("scope", "stream"),
                ("stream_id", &friday_id),
                ("duration", ""),
                ("window_starts_at", &from_s),
                ("window_ends_at", &to_s),
            ],
        ),
    )
    .await;
    let stored = row(&app, night).await;
    assert_eq!(
        (stored.scope.as_str(), stored.stream_id),
        ("stream", Some(friday))
    );
    assert_eq!(stored.price_cents, 400);
    assert_eq!(stored.duration_seconds, None);
    assert_eq!(
        stored.window_starts_at.map(datetime_local),
        Some(from_s.clone()),
        "read as UTC"
    );
    assert_eq!(
        stored.window_ends_at.map(datetime_local),
        Some(to_s.clone())
    );
    assert!(!stored.includes_replays, "an unticked checkbox is false");

    // The list shows both, with what they are.
    let list = ann.get("/studio/channels/ann-live/passes").await;
    assert!(
        list.text_of("#alerts")
            .contains("“Friday night” is on sale.")
    );
    let item = |id: PassId| format!(".studio-pass[data-pass-id='{id}']");
    assert_eq!(
        list.text_of(&format!("{} .pass-price", item(monthly))),
        "€12.50"
    );
    assert_eq!(
        list.text_of(&format!("{} .pass-covers", item(monthly))),
        "Every stream of the channel"
    );
    assert_eq!(
        list.text_of(&format!("{} .pass-length", item(monthly))),
        "30 days from purchase"
    );
    assert!(list.has(&format!("{} .pass-replays", item(monthly))));
    assert_eq!(
        list.text_of(&format!("{} .pass-covers", item(night))),
        "One stream: Friday session"
    );
    assert_eq!(
        list.text_of(&format!("{} .pass-length", item(night))),
        format!(
            "From {} to {}",
            from.format("%Y-%m-%d %H:%M UTC"),
            to.format("%Y-%m-%d %H:%M UTC")
        )
    );
    assert_eq!(
        list.attr(&item(night), "data-state").as_deref(),
        Some("on-sale")
    );

    // The edit page shows the stored values; an unsold pass's terms can change.
    let edit = ann.get(&format!("/studio/passes/{monthly}")).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert_eq!(edit.attr("#price", "value").as_deref(), Some("12.50"));
    assert_eq!(edit.attr("#duration", "value").as_deref(), Some("30"));
    assert!(edit.has("#duration_unit option[value=days][selected]"));
    assert!(edit.has("#includes_replays[checked]"));
    assert!(edit.has("#currency option[value=EUR][selected]"));
    let saved = ann
        .submit(
            &format!("/studio/passes/{monthly}"),
            "#pass-form",
            &channel_pass(
                "Monthly pass",
                &[
                    ("price", "15"),
                    ("currency", "EUR"),
                    ("duration", "31"),
                    ("duration_unit", "days"),
                ],
            ),
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    let stored = row(&app, monthly).await;
    assert_eq!(stored.name, "Monthly pass");
    assert_eq!(stored.price_cents, 1500);
    assert_eq!(stored.duration_seconds, Some(31 * 86400));
    assert!(!stored.includes_replays);
    assert_eq!(audits(&app, "pass.updated", monthly).await, 1);

    // With htmx: the whole management block comes back with the new pass in it.
    let htmx = ann
        .post_htmx(
            "/studio/channels/ann-live/passes",
            &channel_pass("Day pass", &[("price", "0")]),
        )
        .await;
    assert_eq!(htmx.status, StatusCode::OK, "{}", htmx.text);
    assert!(htmx.has("#passes-manage") && !htmx.has("header.site-header"));
    assert_eq!(
        htmx.text_of("#new-pass .form-success"),
        "“Day pass” is on sale."
    );
    assert_eq!(
        htmx.attr("#name", "value").as_deref(),
        Some(""),
        "a fresh form"
    );
    assert!(
        htmx.texts("#pass-list .pass-name")
            .contains(&"Day pass".to_owned())
    );
    assert_eq!(pass_count(&app).await, 3);
    let _ = old;
}

#[tokio::test]
async fn invalid_passes_are_refused_next_to_their_fields() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (bob, _) = builders::user(&app, "bob@example.com", "Bob").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let other = create_channel(&app, &bob, "bob-live", "Bob Live").await;
    let mine = stream_in_state(&app, channel, "Mine", Status::Draft, Some(24)).await;
    let theirs = stream_in_state(&app, other, "Theirs", Status::Draft, Some(24)).await;
    let ended = stream_in_state(&app, channel, "Over", Status::Ended, None).await;
    let list = "/studio/channels/ann-live/passes";

    let refused = |page: &Page, field: &str| {
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            page.text
        );
        page.text_of(&format!("#{field}-error"))
    };

    let negative = ann
        .submit(
            list,
            "#pass-form",
            &channel_pass("Cheap", &[("price", "-5")]),
        )
        .await;
    assert!(refused(&negative, "price").contains("can't be negative"));
    assert_eq!(
        negative.attr("#price", "aria-invalid").as_deref(),
        Some("true")
    );
    assert_eq!(
        negative.attr("#name", "value").as_deref(),
        Some("Cheap"),
        "typed values are kept"
    );
    assert_eq!(negative.attr("#price", "value").as_deref(), Some("-5"));

    let later = datetime_local(Utc::now() + Duration::days(3));
    let earlier = datetime_local(Utc::now() + Duration::days(2));
    let (yesterday, an_hour_ago) = (
        datetime_local(Utc::now() - Duration::days(1)),
        datetime_local(Utc::now() - Duration::hours(1)),
    );
    // (name, changed fields, the field refused, what its error says)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 8] = [
        ("Odd", &[("price", "9.999")], "price", "2 decimals"),
        ("Gold", &[("price", "100000.01")], "price", "100000.00"),
        (
            "Both",
            &[("window_starts_at", &earlier), ("window_ends_at", &later)],
            "length",
            "not both",
        ),
        (
            "Neither",
            &[("duration", "")],
            "length",
            "how long the pass lasts",
        ),
        (
            "Past",
            &[
                ("duration", ""),
                ("window_starts_at", &yesterday),
                ("window_ends_at", &an_hour_ago),
            ],
            "window",
            "already ended",
        ),
        (
            "Backwards",
            &[
                ("duration", ""),
                ("window_starts_at", &later),
                ("window_ends_at", &earlier),
            ],
            "window",
            "after the start",
        ),
        ("Short", &[("duration", "0")], "duration", "at least 1 hour"),
        (
            "Long",
            &[("duration", "367"), ("duration_unit", "days")],
            "duration",
            "at most 366 days",
        ),
    ];
    for (name, changes, field, reason) in cases {
        let page = ann
            .submit(list, "#pass-form", &channel_pass(name, changes))
            .await;
        let error = refused(&page, field);
        assert!(error.contains(reason), "{name}: {error}");
    }

    // A stream of another channel, by a forged id; an ended stream of this one.
    for forged in [theirs, ended] {
        let id = forged.to_string();
        let page = ann
            .submit(
                list,
                "#pass-form",
                &channel_pass("Sneaky", &[("scope", "stream"), ("stream_id", &id)]),
            )
            .await;
        assert!(refused(&page, "stream_id").contains("streams that hasn't ended"));
    }
    let unnamed = ann
        .submit(list, "#pass-form", &channel_pass("   ", &[]))
        .await;
    assert!(refused(&unnamed, "name").contains("Give the pass a name"));

    // htmx gets the block, with the error in it and a 422.
    let htmx = ann
        .post_htmx(
            list,
            &channel_pass("Cheap", &[("price", "-1"), ("currency", "XYZ")]),
        )
        .await;
    assert_eq!(htmx.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(htmx.has("#passes-manage #price-error") && !htmx.has("header.site-header"));
    assert!(htmx.has("#currency-error"));

    assert_eq!(pass_count(&app).await, 0);
    let _ = mine;
}

#[tokio::test]
async fn moderators_strangers_and_anonymous_visitors_cannot_manage_passes() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    let (sam, _) = builders::user(&app, "sam@example.com", "Sam").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    builders::moderator(&app, channel, mo_id).await;
    let pass = create_pass(&app, &ann, "ann-live", &channel_pass("Day", &[])).await;
    let list = "/studio/channels/ann-live/passes";
    let edit = format!("/studio/passes/{pass}");
    let archive = format!("/studio/passes/{pass}/archive");

    for who in [&mo, &sam] {
        let page = who.get(list).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(
            page.text_of(".alert p"),
            "Only the owner of this channel can manage its passes."
        );
        assert_eq!(
            who.post_htmx(list, &channel_pass("Theirs", &[]))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(who.get(&edit).await.status, StatusCode::FORBIDDEN);
        let update = who
            .post_htmx(&edit, &channel_pass("Stolen", &[("price", "0")]))
            .await;
        assert_eq!(update.status, StatusCode::FORBIDDEN);
        assert_eq!(update.header("hx-retarget").as_deref(), Some("#alerts"));
        let token = who.csrf_token().await;
        let archived = who
            .post_raw(&archive, &[("csrf_token", token.as_str())])
            .await;
        assert_eq!(archived.status, StatusCode::FORBIDDEN);
    }
    let anon = app.anonymous();
    for path in [list, edit.as_str()] {
        let page = anon.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location().unwrap().starts_with("/signin?next="),
            "{path}"
        );
    }

    let stored = row(&app, pass).await;
    assert_eq!(
        (stored.name.as_str(), stored.price_cents, stored.archived_at),
        ("Day", 900, None)
    );
    assert_eq!(pass_count(&app).await, 1);
    assert_eq!(
        ann.get("/studio/passes/999999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ann.get("/studio/passes/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ann.get("/studio/channels/nobody/passes").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_sold_pass_keeps_its_terms_but_not_its_name_or_price() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (_, vic_id) = builders::user(&app, "vic@example.com", "Vic").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let pass = create_pass(&app, &ann, "ann-live", &channel_pass("Day", &[])).await;
    order(&app, vic_id, pass, 900, "paid", 5).await;

    let edit = ann.get(&format!("/studio/passes/{pass}")).await;
    assert!(edit.has("#fixed-terms"), "{}", edit.text);
    assert!(
        edit.text_of("#fixed-terms")
            .contains("24 hours from purchase")
    );
    assert!(!edit.has("#duration") && !edit.has("#scope-stream"));

    // Terms sent anyway are ignored; name, price and replays change.
    let saved = ann
        .post_htmx(
            &format!("/studio/passes/{pass}"),
            &channel_pass(
                "Day ticket",
                &[
                    ("price", "11"),
                    ("duration", "2"),
                    ("includes_replays", "true"),
                ],
            ),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.text_of("#pass-details .form-success"), "Saved.");
    assert_eq!(saved.text_of("#pass-heading"), "Day ticket");
    let stored = row(&app, pass).await;
    assert_eq!(
        (stored.name.as_str(), stored.price_cents),
        ("Day ticket", 1100)
    );
    assert_eq!(stored.duration_seconds, Some(86400));
    assert!(stored.includes_replays);
    let _ = channel;
}

#[tokio::test]
async fn an_archived_pass_is_off_sale_but_its_grants_still_watch() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let (vic, vic_id) = builders::user(&app, "vic@example.com", "Vic").await;
    let (_, nia_id) = builders::user(&app, "nia@example.com", "Nia").await;
    let channel = builders::channel(&app, ann_id, "ann-live").await;
    // Announced (scheduled), so that its pages are public; a real go-live below.
    let stream = stream_in_state(&app, channel.id, "Friday session", Status::Draft, Some(1)).await;
    let pass = create_pass(&app, &ann, "ann-live", &channel_pass("Season", &[])).await;
    let other = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass("Day", &[("price", "3")]),
    )
    .await;
    grant_from(&app, pass, vic_id, channel.id, None, "-1 hour", "1 day").await;
    // Nia's grant from it has ended: archiving must not revive or extend anything.
    grant_from(&app, pass, nia_id, channel.id, None, "-2 days", "-1 day").await;

    let stream_page = format!("/s/{}/pass", stream);
    assert!(offered(&vic.get(&stream_page).await).contains(&"Season".to_owned()));

    // Archive with htmx: the list comes back, marked.
    let htmx = ann
        .post_htmx(
            &format!("/studio/passes/{pass}/archive"),
            &[("archived", "true")],
        )
        .await;
    assert_eq!(htmx.status, StatusCode::OK, "{}", htmx.text);
    assert!(htmx.has("#pass-list") && !htmx.has("#pass-form"));
    let item = format!(".studio-pass[data-pass-id='{pass}']");
    assert_eq!(htmx.attr(&item, "data-state").as_deref(), Some("archived"));
    assert_eq!(htmx.text_of(&format!("{item} .badge")), "Archived");
    assert!(row(&app, pass).await.archived_at.is_some());
    assert_eq!(audits(&app, "pass.archived", pass).await, 1);

    for page in [
        vic.get(&stream_page).await,
        vic.get("/c/ann-live/passes").await,
        app.anonymous().get("/c/ann-live/passes").await,
    ] {
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(offered(&page), ["Day"], "only the pass still on sale");
    }
    assert!(!vic.get(&stream_page).await.has(&card(pass)));
    assert!(vic.get(&stream_page).await.has(&card(other)));

    // Vic's grant from the archived pass still gets them a token while live.
    builders::go_live(&ann, stream).await;
    let token = vic.post_htmx(&format!("/s/{}/token", stream), &[]).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let body: serde_json::Value = serde_json::from_str(&token.text).unwrap();
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    let (nia_status, _) = {
        let nia = app.anonymous();
        let signed = nia
            .submit(
                "/signin",
                "#signin-form",
                &[
                    ("email", "nia@example.com"),
                    ("password", crate::util::PASSWORD),
                ],
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER);
        let t = nia.post_htmx(&format!("/s/{}/token", stream), &[]).await;
        (t.status, t.text)
    };
    assert_eq!(
        nia_status,
        StatusCode::FORBIDDEN,
        "an ended grant stays ended"
    );

    // Back on sale, without JavaScript.
    let token = ann.csrf_token().await;
    let restored = ann
        .post_raw(
            &format!("/studio/passes/{pass}/archive"),
            &[("csrf_token", token.as_str()), ("archived", "false")],
        )
        .await;
    assert_eq!(restored.status, StatusCode::SEE_OTHER);
    assert!(
        ann.follow(&restored)
            .await
            .text_of("#alerts")
            .contains("“Season” is on sale again.")
    );
    assert!(row(&app, pass).await.archived_at.is_none());
    assert!(offered(&vic.get(&stream_page).await).contains(&"Season".to_owned()));
    assert_eq!(audits(&app, "pass.unarchived", pass).await, 1);

    let end = ann
        .post_htmx(&format!("/studio/streams/{}/end", stream), &[])
        .await;
    assert_eq!(end.status, StatusCode::OK, "{}", end.text);
}

#[tokio::test]
async fn the_stream_pass_page_offers_what_covers_the_stream() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let friday = stream_in_state(&app, channel, "Friday session", Status::Draft, Some(24)).await;
    let saturday = stream_in_state(&app, channel, "Saturday session", Status::Live, None).await;
    let (f, s) = (friday.to_string(), saturday.to_string());
    let season = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Season",
            &[
                ("duration", "30"),
                ("duration_unit", "days"),
                ("includes_replays", "true"),
            ],
        ),
    )
    .await;
    let fri = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Friday only",
            &[("price", "4"), ("scope", "stream"), ("stream_id", &f)],
        ),
    )
    .await;
    let sat = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Saturday only",
            &[("price", "5"), ("scope", "stream"), ("stream_id", &s)],
        ),
    )
    .await;

    // Anonymous visitors are asked to sign in, and come back here.
    let path = format!("/s/{friday}/pass");
    let anon = app.anonymous().get(&path).await;
    assert_eq!(anon.status, StatusCode::OK);
    assert_eq!(anon.text_of("#stream-title"), "Friday session");
    assert!(anon.text_of(".pass-page-header").contains("Ann Live"));
    assert_eq!(
        offered(&anon),
        ["Friday only", "Season"],
        "cheapest first; Saturday's pass is not offered"
    );
    assert!(!anon.has(".buy-form"));
    assert_eq!(
        anon.text_of(&format!("{} .sign-in-to-buy", card(fri))),
        "Sign in to buy"
    );
    assert_eq!(
        anon.attr(&format!("{} .sign-in-to-buy", card(fri)), "href"),
        Some(format!("/signin?next={path}"))
    );
    assert!(!anon.has("#redeem-form"));

    // Signed in: the cards and their buy forms.
    let page = vic.get(&path).await;
    assert_eq!(offered(&page), ["Friday only", "Season"]);
    assert!(!page.has(&card(sat)));
    assert_eq!(
        page.text_of(&format!("{} .pass-gives", card(fri))),
        "This stream"
    );
    assert_eq!(
        page.text_of(&format!("{} .pass-length", card(fri))),
        "24 hours from purchase"
    );
    assert_eq!(page.text_of(&format!("{} .pass-price", card(fri))), "$4.00");
    assert_eq!(
        page.text_of(&format!("{} .pass-gives", card(season))),
        "Every stream of Ann Live + replays"
    );
    assert_eq!(
        page.text_of(&format!("{} .pass-length", card(season))),
        "30 days from purchase"
    );
    let form = format!("{} form.buy-form", card(fri));
    assert_eq!(
        page.attr(&form, "action"),
        Some(format!("/passes/{fri}/buy"))
    );
    assert_eq!(page.attr(&form, "method").as_deref(), Some("post"));
    assert_eq!(
        page.attr(&format!("{form} input[name=stream_id]"), "value"),
        Some(f.clone())
    );
    assert_eq!(
        page.attr(&format!("{form} input[name=csrf_token]"), "value"),
        Some(vic.csrf_token().await)
    );
    assert!(
        page.text_of(&format!("{form} button"))
            .starts_with("Buy for $4.00")
    );
    let season_form = format!("{} form.buy-form", card(season));
    assert_eq!(
        page.attr(&format!("{season_form} input[name=stream_id]"), "value"),
        Some(f.clone())
    );
    assert!(
        page.text_of(&format!("{season_form} button"))
            .starts_with("Buy for $9.00")
    );
    assert!(!page.has("#has-access"));

    assert_eq!(
        page.attr("#redeem-form", "action").as_deref(),
        Some("/redeem")
    );
    assert_eq!(page.attr("#redeem-form", "method").as_deref(), Some("post"));
    assert_eq!(
        page.attr("#redeem-form input[name=return_to]", "value"),
        Some(format!("/s/{friday}"))
    );
    assert!(
        page.has("#redeem-form input[name=csrf_token]")
            && page.has("#redeem-form input[name=code]")
    );

    // The other stream's page offers its own pass and the channel's.
    assert_eq!(
        offered(&vic.get(&format!("/s/{saturday}/pass")).await),
        ["Saturday only", "Season"]
    );
    let _ = sat;
}

#[tokio::test]
async fn pass_pages_say_who_already_has_access_and_hide_private_streams() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let (vic, vic_id) = builders::user(&app, "vic@example.com", "Vic").await;
    let (sam, _) = builders::user(&app, "sam@example.com", "Sam").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let live = stream_in_state(&app, channel, "On air", Status::Live, None).await;
    let draft = stream_in_state(&app, channel, "Secret", Status::Draft, None).await;
    let ended = stream_in_state(&app, channel, "Yesterday", Status::Ended, None).await;
    let (d, e) = (draft.to_string(), ended.to_string());
    builders::grant(&app, vic_id, channel, Some(live), "-1 hour", "2 hours").await;

    let page = vic.get(&format!("/s/{live}/pass")).await;
    assert!(
        page.text_of("#has-access")
            .contains("You have access until")
    );
    assert_eq!(
        page.attr("#has-access a", "href"),
        Some(format!("/s/{live}"))
    );
    let owner = ann.get(&format!("/s/{live}/pass")).await;
    assert!(owner.text_of("#has-access").contains("team"));
    assert!(!sam.get(&format!("/s/{live}/pass")).await.has("#has-access"));
    assert!(
        sam.get(&format!("/s/{live}/pass")).await.has("#no-passes"),
        "nothing on sale yet"
    );

    // An unannounced draft is the team's business: 404 to others (its passes too).
    create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass("Secret pass", &[("scope", "stream"), ("stream_id", &d)]),
    )
    .await;
    assert_eq!(
        sam.get(&format!("/s/{draft}/pass")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.anonymous()
            .get(&format!("/s/{draft}/pass"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ann.get(&format!("/s/{draft}/pass")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        sam.get("/s/999999/pass").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sam.get("/c/nobody/passes").await.status,
        StatusCode::NOT_FOUND
    );

    // An ended stream's own pass (written straight to the database: the form
    // refuses ended streams) is not offered on the channel page; on the
    // stream's page only with its replay.
    let channel_pass_id = create_pass(&app, &ann, "ann-live", &channel_pass("Season", &[])).await;
    let ended_pass: PassId = diesel::insert_into(access_passes::table)
        .values((
            access_passes::channel_id.eq(channel),
            access_passes::stream_id.eq(ended),
            access_passes::name.eq("Yesterday's replay"),
            access_passes::price_cents.eq(200_i64),
            access_passes::currency.eq("USD"),
            access_passes::scope.eq("stream"),
            access_passes::duration_seconds.eq(86400),
        ))
        .returning(access_passes::id)
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    let channel_page = sam.get("/c/ann-live/passes").await;
    assert_eq!(offered(&channel_page), ["Season"]);
    assert!(
        !sam.get(&format!("/s/{ended}/pass"))
            .await
            .has(&card(ended_pass))
    );
    diesel::update(access_passes::table.find(ended_pass))
        .set(access_passes::includes_replays.eq(true))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    assert!(
        sam.get(&format!("/s/{ended}/pass"))
            .await
            .has(&card(ended_pass))
    );
    assert!(!sam.get("/c/ann-live/passes").await.has(&card(ended_pass)));
    let _ = (e, ann_id, channel_pass_id);
}

#[tokio::test]
async fn the_channel_passes_page_lists_channel_and_stream_passes() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let friday = stream_in_state(&app, channel, "Friday session", Status::Draft, Some(24)).await;
    let f = friday.to_string();
    let season = create_pass(&app, &ann, "ann-live", &channel_pass("Season", &[])).await;
    let fri = create_pass(
        &app,
        &ann,
        "ann-live",
        &channel_pass(
            "Friday only",
            &[("price", "4"), ("scope", "stream"), ("stream_id", &f)],
        ),
    )
    .await;

    let page = vic.get("/c/ann-live/passes").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        offered(&page),
        ["Season", "Friday only"],
        "channel passes first"
    );
    assert_eq!(
        page.text_of(&format!("{} .pass-gives", card(season))),
        "Every stream of Ann Live"
    );
    assert_eq!(
        page.text_of(&format!("{} .pass-gives", card(fri))),
        "One stream: Friday session"
    );
    assert_eq!(
        page.attr(&format!("{} .pass-gives a", card(fri)), "href"),
        Some(format!("/s/{friday}"))
    );
    assert!(
        !page.has(&format!("{} input[name=stream_id]", card(season))),
        "a channel pass has no stream"
    );
    assert_eq!(
        page.attr(&format!("{} input[name=stream_id]", card(fri)), "value"),
        Some(f)
    );
    assert_eq!(
        page.attr(&format!("{} form.buy-form", card(season)), "action"),
        Some(format!("/passes/{season}/buy"))
    );
    assert_eq!(
        page.attr("#redeem-form input[name=return_to]", "value")
            .as_deref(),
        Some("/c/ann-live")
    );

    let anon = app.anonymous().get("/c/ann-live/passes").await;
    assert_eq!(
        anon.attr(&format!("{} .sign-in-to-buy", card(season)), "href")
            .as_deref(),
        Some("/signin?next=/c/ann-live/passes")
    );

    // The channel page links here.
    assert_eq!(
        vic.get("/c/ann-live")
            .await
            .attr("#channel-passes", "href")
            .as_deref(),
        Some("/c/ann-live/passes")
    );
}

#[tokio::test]
async fn my_passes_sorts_grants_by_what_they_are_now() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (vic, vic_id) = builders::user(&app, "vic@example.com", "Vic").await;
    let (_, sam_id) = builders::user(&app, "sam@example.com", "Sam").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let friday = stream_in_state(&app, channel, "Friday session", Status::Live, None).await;
    let season = create_pass(&app, &ann, "ann-live", &channel_pass("Season", &[])).await;

    let active = grant_from(
        &app,
        season,
        vic_id,
        channel,
        None,
        "-1 hour",
        "2 days 3 hours 30 seconds",
    )
    .await;
    let stream_grant = builders::grant(
        &app,
        vic_id,
        channel,
        Some(friday),
        "-10 minutes",
        "50 minutes",
    )
    .await;
    let upcoming = builders::grant(&app, vic_id, channel, None, "3 hours", "1 day").await;
    let expired =
        builders::grant(&app, vic_id, channel, Some(friday), "-2 days", "-1 second").await;
    let revoked = grant_from(&app, season, vic_id, channel, None, "-1 hour", "5 hours").await;
    diesel::sql_query(
        "UPDATE access_grants SET revoked_at = now(), revoked_reason = 'Chargeback' WHERE id = $1",
    )
    .bind::<BigInt, _>(revoked)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    builders::grant(&app, sam_id, channel, None, "-1 hour", "1 hour").await;
    let paid = order(&app, vic_id, season, 900, "paid", 60).await;
    let refunded = order(&app, vic_id, season, 900, "refunded", 5).await;
    order(&app, sam_id, season, 900, "paid", 1).await;

    let page = vic.get("/passes").await;
    assert_eq!(page.status, StatusCode::OK);
    let ids = |section: &str| -> Vec<String> {
        let html = page.html();
        let sel = scraper::Selector::parse(&format!("#{section} .held-pass")).unwrap();
        html.select(&sel)
            .map(|e| e.value().attr("data-grant-id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids("active"),
        [stream_grant.to_string(), active.to_string()],
        "soonest end first"
    );
    assert_eq!(ids("upcoming"), [upcoming.to_string()]);
    let mut ended = ids("ended");
    ended.sort();
    let mut want = vec![expired.to_string(), revoked.to_string()];
    want.sort();
    assert_eq!(ended, want);

    let g = |id: i64| format!(".held-pass[data-grant-id='{id}']");
    assert_eq!(
        page.text_of(&format!("{} .time-left", g(active))),
        "2 days 3 hours left"
    );
    assert_eq!(page.text_of(&format!("{} .held-name", g(active))), "Season");
    assert_eq!(
        page.text_of(&format!("{} .held-covers", g(active))),
        "Every stream of Ann Live"
    );
    assert_eq!(
        page.attr(&format!("{} a.held-watch", g(active)), "href")
            .as_deref(),
        Some("/c/ann-live")
    );
    assert!(
        page.text_of(&format!("{} .time-left", g(stream_grant)))
            .starts_with("49 minutes left")
            || page
                .text_of(&format!("{} .time-left", g(stream_grant)))
                .starts_with("50 minutes left")
    );
    assert_eq!(
        page.text_of(&format!("{} .held-covers", g(stream_grant))),
        "Friday session on Ann Live"
    );
    assert_eq!(
        page.attr(&format!("{} a.held-watch", g(stream_grant)), "href"),
        Some(format!("/s/{friday}"))
    );
    assert!(
        page.text_of(&format!("{} .time-left", g(upcoming)))
            .starts_with("Starts in 2 hours")
            || page
                .text_of(&format!("{} .time-left", g(upcoming)))
                .starts_with("Starts in 3 hours")
    );
    assert_eq!(
        page.attr(&g(revoked), "data-state").as_deref(),
        Some("revoked")
    );
    assert_eq!(
        page.text_of(&format!("{} .revoked-reason", g(revoked))),
        "Reason: Chargeback"
    );
    assert_eq!(
        page.attr(&g(expired), "data-state").as_deref(),
        Some("expired")
    );
    assert!(
        page.text_of(&format!("{} .ended-when", g(expired)))
            .starts_with("Ended ")
    );

    // Purchase history: Vic's orders only, newest first.
    let orders: Vec<String> = {
        let html = page.html();
        let sel = scraper::Selector::parse("#purchases tbody tr").unwrap();
        html.select(&sel)
            .map(|e| e.value().attr("data-order-id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(orders, [refunded.to_string(), paid.to_string()]);
    let o = |id: i64| format!("#purchases tr[data-order-id='{id}']");
    assert_eq!(page.text_of(&format!("{} .order-pass", o(paid))), "Season");
    assert_eq!(page.text_of(&format!("{} .order-amount", o(paid))), "$9.00");
    assert_eq!(
        page.text_of(&format!("{} .order-status", o(refunded))),
        "Refunded"
    );

    // The navigation links here; anonymous visitors are sent to sign in.
    assert_eq!(
        page.attr(".nav-links a[href='/passes']", "href").as_deref(),
        Some("/passes")
    );
    let anon = app.anonymous().get("/passes").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.location().as_deref(), Some("/signin?next=%2Fpasses"));
}

#[tokio::test]
async fn my_passes_is_empty_for_a_new_viewer() {
    let app = TestApp::spawn().await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let page = vic.get("/passes").await;
    assert_eq!(page.status, StatusCode::OK);
    for section in ["active", "upcoming", "ended", "purchases"] {
        assert!(page.has(&format!("#{section} .empty")), "{section}");
    }
}
