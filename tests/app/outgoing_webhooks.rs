//! Channels' outgoing webhooks, delivered to a real HTTP receiver served by
//! the test: signed (checked here with the secret read from the page), the
//! expected JSON for stream.started / recording.ready / stream.ended,
//! retries with backoff until the receiver takes it (and the log shows every
//! attempt), giving up, private addresses refused at delivery time, form
//! validation next to the field, owner only, and no secret in any log line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode as AxumStatus;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::{recordings, webhook_attempts, webhook_deliveries, webhook_endpoints};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::builders;
use crate::util::logs::Logs;
use crate::util::webhook_receiver::{Receiver, plant};
use crate::util::{Browser, Page, TestApp};

// ---------------------------------------------------------------------------

/// An app that may deliver to the test's receiver on 127.0.0.1, retrying fast.
async fn app_for_receivers(max_attempts: &str) -> TestApp {
    let max_attempts = max_attempts.to_owned();
    TestApp::spawn_with(move |env| {
        env.insert("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES".into(), "true".into());
        env.insert("WEBHOOKS_BACKOFF_BASE_MS".into(), "200".into());
        env.insert("WEBHOOKS_MAX_ATTEMPTS".into(), max_attempts);
        // Its recordings come from the stand-in's Egress (no media here).
        env.insert("RECORDER".into(), "egress".into());
    })
    .await
}

struct Setup {
    app: TestApp,
    owner: Browser,
    handle: String,
    stream: Stream,
}

async fn setup(app: TestApp, handle: &str) -> Setup {
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, handle).await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    Setup {
        app,
        owner,
        handle: handle.to_owned(),
        stream,
    }
}

impl Setup {
    fn page(&self) -> String {
        format!("/studio/channels/{}/webhooks", self.handle)
    }

    /// Adds an endpoint through the form; answers its id.
    async fn add(&self, fields: &[(&str, &str)]) -> i64 {
        let added = self
            .owner
            .submit(&self.page(), "#webhook-add-form", fields)
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        let location = added.location().unwrap();
        let id = location.rsplit("#webhook-").next().unwrap();
        id.parse().unwrap()
    }

