//! Creator analytics: a scripted stream — real LiveKit viewers joining and
//! leaving (presence from real webhooks), chat through the chat route,
//! purchases through the dev payment provider, visits of the watch and pass
//! pages — whose figures, charts and CSV must match exactly; the figures of
//! known presence timestamps (set in SQL) to the second; and who may see what.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use scraper::Selector;
use stagepass::analytics;
use stagepass::db::channels::Channel;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;
use stagepass::db::{PassId, StreamId, UserId};

use crate::util::builders::{self, LiveKitClient};
use crate::util::{Browser, Page, TestApp};

// ---------------------------------------------------------------------------
// Helpers.

/// A pass on sale (the studio's pass form is tested elsewhere).
async fn pass(
    app: &TestApp,
    channel: &Channel,
    stream: Option<StreamId>,
    name: &str,
    cents: i64,
    currency: &str,
) -> PassId {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO access_passes (channel_id, stream_id, name, price_cents, currency, scope, duration_seconds) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $2 IS NULL THEN 'channel' ELSE 'stream' END, 86400) RETURNING id",
    )
    .bind::<BigInt, _>(channel.id.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(cents)
    .bind::<Text, _>(currency)
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    PassId(row.id)
}

/// Clicks the buy button of `pass` on `pass_page` (its hidden fields, the
/// stream among them): the dev provider's confirmation page it leads to.
async fn start_checkout(browser: &Browser, pass_page: &str, pass: PassId) -> String {
    let page = browser
        .submit(pass_page, &format!("#pass-{pass} .buy-form"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let to = page.location().unwrap();
    assert!(to.starts_with("/checkout/dev/"), "{to}");
    to
}

/// Buys `pass` from `pass_page` through the dev provider, confirmed.
async fn buy(browser: &Browser, pass_page: &str, pass: PassId) {
    let confirm = start_checkout(browser, pass_page, pass).await;
    let done = browser.submit(&confirm, "#dev-confirm-form", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
}

/// A viewer token from the watch page's endpoint, and a real client with it.
async fn join(browser: &Browser, stream: StreamId, seconds: u32) -> LiveKitClient {
    let page = browser.post_htmx(&format!("/s/{stream}/token"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let body: serde_json::Value = serde_json::from_str(&page.text).unwrap();
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        seconds,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    client
}

#[derive(QueryableByName, Debug, Clone)]
struct PresenceRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    user_id: Option<i64>,
    #[diesel(sql_type = Text)]
    identity: String,
    #[diesel(sql_type = Timestamptz)]
    joined_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    left_at: Option<DateTime<Utc>>,
}

async fn presence(app: &TestApp, stream: StreamId) -> Vec<PresenceRow> {
    diesel::sql_query(
        "SELECT user_id, identity, joined_at, left_at FROM presence WHERE stream_id = $1 ORDER BY id",
    )
    .bind::<BigInt, _>(stream.0)
    .load(&mut *app.conn().await)
    .await
    .unwrap()
}

/// Waits (polling the database, as the webhooks arrive) until `done` holds
/// for the stream's presence rows.
async fn wait_for_presence(
    app: &TestApp,
    stream: StreamId,
    what: &str,
    done: impl Fn(&[PresenceRow]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let rows = presence(app, stream).await;
        if done(&rows) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The channel's funnel events as (step, stream, visitor), in no order.
async fn funnel_events(app: &TestApp, channel: &Channel) -> Vec<(String, Option<i64>, String)> {
    #[derive(QueryableByName)]
    struct Event {
        #[diesel(sql_type = Text)]
        step: String,
        #[diesel(sql_type = Nullable<BigInt>)]
        stream_id: Option<i64>,
        #[diesel(sql_type = Text)]
        visitor: String,
    }
    let rows: Vec<Event> = diesel::sql_query(
        "SELECT step, stream_id, visitor FROM funnel_events WHERE channel_id = $1 ORDER BY id",
    )
    .bind::<BigInt, _>(channel.id.0)
    .load(&mut *app.conn().await)
    .await
    .unwrap();
    rows.into_iter()
        .map(|e| (e.step, e.stream_id, e.visitor))
        .collect()
}

/// Waits until `done` holds for the channel's funnel events (pages record
/// their step in the background, after the response).
async fn wait_for_funnel(
    app: &TestApp,
    channel: &Channel,
    what: &str,
    done: impl Fn(&[(String, Option<i64>, String)]) -> bool,
) -> Vec<(String, Option<i64>, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = funnel_events(app, channel).await;
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what} never recorded: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn open_sessions_of(rows: &[PresenceRow], user: UserId) -> usize {
    rows.iter()
        .filter(|r| r.identity == user.to_string() && r.left_at.is_none())
        .count()
}

/// What the figures must be, worked out here from presence rows: each
/// viewer's sessions merged, then counted (independently of the SQL).
struct Expected {
    unique: i64,
    peak: i64,
    watch_seconds: i64,
    average_seconds: Option<i64>,
    /// Merged (viewer, from, to), times in microseconds.
    visits: Vec<(i64, i64, i64)>,
}

fn expected(rows: &[PresenceRow], team: &[UserId], ended: DateTime<Utc>) -> Expected {
    let mut by_user: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for r in rows {
        let Some(u) = r.user_id else { continue };
        if r.identity != u.to_string() || team.contains(&UserId(u)) {
            continue;
        }
        let a = r.joined_at.timestamp_micros();
        let b = r.left_at.unwrap_or(ended).timestamp_micros().max(a);
        by_user.entry(u).or_default().push((a, b));
    }
    let mut visits = Vec::new();
    for (user, sessions) in by_user.iter_mut() {
        sessions.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for &(a, b) in sessions.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        visits.extend(merged.into_iter().map(|(a, b)| (*user, a, b)));
    }
    let mut events: Vec<(i64, i64)> = visits
        .iter()
        .flat_map(|&(_, a, b)| [(a, 1), (b, -1)])
        .collect();
    events.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    let micros: i64 = visits.iter().map(|(_, a, b)| b - a).sum();
    let watch_seconds = (micros + 500_000) / 1_000_000;
    let unique = by_user.len() as i64;
    Expected {
        unique,
        peak,
        watch_seconds,
        average_seconds: (unique > 0)
            .then(|| ((watch_seconds as f64) / (unique as f64)).round() as i64),
        visits,
    }
}

/// The number of points of each data series (`polyline.series`) of the SVG
/// inside `selector`, parsed as XML-ish HTML.
fn series_points(page: &Page, selector: &str) -> Vec<usize> {
    let html = page.html();
    let figure = html
        .select(&Selector::parse(selector).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no {selector} in:\n{}", page.text));
    let svg = figure
        .select(&Selector::parse("svg").unwrap())
        .next()
        .expect("an inline SVG");
    assert_eq!(svg.value().attr("role"), Some("img"));
    let title = svg
        .select(&Selector::parse("title").unwrap())
        .next()
        .expect("the SVG has a title");
    assert!(!title.text().collect::<String>().trim().is_empty());
    assert!(
        svg.select(&Selector::parse("text").unwrap())
            .next()
            .is_some(),
        "axis labels as text"
    );
    svg.select(&Selector::parse("polyline.series").unwrap())
        .map(|p| {
            p.value()
                .attr("points")
                .unwrap()
                .split_whitespace()
                .inspect(|pair| {
                    let (x, y) = pair.split_once(',').expect("x,y");
                    x.parse::<i32>().unwrap();
                    y.parse::<i32>().unwrap();
                })
                .count()
        })
        .collect()
}

/// The rows of the chart's accessible table: (row heading, cells).
fn chart_rows(page: &Page, selector: &str) -> Vec<(String, Vec<String>)> {
    let html = page.html();
    let row = Selector::parse(&format!("{selector} table.chart-table tbody tr")).unwrap();
    let th = Selector::parse("th[scope=row]").unwrap();
    let td = Selector::parse("td").unwrap();
    html.select(&row)
        .map(|r| {
            (
                r.select(&th).next().unwrap().text().collect::<String>(),
                r.select(&td)
                    .map(|c| c.text().collect::<String>())
                    .collect(),
            )
        })
        .collect()
}

/// A CSV body as rows of the fixed columns.
fn csv_rows(text: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(headers, analytics::export::COLUMNS);
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The value of the one row of `section` with `metric` (and `currency`).
fn csv_value(
    rows: &[HashMap<String, String>],
    section: &str,
    metric: &str,
    currency: &str,
) -> String {
    let found: Vec<&HashMap<String, String>> = rows
        .iter()
        .filter(|r| r["section"] == section && r["metric"] == metric && r["currency"] == currency)
        .collect();
    assert_eq!(found.len(), 1, "{section}/{metric}/{currency}: {found:?}");
    found[0]["value"].clone()
}

/// The funnel table's visitors and percentages, by step.
fn funnel(page: &Page) -> Vec<(String, String, String)> {
    let html = page.html();
    let row = Selector::parse("#funnel tbody tr").unwrap();
    let visitors = Selector::parse(".visitors").unwrap();
    let conversion = Selector::parse(".conversion").unwrap();
    html.select(&row)
        .map(|r| {
            (
                r.value().attr("data-step").unwrap().to_owned(),
                r.select(&visitors).next().unwrap().text().collect(),
                r.select(&conversion).next().unwrap().text().collect(),
            )
        })
        .collect()
}

/// (currency, sold, revenue as shown) rows of the sales table.
fn sales(page: &Page) -> Vec<(String, String, String)> {
    let html = page.html();
    let row = Selector::parse("#sales tbody tr").unwrap();
    let sold = Selector::parse(".sold").unwrap();
    let revenue = Selector::parse(".revenue").unwrap();
    html.select(&row)
        .map(|r| {
            (
                r.value().attr("data-currency").unwrap().to_owned(),
                r.select(&sold).next().unwrap().text().collect(),
                r.select(&revenue).next().unwrap().text().collect(),
            )
        })
        .collect()
}

async fn minutes_between(app: &TestApp, stream: StreamId) -> (DateTime<Utc>, i64) {
    #[derive(QueryableByName)]
    struct Span {
        #[diesel(sql_type = Timestamptz)]
        first: DateTime<Utc>,
        #[diesel(sql_type = BigInt)]
        minutes: i64,
    }
    let s: Span = diesel::sql_query(
        "SELECT date_trunc('minute', started_at) AS first, \
                (extract(epoch FROM date_trunc('minute', ended_at) - date_trunc('minute', started_at)) / 60)::int8 + 1 AS minutes \
           FROM streams WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.0)
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    (s.first, s.minutes)
}

// ---------------------------------------------------------------------------
// The scripted stream.

#[tokio::test]
async fn a_scripted_stream_s_figures_charts_and_csv_match_exactly() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "stats").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let (v1, v1_id) = builders::user(&app, "v1@example.com", "Viewer One").await;
    let (v2, v2_id) = builders::user(&app, "v2@example.com", "Viewer Two").await;
    let (v3, _) = builders::user(&app, "v3@example.com", "Viewer Three").await;
    let (v4, v4_id) = builders::user(&app, "v4@example.com", "Viewer Four").await;
    let stream_pass = pass(&app, &channel, Some(stream.id), "Stream ticket", 900, "USD").await;
    let euro_pass = pass(&app, &channel, None, "Channel day (EUR)", 1500, "EUR").await;
    let dollar_pass = pass(&app, &channel, None, "Channel day (USD)", 2000, "USD").await;
    // Announced (an unscheduled draft is the team's business only).
    builders::schedule_in(&app, stream.id, "1 hour").await;
    let watch = format!("/s/{}", stream.id);
    let stream_passes = format!("/s/{}/pass", stream.id);
    let channel_passes = format!("/c/{}/passes", channel.handle);

    // The funnel. An anonymous visitor, twice on each page: the first visit
    // only sets the cookie; from the second on they count, once per step.
    let anonymous = app.anonymous();
    let first = anonymous.get(&watch).await;
    assert_eq!(first.status, StatusCode::OK);
    let cookie = first
        .header("set-cookie")
        .expect("the visitor cookie is set");
    assert!(cookie.starts_with("stagepass_visitor="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain-http PUBLIC_URL: {cookie}"
    );
    let again = anonymous.get(&watch).await;
    assert!(
        again
            .header("set-cookie")
            .is_none_or(|c| !c.starts_with("stagepass_visitor=")),
        "the cookie is kept, not replaced"
    );
    anonymous.get(&stream_passes).await;
    anonymous.get(&stream_passes).await;
    // v1 buys the stream's own pass (USD); v2 a channel pass in EUR from the
    // stream's pass page; v3 starts a checkout and gives up; v4 buys a USD
    // channel pass from the channel's page (not this stream's sale).
    for v in [&v1, &v2, &v3] {
        assert_eq!(v.get(&watch).await.status, StatusCode::OK);
    }
    buy(&v1, &stream_passes, stream_pass).await;
    buy(&v2, &stream_passes, euro_pass).await;
    start_checkout(&v3, &stream_passes, stream_pass).await;
    buy(&v4, &channel_passes, dollar_pass).await;
    // Holding a pass now, v1's visit is no denied visit.
    v1.get(&watch).await;

    // Live: v1, v2, v4 and the moderator watch; v1 leaves and comes back.
    builders::go_live(&owner, stream.id).await;
    let mut first_v1 = join(&v1, stream.id, 2).await;
    let c2 = join(&v2, stream.id, 120).await;
    let c4 = join(&v4, stream.id, 120).await;
    let cm = join(&moderator, stream.id, 120).await;
    // v1's first session ends by itself after 2 s (a clean leave).
    assert_eq!(first_v1.next().await["disconnected"], false);
    first_v1.stop().await;
    wait_for_presence(&app, stream.id, "v1's leave", |rows| {
        rows.iter()
            .any(|r| r.identity == v1_id.to_string() && r.left_at.is_some())
    })
    .await;
    let c1 = join(&v1, stream.id, 120).await;
    wait_for_presence(&app, stream.id, "everyone's join", |rows| {
        [v1_id, v2_id, v4_id, moderator_id]
            .iter()
            .all(|u| open_sessions_of(rows, *u) == 1)
    })
    .await;

    // Chat: four messages, one deleted by the moderator.
    let chat = format!("/s/{}/chat", stream.id);
    for (who, body) in [
        (&v1, "hello"),
        (&v1, "great set"),
        (&v2, "bonjour"),
        (&moderator, "welcome all"),
    ] {
        let page = who.post_htmx(&chat, &[("body", body)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(!page.has(".chat-error"), "{}", page.text);
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let doomed: Id = diesel::sql_query("SELECT id FROM chat_messages WHERE body = 'great set'")
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    let deleted = moderator
        .post_htmx(&format!("/s/{}/chat/{}/delete", stream.id, doomed.id), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);

    // End: everyone is disconnected; every presence row closes.
    let end = owner
        .post_htmx(&format!("/studio/streams/{}/end", stream.id), &[])
        .await;
    assert_eq!(end.status, StatusCode::OK, "{}", end.text);
    wait_for_presence(&app, stream.id, "every leave", |rows| {
        rows.iter().all(|r| r.left_at.is_some())
    })
    .await;
    for c in [c1, c2, c4, cm] {
        c.stop().await;
    }

    // What the figures must be, from the presence rows LiveKit's webhooks left.
    let ended: Stream = stagepass::db::streams::find(&mut *app.conn().await, stream.id)
        .await
        .unwrap()
        .unwrap();
    let rows = presence(&app, stream.id).await;
    let want = expected(&rows, &[owner_id, moderator_id], ended.ended_at.unwrap());
    assert_eq!(want.unique, 3, "v1, v2 and v4; not the moderator: {rows:?}");
    // Every page view's funnel step is in: the anonymous visitor's second
    // watch page and pass page, v1–v3's watch and pass pages, v4's channel
    // pass page (the checkouts and payments are recorded in their requests).
    let events = wait_for_funnel(&app, &channel, "the page views", |e| {
        e.iter()
            .filter(|(step, _, _)| step == "denied_visit" || step == "pass_page")
            .count()
            >= 9
    })
    .await;
    assert_eq!(events.len(), 16, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|(_, _, v)| v.starts_with("a:"))
            .count(),
        2,
        "the anonymous visitor once on each page: {events:?}"
    );

    let page = owner
        .get(&format!("/studio/streams/{}/analytics", stream.id))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(page.text_of("#unique-viewers"), "3");
    // v1 (back), v2 and v4 were all connected at once before the end (the
    // script waited for it), and there are only three viewers.
    assert_eq!(page.text_of("#peak-viewers"), "3");
    assert_eq!(want.peak, 3);
    assert_eq!(
        page.attr("#total-watch", "data-seconds"),
        Some(want.watch_seconds.to_string())
    );
    assert_eq!(
        page.attr("#average-watch", "data-seconds"),
        want.average_seconds.map(|a| a.to_string())
    );
    assert_eq!(page.text_of("#chat-messages"), "3");
    assert_eq!(page.text_of("#deleted-messages"), "1");
    // Two currencies, each on its own row, never added together.
    assert_eq!(
        sales(&page),
        vec![
            ("EUR".to_owned(), "1".to_owned(), "€15.00".to_owned()),
            ("USD".to_owned(), "1".to_owned(), "$9.00".to_owned()),
        ]
    );
    // anonymous, v1, v2, v3 were denied and saw the pass page; v1, v2, v3
    // started a checkout here; v1 and v2 paid.
    assert_eq!(
        funnel(&page),
        vec![
            ("denied_visit".to_owned(), "4".to_owned(), "—".to_owned()),
            ("pass_page".to_owned(), "4".to_owned(), "100.0 %".to_owned()),
            (
                "checkout_started".to_owned(),
                "3".to_owned(),
                "75.0 %".to_owned()
            ),
            ("paid".to_owned(), "2".to_owned(), "66.7 %".to_owned()),
            ("previewed".to_owned(), "0".to_owned(), "0.0 %".to_owned()),
            ("preview_paid".to_owned(), "0".to_owned(), "—".to_owned()),
        ]
    );

    // The charts: one point per minute from start to end, both included.
    let (first_minute, minutes) = minutes_between(&app, stream.id).await;
    assert_eq!(
        series_points(&page, "#viewers-chart"),
        vec![minutes as usize]
    );
    assert_eq!(series_points(&page, "#chat-chart"), vec![minutes as usize]);
    let viewers_table = chart_rows(&page, "#viewers-chart");
    assert_eq!(viewers_table.len(), minutes as usize);
    // Each minute's viewers as the merged visits say: distinct people
    // present at any time in it (v1 once, even when they left and came back).
    for (i, (_, cells)) in viewers_table.iter().enumerate() {
        let m = first_minute.timestamp_micros() + i as i64 * 60_000_000;
        let present = want
            .visits
            .iter()
            .filter(|(_, a, b)| *a < m + 60_000_000 && *b > m)
            .map(|(user, _, _)| *user)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(cells, &vec![present.to_string()], "minute {i}");
    }
    let chat_total: i64 = chart_rows(&page, "#chat-chart")
        .iter()
        .map(|(_, c)| c[0].parse::<i64>().unwrap())
        .sum();
    assert_eq!(chat_total, 3);

    // The CSV says the same.
    let csv = owner
        .get(&format!("/studio/streams/{}/analytics.csv", stream.id))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert!(
        csv.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment;"))
    );
    let rows = csv_rows(&csv.text);
    assert_eq!(csv_value(&rows, "summary", "unique_viewers", ""), "3");
    assert_eq!(csv.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        csv_value(&rows, "summary", "peak_concurrent_viewers", ""),
        "3"
    );
    assert_eq!(
        csv_value(&rows, "summary", "total_watch_seconds", ""),
        want.watch_seconds.to_string()
    );
    assert_eq!(csv_value(&rows, "summary", "chat_messages", ""), "3");
    assert_eq!(csv_value(&rows, "sales", "passes_sold", "USD"), "1");
    assert_eq!(csv_value(&rows, "sales", "revenue", "USD"), "9.00");
    assert_eq!(csv_value(&rows, "sales", "revenue", "EUR"), "15.00");
    assert_eq!(csv_value(&rows, "funnel", "denied_visit", ""), "4");
    assert_eq!(csv_value(&rows, "funnel", "paid", ""), "2");
    let per_minute = rows
        .iter()
        .filter(|r| r["section"] == "per_minute" && r["metric"] == "viewers_during_minute")
        .count();
    assert_eq!(per_minute as i64, minutes);

    // The channel: every sale of its passes, per currency; the funnel adds
    // v4, who came straight to the channel's pass page (no denied visit:
    // counted from the pass page on).
    let overview = owner
        .get(&format!("/studio/channels/{}/analytics", channel.handle))
        .await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    assert_eq!(overview.text_of("#unique-viewers"), "3");
    assert_eq!(overview.text_of("#chat-messages"), "3");
    assert_eq!(
        sales(&overview),
        vec![
            ("EUR".to_owned(), "1".to_owned(), "€15.00".to_owned()),
            ("USD".to_owned(), "2".to_owned(), "$29.00".to_owned()),
        ]
    );
    assert_eq!(
        funnel(&overview)
            .into_iter()
            .map(|(_, n, p)| (n, p))
            .collect::<Vec<_>>(),
        vec![
            ("5".to_owned(), "—".to_owned()),
            ("5".to_owned(), "100.0 %".to_owned()),
            ("4".to_owned(), "80.0 %".to_owned()),
            ("3".to_owned(), "75.0 %".to_owned()),
            ("0".to_owned(), "0.0 %".to_owned()),
            ("0".to_owned(), "—".to_owned()),
        ]
    );
    assert_eq!(
        overview.header("cache-control").as_deref(),
        Some("no-store")
    );
    let line = overview.text_of(&format!(
        "#streams tr[data-stream-id=\"{}\"] .sales",
        stream.id
    ));
    assert_eq!(line, "1 sold · €15.00 1 sold · $9.00");
    // Revenue per day: a chart per currency, 30 days each, summing to the sales.
    for (id, total) in [("#revenue-chart-usd", 2900), ("#revenue-chart-eur", 1500)] {
        assert_eq!(series_points(&overview, id), vec![30]);
        let days = chart_rows(&overview, id);
        assert_eq!(days.len(), 30);
        let cents: i64 = days
            .iter()
            .map(|(_, c)| (c[0].parse::<f64>().unwrap() * 100.0).round() as i64)
            .sum();
        assert_eq!(cents, total, "{id}");
    }
    let channel_csv = csv_rows(
        &owner
            .get(&format!(
                "/studio/channels/{}/analytics.csv",
                channel.handle
            ))
            .await
            .text,
    );
    assert_eq!(
        csv_value(&channel_csv, "channel_sales", "revenue", "USD"),
        "29.00"
    );
    assert_eq!(
        csv_value(&channel_csv, "channel_sales", "revenue", "EUR"),
        "15.00"
    );
    assert_eq!(
        csv_value(&channel_csv, "channel", "unique_viewers", ""),
        "3"
    );
    let usd_days: f64 = channel_csv
        .iter()
        .filter(|r| {
            r["section"] == "revenue_per_day" && r["metric"] == "revenue" && r["currency"] == "USD"
        })
        .map(|r| r["value"].parse::<f64>().unwrap())
        .sum();
    assert_eq!(usd_days, 29.0);

    // Orders carry their stream and the time they were paid.
    #[derive(QueryableByName, Debug, PartialEq)]
    struct OrderRow {
        #[diesel(sql_type = BigInt)]
        user_id: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        stream_id: Option<i64>,
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        has_paid_at: bool,
    }
    let orders: Vec<OrderRow> = diesel::sql_query(
        "SELECT user_id, stream_id, status, paid_at IS NOT NULL AS has_paid_at FROM orders ORDER BY id",
    )
    .load(&mut *app.conn().await)
    .await
    .unwrap();
    let s = Some(stream.id.0);
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.stream_id, o.status.as_str(), o.has_paid_at))
            .collect::<Vec<_>>(),
        vec![
            (s, "paid", true),
            (s, "paid", true),
            (s, "pending", false),
            (None, "paid", true)
        ]
    );
    assert_eq!(orders[0].user_id, v1_id.0);
}

// ---------------------------------------------------------------------------
// Known presence, to the second.

#[tokio::test]
async fn figures_from_known_presence_chat_and_orders_are_exact() {
    let app = TestApp::spawn().await;
    let (_, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "known").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    let (_, m) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, m).await;
    let (_, a) = builders::user(&app, "a@example.com", "A").await;
    let (_, b) = builders::user(&app, "b@example.com", "B").await;
    let (_, c) = builders::user(&app, "c@example.com", "C").await;
    let mut conn = app.conn().await;
    diesel::sql_query(
        "UPDATE streams SET status = 'ended', started_at = '2026-03-01 10:00:30+00', \
                ended_at = '2026-03-01 10:05:10+00' WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.id.0)
    .execute(&mut *conn)
    .await
    .unwrap();
    let sessions: [(Option<UserId>, String, &str, Option<&str>); 7] = [
        // A: two overlapping sessions (a reconnect): 10:01:00–10:04:00 merged.
        (Some(a), a.to_string(), "10:01:00", Some("10:03:00")),
        (Some(a), a.to_string(), "10:02:30", Some("10:04:00")),
        // B: never left; counted until the stream ended (190 s).
        (Some(b), b.to_string(), "10:02:00", None),
        // C: joins the instant A leaves (20 s).
        (Some(c), c.to_string(), "10:04:00", Some("10:04:20")),
        // Not viewers: the host, an egress, a moderator.
        (Some(owner_id), format!("host-{owner_id}"), "10:00:30", None),
        (None, "EG_recorder".to_owned(), "10:00:31", None),
        (Some(m), m.to_string(), "10:01:00", Some("10:02:00")),
    ];
    for (i, (user, identity, joined, left)) in sessions.iter().enumerate() {
        diesel::sql_query(
            "INSERT INTO presence (stream_id, room_name, user_id, identity, participant_sid, joined_at, left_at) \
             VALUES ($1, 'r', $2, $3, $4, ('2026-03-01 ' || $5 || '+00')::timestamptz, \
                     ('2026-03-01 ' || $6 || '+00')::timestamptz)",
        )
        .bind::<BigInt, _>(stream.id.0)
        .bind::<Nullable<BigInt>, _>(user.map(|u| u.0))
        .bind::<Text, _>(identity)
        .bind::<Text, _>(format!("PA_{i}"))
        .bind::<Text, _>(*joined)
        .bind::<Nullable<Text>, _>(*left)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    // Chat: one before the start (counted, not charted), four during, one deleted.
    for (at, deleted) in [
        ("09:59:00", false),
        ("10:00:45", false),
        ("10:02:10", false),
        ("10:02:50", false),
        ("10:03:00", true),
        ("10:05:05", false),
    ] {
        diesel::sql_query(
            "INSERT INTO chat_messages (stream_id, author_id, body, created_at, deleted_at) \
             VALUES ($1, $2, 'hi', ('2026-03-01 ' || $3 || '+00')::timestamptz, \
                     CASE WHEN $4 THEN now() END)",
        )
        .bind::<BigInt, _>(stream.id.0)
        .bind::<BigInt, _>(a.0)
        .bind::<Text, _>(at)
        .bind::<diesel::sql_types::Bool, _>(deleted)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    let f = analytics::stream_figures(&mut conn, stream.id)
        .await
        .unwrap();
    assert_eq!(f.unique_viewers, 3);
    // A (merged) and B at once; at 10:04:00 A leaves as C joins: still 2.
    assert_eq!(f.peak_viewers, 2);
    assert_eq!(f.watch_seconds, 180 + 190 + 20);
    assert_eq!(f.average_watch_seconds, Some(130));
    assert_eq!(f.chat_messages, 5);
    assert_eq!(f.deleted_messages, 1);

    let timeline = analytics::timeline(&mut conn, stream.id).await.unwrap();
    assert_eq!(
        timeline
            .iter()
            .map(|b| b.at.format("%H:%M").to_string())
            .collect::<Vec<_>>(),
        vec!["10:00", "10:01", "10:02", "10:03", "10:04", "10:05"]
    );
    assert!(timeline.iter().all(|b| b.minutes == 1));
    assert_eq!(
        timeline.iter().map(|b| b.viewers).collect::<Vec<_>>(),
        vec![0, 1, 2, 2, 2, 1]
    );
    assert_eq!(
        timeline.iter().map(|b| b.messages).collect::<Vec<_>>(),
        vec![1, 0, 2, 0, 0, 1]
    );

    // A second stream of the channel: B again, and D.
    let other = builders::stream(&app, &channel, AccessKind::Public).await;
    let (_, d) = builders::user(&app, "d@example.com", "D").await;
    diesel::sql_query(
        "UPDATE streams SET status = 'ended', started_at = '2026-03-02 10:00:00+00', \
                ended_at = '2026-03-02 11:00:00+00' WHERE id = $1",
    )
    .bind::<BigInt, _>(other.id.0)
    .execute(&mut *conn)
    .await
    .unwrap();
    for (i, u) in [b, d].iter().enumerate() {
        diesel::sql_query(
            "INSERT INTO presence (stream_id, room_name, user_id, identity, participant_sid, joined_at, left_at) \
             VALUES ($1, 'r2', $2, $3, $4, '2026-03-02 10:00:00+00', '2026-03-02 10:10:00+00')",
        )
        .bind::<BigInt, _>(other.id.0)
        .bind::<BigInt, _>(u.0)
        .bind::<Text, _>(u.to_string())
        .bind::<Text, _>(format!("PB_{i}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    // A draft nobody announced yet is the team's business: not counted.
    builders::stream(&app, &channel, AccessKind::Pass).await;
    let totals = analytics::channel_totals(&mut conn, channel.id)
        .await
        .unwrap();
    assert_eq!(totals.streams, 2, "the unannounced draft is left out");
    assert_eq!(totals.peak_viewers, 2, "the highest of any one stream");
    assert_eq!(totals.unique_viewers, 4, "A, B, C, D: B once");
    assert_eq!(totals.watch_seconds, 390 + 1200);
    assert_eq!(totals.average_watch_seconds, Some(398), "1590 / 4, rounded");
    assert_eq!(totals.chat_messages, 5);
    let per_stream = analytics::channel_streams(&mut conn, channel.id)
        .await
        .unwrap();
    assert_eq!(
        per_stream
            .iter()
            .map(|s| (s.stream_id, s.unique_viewers))
            .collect::<Vec<_>>(),
        vec![(other.id.0, 2), (stream.id.0, 3)],
        "the latest first"
    );

    // Orders: paid in two currencies, one refunded, one too old for the
    // chart, and a free pass (a sale at 0).
    let usd = pass(&app, &channel, None, "Day", 900, "USD").await;
    let eur = pass(&app, &channel, Some(stream.id), "Ticket", 1500, "EUR").await;
    let free = pass(&app, &channel, Some(stream.id), "Guest", 0, "EUR").await;
    for (p, cents, currency, status, paid_days_ago, from) in [
        (free, 0, "EUR", "paid", Some(0), Some(stream.id)),
        (usd, 900, "USD", "paid", Some(0), Some(stream.id)),
        (usd, 900, "USD", "paid", Some(3), None),
        (usd, 900, "USD", "refunded", Some(1), Some(stream.id)),
        (usd, 900, "USD", "paid", Some(45), None),
        (eur, 1500, "EUR", "paid", Some(3), None),
        (usd, 900, "USD", "pending", None, Some(stream.id)),
    ] {
        diesel::sql_query(
            "INSERT INTO orders (user_id, pass_id, amount_cents, currency, provider, status, stream_id, paid_at) \
             VALUES ($1, $2, $3, $4, 'dev', $5, $6, now() - make_interval(days => $7))",
        )
        .bind::<BigInt, _>(a.0)
        .bind::<BigInt, _>(p.0)
        .bind::<BigInt, _>(cents)
        .bind::<Text, _>(currency)
        .bind::<Text, _>(status)
        .bind::<Nullable<BigInt>, _>(from.map(|s| s.0))
        .bind::<Nullable<diesel::sql_types::Integer>, _>(paid_days_ago)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let sold = analytics::stream_sales(&mut conn, stream.id).await.unwrap();
    assert_eq!(
        sold.iter()
            .map(|s| (s.currency.as_str(), s.sold, s.free, s.revenue_cents))
            .collect::<Vec<_>>(),
        vec![("EUR", 2, 1, 1500), ("USD", 1, 0, 900)],
        "from the stream, or a pass for it alone; free passes sold at 0; refunds and pending excluded"
    );
    let all = analytics::channel_sales(&mut conn, channel.id)
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|s| (s.currency.as_str(), s.sold, s.free, s.revenue_cents))
            .collect::<Vec<_>>(),
        vec![("EUR", 2, 1, 1500), ("USD", 3, 0, 2700)]
    );
    let days = analytics::revenue_per_day(&mut conn, channel.id)
        .await
        .unwrap();
    assert_eq!(days.len(), 60, "30 days for each currency sold in them");
    for currency in ["EUR", "USD"] {
        let own: Vec<_> = days
            .iter()
            .filter(|d| d.currency.as_deref() == Some(currency))
            .collect();
        assert_eq!(own.len(), 30);
        assert!(
            own.windows(2)
                .all(|w| (w[1].day - w[0].day).num_days() == 1)
        );
        let nonzero: Vec<(i64, i64)> = own
            .iter()
            .enumerate()
            .filter(|(_, d)| d.revenue_cents > 0)
            .map(|(i, d)| (29 - i as i64, d.revenue_cents))
            .collect();
        let want = if currency == "USD" {
            vec![(3, 900), (0, 900)]
        } else {
            vec![(3, 1500)]
        };
        assert_eq!(nonzero, want, "{currency}: (days ago, cents)");
    }
    // A channel that sold nothing still has its 30 days, at zero.
    let (_, e) = builders::user(&app, "e@example.com", "E").await;
    let quiet = builders::channel(&app, e, "quiet").await;
    let days = analytics::revenue_per_day(&mut conn, quiet.id)
        .await
        .unwrap();
    assert_eq!(days.len(), 30);
    assert!(
        days.iter()
            .all(|d| d.currency.is_none() && d.revenue_cents == 0)
    );

    // The funnel: each visitor once per step, and only if they reached the
    // step before; percentages of the step before. y came straight to the
    // pass page (a link) and bought; z started a checkout without a pass
    // page, w was recorded as paid only: neither is counted past the entry.
    let visitor = |s: &str| analytics::Visitor::anonymous(s).unwrap();
    for (step, who, on) in [
        (analytics::Step::DeniedVisit, visitor("x1"), Some(stream.id)),
        (analytics::Step::DeniedVisit, visitor("x1"), Some(stream.id)),
        (analytics::Step::DeniedVisit, visitor("x2"), Some(stream.id)),
        (
            analytics::Step::DeniedVisit,
            analytics::Visitor::user(b),
            Some(stream.id),
        ),
        (analytics::Step::PassPage, visitor("x1"), Some(stream.id)),
        (analytics::Step::PassPage, visitor("x1"), None),
        (
            analytics::Step::PassPage,
            analytics::Visitor::user(b),
            Some(stream.id),
        ),
        (
            analytics::Step::CheckoutStarted,
            analytics::Visitor::user(b),
            Some(stream.id),
        ),
        (analytics::Step::PassPage, visitor("y"), Some(stream.id)),
        (
            analytics::Step::CheckoutStarted,
            visitor("y"),
            Some(stream.id),
        ),
        (analytics::Step::Paid, visitor("y"), Some(stream.id)),
        (analytics::Step::DeniedVisit, visitor("z"), Some(stream.id)),
        (
            analytics::Step::CheckoutStarted,
            visitor("z"),
            Some(stream.id),
        ),
        (analytics::Step::Paid, visitor("z"), Some(stream.id)),
        (analytics::Step::Paid, visitor("w"), Some(stream.id)),
        // Free previews: x2 and z watched one (z then paid); w's counts
        // nowhere (w never arrived).
        (analytics::Step::Previewed, visitor("x2"), Some(stream.id)),
        (analytics::Step::Previewed, visitor("z"), Some(stream.id)),
        (analytics::Step::Previewed, visitor("w"), Some(stream.id)),
        // The team looking at their own pages is not the audience.
        (
            analytics::Step::DeniedVisit,
            analytics::Visitor::user(m),
            Some(stream.id),
        ),
        (
            analytics::Step::PassPage,
            analytics::Visitor::user(owner_id),
            Some(stream.id),
        ),
    ] {
        analytics::record(&mut conn, step, channel.id, on, &who)
            .await
            .unwrap();
    }
    let steps = analytics::funnel(&mut conn, channel.id, Some(stream.id))
        .await
        .unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| (
                s.step.as_str(),
                s.visitors,
                s.of_previous.map(|p| (p * 10.0).round() / 10.0)
            ))
            .collect::<Vec<_>>(),
        vec![
            ("denied_visit", 5, None),
            ("pass_page", 3, Some(60.0)),
            ("checkout_started", 2, Some(66.7)),
            ("paid", 1, Some(50.0)),
            ("previewed", 2, Some(40.0)),
            ("preview_paid", 1, Some(50.0)),
        ],
        "entry: x1, x2, b, y, z; pass page: x1, b, y; checkout: b, y; paid: y; \
         previewed: x2, z; of those paid: z"
    );
    assert!(
        steps[..4]
            .windows(2)
            .all(|w| w[1].visitors <= w[0].visitors)
    );
    let whole = analytics::funnel(&mut conn, channel.id, None)
        .await
        .unwrap();
    assert_eq!(
        whole[1].visitors, 3,
        "x1 on two pass pages is one visitor (with b and y)"
    );
}

// ---------------------------------------------------------------------------
// Who sees what.

#[tokio::test]
async fn only_the_team_sees_analytics_and_only_the_owner_sees_money() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "team-only").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    // A title a spreadsheet would run as a formula, and HTML.
    diesel::sql_query(
        "UPDATE streams SET title = '=HYPERLINK(\"http://evil.example\")<b>', \
                scheduled_at = now() + interval '1 day' WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.id.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let (elsewhere, elsewhere_id) = builders::user(&app, "else@example.com", "Other mod").await;
    let (_, other_owner) = builders::user(&app, "other@example.com", "Other").await;
    let other = builders::channel(&app, other_owner, "other-channel").await;
    builders::moderator(&app, other.id, elsewhere_id).await;

    let urls = [
        format!("/studio/streams/{}/analytics", stream.id),
        format!("/studio/streams/{}/analytics.csv", stream.id),
        format!("/studio/channels/{}/analytics", channel.handle),
        format!("/studio/channels/{}/analytics.csv", channel.handle),
    ];
    for url in &urls {
        assert_eq!(
            stranger.get(url).await.status,
            StatusCode::FORBIDDEN,
            "{url}"
        );
        assert_eq!(
            elsewhere.get(url).await.status,
            StatusCode::FORBIDDEN,
            "{url}"
        );
        let anonymous = app.anonymous().get(url).await;
        assert_eq!(anonymous.status, StatusCode::SEE_OTHER, "{url}");
        assert!(
            anonymous.location().unwrap().starts_with("/signin"),
            "{url}"
        );
        assert_eq!(owner.get(url).await.status, StatusCode::OK, "{url}");
        assert_eq!(moderator.get(url).await.status, StatusCode::OK, "{url}");
    }
    let refusal = stranger.get(&urls[0]).await;
    assert!(
        refusal.text.contains("owner and moderators"),
        "{}",
        refusal.text
    );
    assert_eq!(
        app.anonymous()
            .get("/studio/streams/999999/analytics")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        owner.get("/studio/streams/999999/analytics").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        owner
            .get("/studio/channels/nope-nope/analytics")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The owner sees money; a moderator the audience only.
    let mine = owner.get(&urls[0]).await;
    assert!(mine.has("#sales-section") && mine.has("#funnel"));
    assert!(mine.has("#not-live-yet"), "a draft has no charts yet");
    assert_eq!(
        mine.texts("#analytics-title b").len(),
        0,
        "the title is escaped"
    );
    let theirs = moderator.get(&urls[0]).await;
    assert!(theirs.has("#unique-viewers") && theirs.has("#team-note"));
    assert!(
        !theirs.has("#sales-section") && !theirs.has("#funnel"),
        "{}",
        theirs.text
    );
    let overview = moderator.get(&urls[2]).await;
    assert!(
        !overview.has("#sales-section") && !overview.has("#revenue"),
        "{}",
        overview.text
    );
    assert!(
        owner.get(&urls[2]).await.has("#revenue-chart"),
        "zero revenue still charts its 30 days"
    );

    // A sale from the stream and a funnel step, so that the owner's CSVs have
    // money in them: the moderator's have none — no sales or funnel section,
    // no money metric, no currency on any row.
    let ticket = pass(&app, &channel, Some(stream.id), "Ticket", 700, "USD").await;
    diesel::sql_query(
        "INSERT INTO orders (user_id, pass_id, amount_cents, currency, provider, status, stream_id, paid_at) \
         VALUES ($1, $2, 700, 'USD', 'dev', 'paid', $3, now())",
    )
    .bind::<BigInt, _>(moderator_id.0)
    .bind::<BigInt, _>(ticket.0)
    .bind::<BigInt, _>(stream.id.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    analytics::record(
        &mut *app.conn().await,
        analytics::Step::PassPage,
        channel.id,
        Some(stream.id),
        &analytics::Visitor::anonymous("someone").unwrap(),
    )
    .await
    .unwrap();
    let money_metrics = ["passes_sold", "free_passes", "revenue"];
    for url in [&urls[1], &urls[3]] {
        let owners = csv_rows(&owner.get(url).await.text);
        assert!(
            owners
                .iter()
                .any(|r| r["metric"] == "revenue" && r["currency"] == "USD"),
            "{url}: the owner's CSV has the sale: {owners:?}"
        );
        assert!(owners.iter().any(|r| r["section"] == "funnel"), "{url}");
        let csv = moderator.get(url).await;
        assert_eq!(csv.status, StatusCode::OK, "{url}");
        let rows = csv_rows(&csv.text);
        assert!(!rows.is_empty(), "{url}");
        for r in &rows {
            assert!(
                !money_metrics.contains(&r["metric"].as_str())
                    && r["currency"].is_empty()
                    && !["sales", "channel_sales", "funnel", "revenue_per_day"]
                        .contains(&r["section"].as_str()),
                "{url}: a moderator's CSV shows money: {r:?}"
            );
        }
    }
    // Pages and CSVs with revenue on them are never cached.
    for url in &urls {
        for who in [&owner, &moderator] {
            assert_eq!(
                who.get(url).await.header("cache-control").as_deref(),
                Some("no-store"),
                "{url}"
            );
        }
    }

    // CSV: an attachment, and the title cannot start a formula.
    let csv = owner.get(&urls[3]).await;
    assert_eq!(
        csv.header("content-disposition").as_deref(),
        Some("attachment; filename=\"channel-team-only-analytics.csv\"")
    );
    let rows = csv_rows(&csv.text);
    let titles: Vec<&String> = rows
        .iter()
        .filter(|r| r["stream_id"] == stream.id.to_string())
        .map(|r| &r["stream_title"])
        .collect();
    assert!(!titles.is_empty());
    assert!(
        titles
            .iter()
            .all(|t| t.as_str() == "'=HYPERLINK(\"http://evil.example\")<b>"),
        "{titles:?}"
    );

    // The studio links here.
    let studio = owner.get(&format!("/studio/streams/{}", stream.id)).await;
    assert_eq!(
        studio.attr("#analytics-link", "href"),
        Some(format!("/studio/streams/{}/analytics", stream.id))
    );
    let dashboard = owner.get("/studio").await;
    assert!(dashboard.has(&format!(
        "#channel-{} a[href=\"/studio/channels/{}/analytics\"]",
        channel.handle, channel.handle
    )));
}

// ---------------------------------------------------------------------------
// Figures that must not change after the fact, and visits that must not count.

#[tokio::test]
async fn a_viewer_who_deletes_their_account_still_counts() {
    let app = TestApp::spawn().await;
    let (_, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "kept").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let (_, gone) = builders::user(&app, "gone@example.com", "Gone").await;
    let (_, stays) = builders::user(&app, "stays@example.com", "Stays").await;
    let mut conn = app.conn().await;
    diesel::sql_query(
        "UPDATE streams SET status = 'ended', started_at = '2026-03-01 10:00:00+00', \
                ended_at = '2026-03-01 10:10:00+00' WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.id.0)
    .execute(&mut *conn)
    .await
    .unwrap();
    for (i, (u, joined, left)) in [
        (gone, "10:01:00", "10:05:00"),
        (stays, "10:02:00", "10:03:00"),
    ]
    .into_iter()
    .enumerate()
    {
        diesel::sql_query(
            "INSERT INTO presence (stream_id, room_name, user_id, identity, participant_sid, joined_at, left_at) \
             VALUES ($1, 'r', $2, $3, $4, ('2026-03-01 ' || $5 || '+00')::timestamptz, \
                     ('2026-03-01 ' || $6 || '+00')::timestamptz)",
        )
        .bind::<BigInt, _>(stream.id.0)
        .bind::<BigInt, _>(u.0)
        .bind::<Text, _>(u.to_string())
        .bind::<Text, _>(format!("PD_{i}"))
        .bind::<Text, _>(joined)
        .bind::<Text, _>(left)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let figures =
        |f: &analytics::StreamFigures| (f.unique_viewers, f.peak_viewers, f.watch_seconds);
    let before = analytics::stream_figures(&mut conn, stream.id)
        .await
        .unwrap();
    assert_eq!(figures(&before), (2, 2, 240 + 60));
    let timeline_before: Vec<i64> = analytics::timeline(&mut conn, stream.id)
        .await
        .unwrap()
        .iter()
        .map(|b| b.viewers)
        .collect();
    assert_eq!(timeline_before, vec![0, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0]);

    // The account goes; its presence rows stay, without a user.
    diesel::sql_query("DELETE FROM users WHERE id = $1")
        .bind::<BigInt, _>(gone.0)
        .execute(&mut *conn)
        .await
        .unwrap();
    let rows = presence(&app, stream.id).await;
    assert!(
        rows.iter()
            .any(|r| r.user_id.is_none() && r.identity == gone.to_string()),
        "{rows:?}"
    );

    let after = analytics::stream_figures(&mut conn, stream.id)
        .await
        .unwrap();
    assert_eq!(figures(&after), figures(&before));
    let timeline_after: Vec<i64> = analytics::timeline(&mut conn, stream.id)
        .await
        .unwrap()
        .iter()
        .map(|b| b.viewers)
        .collect();
    assert_eq!(timeline_after, timeline_before);
    let totals = analytics::channel_totals(&mut conn, channel.id)
        .await
        .unwrap();
    assert_eq!((totals.unique_viewers, totals.watch_seconds), (2, 300));
}

#[tokio::test]
async fn anonymous_visits_count_from_the_cookie_s_return_and_public_streams_are_no_funnel() {
    let app = TestApp::spawn().await;
    let (_, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "doors").await;
    let paid = builders::stream(&app, &channel, AccessKind::Pass).await;
    let public = builders::stream(&app, &channel, AccessKind::Public).await;
    diesel::sql_query(
        "UPDATE streams SET scheduled_at = now() + interval '1 hour' WHERE channel_id = $1",
    )
    .bind::<BigInt, _>(channel.id.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    let (user, user_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let watch_paid = format!("/s/{}", paid.id);
    let watch_public = format!("/s/{}", public.id);

    // Clients that keep no cookies (bots): each request gets a cookie, none counts.
    for _ in 0..3 {
        let hit = app.anonymous().get(&watch_paid).await;
        assert_eq!(hit.status, StatusCode::OK);
        assert!(
            hit.header("set-cookie")
                .is_some_and(|c| c.starts_with("stagepass_visitor=")),
        );
    }
    // A person: the first visit sets the cookie and is not counted either.
    let person = app.anonymous();
    let first = person.get(&watch_paid).await;
    let cookie = first.header("set-cookie").expect("the visitor cookie");
    let id = cookie
        .strip_prefix("stagepass_visitor=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    // Anonymous and signed-in visits of a public stream are not the funnel
    // (it only asks people to sign in), and set no cookie.
    let fresh = app.anonymous().get(&watch_public).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(
        fresh
            .header("set-cookie")
            .is_none_or(|c| !c.starts_with("stagepass_visitor=")),
        "no visitor cookie on a public stream"
    );
    person.get(&watch_public).await;
    user.get(&watch_public).await;
    // A signed-in visit of the pass stream counts at once: once it is in,
    // the visits before it would have been too.
    user.get(&watch_paid).await;
    let events = wait_for_funnel(&app, &channel, "the signed-in denied visit", |e| {
        !e.is_empty()
    })
    .await;
    assert_eq!(
        events,
        vec![(
            "denied_visit".to_owned(),
            Some(paid.id.0),
            format!("u:{user_id}")
        )],
        "no row for the cookie-less visits or the public stream"
    );

    // The person comes back with the cookie: now they count.
    let again = person.get(&watch_paid).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(
        again
            .header("set-cookie")
            .is_none_or(|c| !c.starts_with("stagepass_visitor=")),
        "the cookie is kept"
    );
    person.get(&watch_public).await;
    person.get(&format!("/s/{}/pass", paid.id)).await;
    let events = wait_for_funnel(&app, &channel, "the returning visitor", |e| e.len() >= 3).await;
    let visitor = format!("a:{id}");
    let mut mine: Vec<(String, Option<i64>)> = events
        .iter()
        .filter(|(_, _, v)| *v == visitor)
        .map(|(step, stream, _)| (step.clone(), *stream))
        .collect();
    mine.sort();
    assert_eq!(
        mine,
        vec![
            ("denied_visit".to_owned(), Some(paid.id.0)),
            ("pass_page".to_owned(), Some(paid.id.0)),
        ]
    );
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, stream, _)| *stream != Some(public.id.0)),
        "{events:?}"
    );
}