    /// Reloads the webhooks page until `done` holds (the worker is asynchronous).
    async fn log_until(&self, what: &str, done: impl Fn(&Page) -> bool) -> Page {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page = self.owner.get(&self.page()).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            if done(&page) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "the log never showed {what}:\n{}",
                page.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(&mut *app.conn().await)
        .await
        .unwrap()
        .n
}

#[tokio::test]
async fn events_arrive_signed_with_the_expected_json_and_the_secret_stays_out_of_logs() {
    let (logs, _guard) = Logs::capture();
    let t = setup(app_for_receivers("8").await, "hooked").await;
    let (receiver, url) = Receiver::start(&[]).await;
    let id = t.add(&[("url", &url), ("secret_choice", "generate")]).await;

    // The secret: generated, masked, revealed on request (a POST) — the page
    // itself carries no secret and is not stored by the browser.
    let page = t.owner.get(&t.page()).await;
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(!page.has(&format!("#webhook-secret-{id}")));
    let revealed = t
        .owner
        .post_htmx(&format!("{}/{id}/secret", t.page()), &[])
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert_eq!(
        revealed.header("cache-control").as_deref(),
        Some("no-store")
    );
    let secret = revealed.text_of(&format!("#webhook-secret-{id}"));
    assert!(
        secret.starts_with("whsec_") && secret.len() >= 6 + 64,
        "{secret}"
    );
    assert_eq!(
        revealed.attr("[data-copy]", "data-copy").as_deref(),
        Some(secret.as_str()),
        "the copy button copies it"
    );
    assert!(!page.text.contains(&secret), "the page shows no secret");
    // Without JavaScript, the form shows the page with the secret.
    let no_js = t
        .owner
        .submit(&t.page(), &format!("#webhook-reveal-form-{id}"), &[])
        .await;
    assert_eq!(no_js.status, StatusCode::OK, "{}", no_js.text);
    assert_eq!(no_js.text_of(&format!("#webhook-secret-{id}")), secret);
    assert_eq!(no_js.header("cache-control").as_deref(), Some("no-store"));
    let masked = page.text_of(&format!("#webhook-secret-masked-{id}"));
    assert!(!masked.contains(&secret) && masked.ends_with(&secret[secret.len() - 4..]));
    assert_eq!(page.text_of(&format!("#webhook-{id} .webhook-url")), url);

    // "Send test event": a signed ping, answered on the page.
    let tested = t
        .owner
        .post_htmx(&format!("{}/{id}/test", t.page()), &[])
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert!(
        tested
            .text_of(".webhook-test-result")
            .contains("answered 200"),
        "{}",
        tested.text
    );
    let ping = receiver.wait_for("ping").await;
    ping.assert_signed_with(&secret);

    // Going live, through the real route against the real LiveKit.
    builders::go_live(&t.owner, t.stream.id).await;
    let started = receiver.wait_for("stream.started").await;
    started.assert_signed_with(&secret);
    assert_eq!(started.header("content-type"), "application/json");
    let body = started.json();
    assert_eq!(
        started.header("x-stagepass-delivery"),
        body["id"].as_str().unwrap()
    );
    assert_eq!(body["type"], "stream.started");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
    assert_eq!(body["channel"]["handle"], "hooked");
    assert_eq!(body["channel"]["title"], "hooked channel");
    assert_eq!(body["stream"]["id"], t.stream.id.0);
    assert_eq!(body["stream"]["title"], "Friday session");
    assert_eq!(
        body["stream"]["url"],
        format!("{}/s/{}", t.app.url, t.stream.id)
    );
    assert!(body["stream"]["started_at"].is_string());
    assert!(body["stream"]["ended_at"].is_null());
    assert!(body.get("recording").is_none());
    let raw = String::from_utf8_lossy(&started.body).into_owned();
    assert!(
        !raw.contains(&secret) && !raw.contains(&t.stream.room_name),
        "{raw}"
    );

    // A recording: recording.ready with its duration and size.
    let start = t
        .owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/start", t.stream.id),
            &[],
        )
        .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: Vec<String> = recordings::table
            .filter(recordings::stream_id.eq(t.stream.id))
            .select(recordings::status)
            .load(&mut *t.app.conn().await)
            .await
            .unwrap();
        if status.iter().any(|s| s == "active") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recording never became active: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stop = t
        .owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/stop", t.stream.id),
            &[],
        )
        .await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.text);
    let ready = receiver.wait_for("recording.ready").await;
    ready.assert_signed_with(&secret);
    let body = ready.json();
    let (rec_id, duration, size): (i64, Option<i64>, Option<i64>) = recordings::table
        .filter(recordings::stream_id.eq(t.stream.id))
        .select((
            recordings::id,
            recordings::duration_ms,
            recordings::size_bytes,
        ))
        .first(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert_eq!(body["type"], "recording.ready");
    assert_eq!(body["recording"]["id"], rec_id);
    assert_eq!(body["recording"]["duration_ms"], duration.unwrap());
    assert_eq!(body["recording"]["size_bytes"], size.unwrap());
    assert!(size.unwrap() > 0);
    assert_eq!(body["stream"]["id"], t.stream.id.0);

    // Ending.
    let end = t
        .owner
        .post_htmx(&format!("/studio/streams/{}/end", t.stream.id), &[])
        .await;
    assert_eq!(end.status, StatusCode::OK, "{}", end.text);
    let ended = receiver.wait_for("stream.ended").await;
    ended.assert_signed_with(&secret);
    let body = ended.json();
    assert!(body["stream"]["ended_at"].is_string());
    assert_ne!(
        body["id"],
        started.json()["id"],
        "each event has its own id"
    );

    // Each event once; the log shows them delivered.
    let log = t
        .log_until("three delivered events", |p| {
            p.texts(&format!(
                "#webhook-log-{id} tr.delivery[data-status=delivered]"
            ))
            .len()
                == 3
        })
        .await;
    let events = log.texts(&format!("#webhook-log-{id} .delivery-event"));
    assert_eq!(
        events,
        ["stream.ended", "recording.ready", "stream.started"]
    );
    for r in ["stream.started", "recording.ready", "stream.ended"] {
        assert_eq!(
            receiver.all().iter().filter(|x| x.event() == r).count(),
            1,
            "{r}"
        );
    }

    let captured = logs.text();
    assert!(
        captured.contains("webhook delivered"),
        "the capture works:\n{captured}"
    );
    assert!(!captured.contains(&secret), "the signing secret was logged");
    assert!(!captured.contains(&url), "the receiver's URL was logged");
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt() {
    let (logs, _guard) = Logs::capture();
    let t = setup(app_for_receivers("8").await, "flaky").await;
    let (receiver, url) = Receiver::start(&[500, 500]).await;
    let own = "my-own-secret-of-some-length-42";
    let id = t
        .add(&[("url", &url), ("secret_choice", "own"), ("secret", own)])
        .await;
    assert_eq!(
        t.owner
            .post_htmx(&format!("{}/{id}/secret", t.page()), &[])
            .await
            .text_of(&format!("#webhook-secret-{id}")),
        own
    );

    builders::go_live(&t.owner, t.stream.id).await;
    let log = t
        .log_until("the delivery delivered", |p| {
            p.has(&format!(
                "#webhook-log-{id} tr.delivery[data-status=delivered]"
            ))
        })
        .await;
    let row = log.text_of(&format!("#webhook-log-{id} tr.delivery"));
    assert!(
        row.contains("stream.started") && row.contains("Delivered"),
        "{row}"
    );
    let codes: Vec<Option<String>> = {
        let html = log.html();
        let sel = scraper::Selector::parse(&format!("#webhook-log-{id} li.attempt")).unwrap();
        html.select(&sel)
            .map(|li| li.value().attr("data-status-code").map(str::to_owned))
            .collect()
    };
    assert_eq!(
        codes,
        [
            Some("500".to_owned()),
            Some("500".to_owned()),
            Some("200".to_owned())
        ],
        "all three attempts, in order"
    );
    let attempts = log.texts(&format!("#webhook-log-{id} li.attempt"));
    assert!(
        attempts[0].contains("HTTP 500") && attempts[0].contains("bad day"),
        "{attempts:?}"
    );
    assert!(attempts[2].contains("HTTP 200"), "{attempts:?}");
    assert_eq!(
        log.text_of(&format!("#webhook-log-{id} .delivery-attempt-count")),
        "3"
    );

    // The receiver saw the same event three times, each signed.
    let got = receiver.all();
    assert_eq!(got.len(), 3);
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("x-stagepass-delivery"))
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "one event id: {ids:?}");
    for r in &got {
        r.assert_signed_with(own);
    }
    let (attempts, status): (i32, String) = webhook_deliveries::table
        .select((webhook_deliveries::attempts, webhook_deliveries::status))
        .first(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert_eq!((attempts, status.as_str()), (3, "delivered"));
    assert_eq!(
        count(&t.app, "SELECT count(*) AS n FROM webhook_attempts").await,
        3
    );
    assert!(!logs.text().contains(own), "the owner's secret was logged");
}

#[tokio::test]
async fn private_addresses_are_refused_at_delivery_and_a_hopeless_delivery_is_given_up() {
    // The default: no private addresses. The endpoint is planted directly (as
    // if its name had resolved publicly when it was added).
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOKS_BACKOFF_BASE_MS".into(), "200".into());
        env.insert("WEBHOOKS_MAX_ATTEMPTS".into(), "2".into());
    })
    .await;
    let t = setup(app, "careful").await;
    let (receiver, url) = Receiver::start(&[]).await;
    let localhost = url.replace("127.0.0.1", "localhost");
    for target in [&url, &localhost] {
        diesel::sql_query(
            "INSERT INTO webhook_endpoints (channel_id, url, secret) \
             SELECT channel_id, $2, 'a-secret-long-enough' FROM streams WHERE id = $1",
        )
        .bind::<BigInt, _>(t.stream.id.0)
        .bind::<Text, _>(target)
        .execute(&mut *t.app.conn().await)
        .await
        .unwrap();
    }
    builders::go_live(&t.owner, t.stream.id).await;
    let log = t
        .log_until("both deliveries failed", |p| {
            p.texts("tr.delivery[data-status=failed]").len() == 2
        })
        .await;
    for row in log.texts("tr.delivery") {
        assert!(row.contains("Failed"), "{row}");
        assert!(row.contains("refused"), "{row}");
        assert!(row.contains("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES"), "{row}");
    }
    assert_eq!(log.texts("li.attempt").len(), 4, "two attempts each");
    assert!(
        receiver.all().is_empty(),
        "nothing reached the private address"
    );
    let next: Vec<Option<chrono::DateTime<chrono::Utc>>> = webhook_deliveries::table
        .select(webhook_deliveries::next_attempt_at)
        .load(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert!(next.iter().all(Option::is_none), "no more attempts");
    let errors: Vec<Option<String>> = webhook_attempts::table
        .select(webhook_attempts::error)
        .load(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert!(
        errors
            .iter()
            .all(|e| !e.as_deref().unwrap_or("").contains(&url))
    );
}

#[tokio::test]
async fn webhook_urls_and_secrets_are_checked_with_the_message_next_to_the_field() {
    let t = setup(TestApp::spawn().await, "strict").await;
    let page = t.page();
    // (form fields, where the message is, what it says)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        (&[("url", "")], "#webhook-url-error", "Enter the URL"),
        (
            &[("url", "ftp://example.com/hook")],
            "#webhook-url-error",
            "http:// or https://",
        ),
        (
            &[("url", "not a url")],
            "#webhook-url-error",
            "http:// or https://",
        ),
        (
            &[("url", "http://127.0.0.1:9/hook")],
            "#webhook-url-error",
            "private network",
        ),
        (
            &[("url", "https://user:pw@example.com/hook")],
            "#webhook-url-error",
            "passwords",
        ),
        (
            &[
                ("url", "http://10.0.0.1/hook"),
                ("secret_choice", "own"),
                ("secret", "short"),
            ],
            "#webhook-secret-error",
            "at least 16",
        ),
    ];
    for (fields, selector, message) in cases {
        let answer = t.owner.submit(&page, "#webhook-add-form", fields).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields:?}: {}",
            answer.text
        );
        let said = answer.text_of(selector);
        assert!(said.contains(message), "{fields:?}: {said}");
        assert_eq!(
            answer
                .attr("#webhook-add-form input[name=url]", "value")
                .as_deref(),
            Some(fields[0].1.trim()),
            "what was typed stays"
        );
    }
    let long = format!("https://example.com/{}", "a".repeat(2000));
    let answer = t
        .owner
        .submit(&page, "#webhook-add-form", &[("url", &long)])
        .await;
    assert!(
        answer
            .text_of("#webhook-url-error")
            .contains("at most 2,000")
    );

    // htmx gets the form alone, with the message by the field.
    let fragment = t
        .owner
        .post_htmx(&page, &[("url", "gopher://example.com")])
        .await;
    assert_eq!(fragment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        fragment
            .text
            .trim_start()
            .starts_with("<form id=\"webhook-add-form\""),
        "{}",
        fragment.text
    );
    assert!(fragment.has("#webhook-url-error"));

    let stored: i64 = webhook_endpoints::table
        .count()
        .get_result(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_moderator_cannot_see_or_change_webhooks() {
    let t = setup(app_for_receivers("8").await, "guarded").await;
    let (moderator, moderator_id) = builders::user(&t.app, "mod@example.com", "Mod").await;
    let (stranger, _) = builders::user(&t.app, "stranger@example.com", "Stranger").await;
    let channel = stagepass::db::channels::find_by_handle(&mut *t.app.conn().await, "guarded")
        .await
        .unwrap()
        .unwrap();
    builders::moderator(&t.app, channel.id, moderator_id).await;
    let (_receiver, url) = Receiver::start(&[]).await;
    let id = t.add(&[("url", &url), ("secret_choice", "generate")]).await;
    let secret: String = webhook_endpoints::table
        .find(id)
        .select(webhook_endpoints::secret)
        .first(&mut *t.app.conn().await)
        .await
        .unwrap();

    for who in [&moderator, &stranger] {
        let page = who.get(&t.page()).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(
            page.text.contains("Only the owner of this channel"),
            "{}",
            page.text
        );
        assert!(!page.text.contains(&secret));
        for path in [
            t.page(),
            format!("{}/{id}/delete", t.page()),
            format!("{}/{id}/test", t.page()),
            format!("{}/{id}/secret", t.page()),
        ] {
            let answer = who.post_htmx(&path, &[("url", &url)]).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "POST {path}");
            assert!(!answer.text.contains(&secret));
        }
    }
    assert_eq!(
        count(&t.app, "SELECT count(*) AS n FROM webhook_endpoints").await,
        1
    );
    // Anonymous visitors are sent to sign in.
    let anonymous = t.app.anonymous().get(&t.page()).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);

    // The owner deletes it.
    let deleted = t
        .owner
        .submit(&t.page(), &format!("#webhook-delete-form-{id}"), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    assert_eq!(
        count(&t.app, "SELECT count(*) AS n FROM webhook_endpoints").await,
        0
    );
    assert!(t.owner.get(&t.page()).await.has("#webhooks-empty"));
}

#[tokio::test]
async fn another_owner_cannot_reach_an_endpoint_through_their_own_channel() {
    let t = setup(app_for_receivers("8").await, "first").await;
    let (receiver, url) = Receiver::start(&[]).await;
    let id = t.add(&[("url", &url), ("secret_choice", "generate")]).await;
    let (other, other_id) = builders::user(&t.app, "other@example.com", "Other").await;
    builders::channel(&t.app, other_id, "second").await;
    for action in ["delete", "test", "secret"] {
        let path = format!("/studio/channels/second/webhooks/{id}/{action}");
        let answer = other.post_htmx(&path, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(
        count(&t.app, "SELECT count(*) AS n FROM webhook_endpoints").await,
        1
    );
    assert_eq!(
        count(
            &t.app,
            "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'webhook.%' AND action <> 'webhook.added'"
        )
        .await,
        0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.all().is_empty(), "no test event went out");
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failed_attempt() {
    let t = setup(app_for_receivers("1").await, "redirected").await;
    let (elsewhere, elsewhere_url) = Receiver::start(&[]).await;
    let hits = Arc::new(Mutex::new(0));
    let counted = hits.clone();
    let redirector = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            let to = elsewhere_url.clone();
            async move {
                *counted.lock().unwrap() += 1;
                (AxumStatus::FOUND, [(axum::http::header::LOCATION, to)])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });
    let id = t.add(&[("url", &url), ("secret_choice", "generate")]).await;

    builders::go_live(&t.owner, t.stream.id).await;
    let log = t
        .log_until("the delivery failed", |p| {
            p.has(&format!(
                "#webhook-log-{id} tr.delivery[data-status=failed]"
            ))
        })
        .await;
    let codes: Vec<Option<String>> = {
        let html = log.html();
        let sel = scraper::Selector::parse(&format!("#webhook-log-{id} li.attempt")).unwrap();
        html.select(&sel)
            .map(|li| li.value().attr("data-status-code").map(str::to_owned))
            .collect()
    };
    assert_eq!(codes, [Some("302".to_owned())]);
    assert_eq!(*hits.lock().unwrap(), 1);
    assert!(elsewhere.all().is_empty(), "the redirect was not followed");
}

/// A receiver that holds every request until the test opens the gate, and
/// counts how many it holds at once.
#[derive(Clone)]
struct SlowReceiver {
    open: tokio::sync::watch::Sender<bool>,
    now: Arc<Mutex<usize>>,
    most: Arc<Mutex<usize>>,
    received: Arc<Mutex<usize>>,
}

impl SlowReceiver {
    async fn start() -> (SlowReceiver, String) {
        let r = SlowReceiver {
            open: tokio::sync::watch::channel(false).0,
            now: Arc::default(),
            most: Arc::default(),
            received: Arc::default(),
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let r = state.clone();
                async move {
                    *r.received.lock().unwrap() += 1;
                    {
                        let mut now = r.now.lock().unwrap();
                        *now += 1;
                        let mut most = r.most.lock().unwrap();
                        *most = (*most).max(*now);
                    }
                    let mut open = r.open.subscribe();
                    let _ = open.wait_for(|o| *o).await;
                    *r.now.lock().unwrap() -= 1;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn received(&self) -> usize {
        *self.received.lock().unwrap()
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    async fn wait_for_requests(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.received() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests arrived",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_slow_receiver_gets_one_delivery_at_a_time_and_holds_up_no_one_else() {
    let (logs, _guard) = Logs::capture();
    let t = setup(app_for_receivers("8").await, "patient").await;
    let (slow, slow_url) = SlowReceiver::start().await;
    let (fast, fast_url) = Receiver::start(&[]).await;
    let slow_id = t
        .add(&[("url", &slow_url), ("secret_choice", "generate")])
        .await;
    t.add(&[("url", &fast_url), ("secret_choice", "generate")])
        .await;
    plant(t.app.db(), slow_id, 4, "0 seconds").await;
    slow.wait_for_requests(1).await;

    // The slow receiver holds one delivery; the other endpoint's event goes
    // out meanwhile.
    builders::go_live(&t.owner, t.stream.id).await;
    fast.wait_for("stream.started").await;
    assert_eq!(
        slow.received(),
        1,
        "one request at a time to the slow receiver"
    );

    // Opened, it gets the rest (its four and stream.started), one by one.
    slow.set_open(true);
    slow.wait_for_requests(5).await;
    t.log_until("all of the slow receiver's deliveries delivered", |p| {
        p.texts(&format!(
            "#webhook-log-{slow_id} tr.delivery[data-status=delivered]"
        ))
        .len()
            == 5
    })
    .await;
    assert_eq!(*slow.most.lock().unwrap(), 1, "never two at once");

    // Deleted while a delivery is in flight: the attempt is dropped quietly,
    // not counted as a failure of the worker.
    slow.set_open(false);
    plant(t.app.db(), slow_id, 1, "0 seconds").await;
    slow.wait_for_requests(6).await;
    let deleted = t
        .owner
        .submit(&t.page(), &format!("#webhook-delete-form-{slow_id}"), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    slow.set_open(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs
        .text()
        .contains("webhook endpoint deleted while delivering")
    {
        assert!(Instant::now() < deadline, "{}", logs.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !logs.text().contains("recording an attempt"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn test_events_are_limited_per_channel() {
    let t = setup(app_for_receivers("8").await, "chatty").await;
    let (receiver, url) = Receiver::start(&[]).await;
    let id = t.add(&[("url", &url), ("secret_choice", "generate")]).await;
    let path = format!("{}/{id}/test", t.page());
    for _ in 0..10 {
        let sent = t.owner.post_htmx(&path, &[]).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    }
    let limited = t.owner.post_htmx(&path, &[]).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited
            .text_of(".webhook-test-result")
            .contains("Wait a minute"),
        "{}",
        limited.text
    );
    assert_eq!(
        receiver
            .all()
            .iter()
            .filter(|r| r.event() == "ping")
            .count(),
        10
    );
}
