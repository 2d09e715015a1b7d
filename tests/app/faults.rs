//! Fault injection: what users and operators see when a piece of the
//! deployment fails under them, with the real things failing for real.
//!
//! - The app is SIGKILLed mid-stream (chat flowing, a recording running)
//!   and started again: chat clients resume without a gap or a repeat, the
//!   stream stays live, the recording goes on in a new part.
//! - Postgres stops for 10 s under load (a cluster of the test's own; the
//!   run's shared Postgres serves every other test and never stops): pages
//!   say 503 with the error page, never 500, and the app recovers by itself.
//! - One of two instances is SIGKILLed: the survivor's jobs carry on, and
//!   nothing is done twice or dropped.
//!
//! Load here is light on purpose (a few clients): these tests show behaviour
//! under failure, not speed, which `make bench` measures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::{ExpressionMethods, NullableExpressionMethods, QueryDsl};
use reqwest::StatusCode;
use stagepass::db::schema::chat_messages;

use crate::util::private_pg::PrivatePostgres;
use crate::util::sse::{Sse, body_of};
use crate::util::{Browser, TestApp, builders};

/// A request that takes longer than this counts as hung (the pool's own
/// timeouts are 5 s: a request stuck past 20 s is a bug, not slowness).
const HUNG: Duration = Duration::from_secs(20);
/// Generous bound for "eventually" (recovery, reconnects): not a speed test.
const EVENTUALLY: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------
// Load: clients that keep asking, and what each answer was.

/// One answer (or failure to answer) a client got.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    sent: Instant,
    answered: Instant,
    /// Status and body, or why there was none (connection refused, reset,
    /// hung past `HUNG`).
    outcome: Result<(StatusCode, String), String>,
}

#[derive(Clone, Default)]
struct Answers(Arc<Mutex<Vec<Answer>>>);

impl Answers {
    fn all(&self) -> Vec<Answer> {
        self.0.lock().unwrap().clone()
    }

    /// Sends one request and keeps its answer.
    async fn ask(&self, what: &'static str, request: reqwest::RequestBuilder) -> Answer {
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(HUNG, async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })
        .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(format!("{e:?}")),
            Err(_) => Err(format!("no answer within {HUNG:?}")),
        };
        let answer = Answer {
            what,
            sent,
            answered: Instant::now(),
            outcome,
        };
        self.0.lock().unwrap().push(answer.clone());
        answer
    }
}

/// Runs `each` over and over (with a short pause) until `stop` is set.
fn keep_asking<F, Fut>(stop: Arc<AtomicBool>, each: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            each().await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
}

/// One line about an answer: what, when (relative to `t0`), and how.
fn describe(a: &Answer, t0: Instant) -> String {
    let at = |t: Instant| {
        if t >= t0 {
            format!("+{:.1}s", (t - t0).as_secs_f64())
        } else {
            format!("-{:.1}s", (t0 - t).as_secs_f64())
        }
    };
    let how = match &a.outcome {
        Ok((status, body)) => format!("{status} {:.300}", body.replace('\n', " ")),
        Err(e) => format!("no answer: {e:.300}"),
    };
    format!(
        "{} sent {} answered {}: {how}",
        a.what,
        at(a.sent),
        at(a.answered)
    )
}

/// A chat reader that behaves like htmx's SSE extension: reads, and when the
/// stream ends or cannot be opened, reconnects with the id of the last event
/// it saw. Keeps every chat event and every refused reconnect.
#[derive(Clone, Default)]
struct ChatReader {
    events: Arc<Mutex<Vec<(i64, String)>>>,
    refusals: Answers,
    reconnects: Arc<Mutex<usize>>,
    /// Drops the current connection, as a network would (see `drop_connection`).
    dropping: Arc<tokio::sync::Notify>,
}

impl ChatReader {
    fn start(
        &self,
        who: Browser,
        path: String,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let reader = self.clone();
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                if !first {
                    *reader.reconnects.lock().unwrap() += 1;
                    // EventSource's reconnection delay (htmx keeps the default).
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                first = false;
                let sent = Instant::now();
                let opened =
                    tokio::time::timeout(HUNG, Sse::connect(&who, &path, last.as_deref())).await;
                let mut sse = match opened {
                    Ok(Ok((_, Some(sse)))) => sse,
                    Ok(Ok((status, None))) => {
                        reader.refusals.0.lock().unwrap().push(Answer {
                            what: "chat stream",
                            sent,
                            answered: Instant::now(),
                            outcome: Ok((status, String::new())),
                        });
                        continue;
                    }
                    Ok(Err(e)) => {
                        reader.refusals.0.lock().unwrap().push(Answer {
                            what: "chat stream",
                            sent,
                            answered: Instant::now(),
                            outcome: Err(format!("{e:?}")),
                        });
                        continue;
                    }
                    Err(_) => panic!("opening the chat stream hung for {HUNG:?}"),
                };
                loop {
                    let next = tokio::select! {
                        e = sse.next() => e,
                        () = async {
                            while !stop.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        } => return,
                        () = reader.dropping.notified() => None,
                    };
                    let Some(e) = next else { break };
                    if e.event == "chat" {
                        let id: i64 = e.id.as_deref().unwrap().parse().unwrap();
                        reader.events.lock().unwrap().push((id, body_of(&e)));
                    }
                    if e.id.is_some() {
                        last = e.id.clone();
                    }
                }
            }
        })
    }

    fn events(&self) -> Vec<(i64, String)> {
        self.events.lock().unwrap().clone()
    }

    /// The connection drops (the reader then reconnects, as EventSource does).
    fn drop_connection(&self) {
        self.dropping.notify_one();
    }

    fn reconnects(&self) -> usize {
        *self.reconnects.lock().unwrap()
    }

    /// Waits until an event with this body has arrived.
    async fn wait_for(&self, body: &str) {
        let deadline = Instant::now() + EVENTUALLY;
        while !self.events().iter().any(|(_, b)| b == body) {
            assert!(
                Instant::now() < deadline,
                "{body:?} did not reach the chat reader: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The seq and body of every chat message of the stream that went out, in order.
async fn chat_rows(
    conn: &mut diesel_async::AsyncPgConnection,
    stream: stagepass::db::StreamId,
) -> Vec<(i64, String)> {
    // Here, not at the top: its `load` would shadow `AtomicBool::load`.
    use diesel_async::RunQueryDsl;
    chat_messages::table
        .filter(chat_messages::stream_id.eq(stream))
        .filter(chat_messages::seq.is_not_null())
        .order(chat_messages::seq)
        .select((chat_messages::seq.assume_not_null(), chat_messages::body))
        .load(conn)
        .await
        .unwrap()
}

/// An htmx request from `who` with the CSRF token they were given earlier
/// (fetched once: the page that gives it may be what is down).
fn htmx_post(who: &Browser, csrf: &str, path: &str) -> reqwest::RequestBuilder {
    who.client
        .post(who.url(path))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", csrf)
}

// ---------------------------------------------------------------------------
// Postgres stops for 10 s.

#[tokio::test]
async fn with_postgres_stopped_pages_answer_503_and_the_app_recovers_by_itself() {
    let mut pg = PrivatePostgres::start().await;
    let database_url = pg.url("stagepass");
    {
        let pool = stagepass::db::pool(&database_url, 1).unwrap();
        stagepass::db::migrate(&pool).await.expect("migrating");
    }
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_URL".into(), database_url.clone());
    })
    .await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Olive Owner").await;
    let channel = builders::channel(&app, owner_id, "sturdy").await;
    let stream = builders::stream(&app, &channel, "pass").await;
    let live = owner
        .post_htmx(&format!("/studio/streams/{}/live", stream.id), &[])
        .await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.text);
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Vera Viewer").await;
    builders::grant(&app, viewer_id, channel.id, None, "-1 minute", "1 hour").await;
    let csrf = viewer.csrf_token().await;
    let watch = format!("/s/{}", stream.id);
    let token = format!("/s/{}/token", stream.id);

    // The light load: the watch page (a viewer), the home page (a visitor),
    // the token endpoint (the player asking), and a chat reader.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Answers::default();
    let mut load = Vec::new();
    {
        let (a, v, w) = (answers.clone(), viewer.clone(), watch.clone());
        load.push(keep_asking(stop.clone(), move || {
            let (a, v, w) = (a.clone(), v.clone(), w.clone());
            async move {
                a.ask("watch page", v.client.get(v.url(&w))).await;
            }
        }));
    }
    {
        let (a, visitor) = (answers.clone(), app.anonymous());
        load.push(keep_asking(stop.clone(), move || {
            let (a, v) = (a.clone(), visitor.clone());
            async move {
                a.ask("home page", v.client.get(v.url("/"))).await;
            }
        }));
    }
    {
        let (a, v, t, c) = (answers.clone(), viewer.clone(), token.clone(), csrf.clone());
        load.push(keep_asking(stop.clone(), move || {
            let (a, v, t, c) = (a.clone(), v.clone(), t.clone(), c.clone());
            async move {
                a.ask("token", htmx_post(&v, &c, &t)).await;
            }
        }));
    }
    // Two chat readers: one keeps its connection throughout; the other's
    // drops while Postgres is down, so it must reconnect through the outage.
    let events = format!("/s/{}/chat/events", stream.id);
    let (steady, dropped) = (ChatReader::default(), ChatReader::default());
    load.push(steady.start(viewer.clone(), events.clone(), stop.clone()));
    load.push(dropped.start(owner.clone(), events.clone(), stop.clone()));
    let said = owner
        .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "before")])
        .await;
    assert_eq!(said.status, StatusCode::OK, "{}", said.text);
    steady.wait_for("before").await;
    dropped.wait_for("before").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Postgres goes away for 10 s.
    pg.stop_immediately();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    dropped.drop_connection();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let restarting = Instant::now();
    pg.start_server().await;

    // The app comes back by itself: the watch page answers again.
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let page = viewer.get(&watch).await;
        if page.status == StatusCode::OK {
            assert!(page.has("#player"), "{}", page.text);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch page still answers {} {:?} after Postgres came back",
            page.status,
            page.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let recovered = Instant::now();
    // The chat readers are back on their streams, the dropped one resumed
    // from its last event: a message posted now arrives, and the one from
    // before does not come again.
    let said = owner
        .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "after")])
        .await;
    assert_eq!(said.status, StatusCode::OK, "{}", said.text);
    steady.wait_for("after").await;
    dropped.wait_for("after").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    eprintln!(
        "recovered {:?} after Postgres restarted",
        recovered - restarting
    );

    let mut all = answers.all();
    all.extend(steady.refusals.all());
    all.extend(dropped.refusals.all());
    let count = |f: &dyn Fn(&Answer) -> bool| all.iter().filter(|a| f(a)).count();
    let summary: BTreeMap<String, usize> = all.iter().fold(BTreeMap::new(), |mut m, a| {
        let key = match &a.outcome {
            Ok((s, _)) => format!("{} {}", a.what, s.as_u16()),
            Err(_) => format!("{} no answer", a.what),
        };
        *m.entry(key).or_default() += 1;
        m
    });
    eprintln!("answers: {summary:?}");

    // Never a 500, never a dropped or hung request, whatever the phase.
    let broken: Vec<&Answer> = all
        .iter()
        .filter(|a| match &a.outcome {
            Ok((s, _)) => s.is_server_error() && *s != StatusCode::SERVICE_UNAVAILABLE,
            Err(_) => true,
        })
        .collect();
    assert!(
        broken.is_empty(),
        "{}",
        broken
            .iter()
            .map(|a| describe(a, stopped))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Asked and answered while Postgres was down: 503 and the error page,
    // in words a viewer understands.
    let down: Vec<&Answer> = all
        .iter()
        .filter(|a| a.sent >= stopped && a.answered < restarting)
        .collect();
    assert!(
        count(&|a| a.sent >= stopped && a.answered < restarting && a.what == "watch page") >= 5,
        "the watch page was asked while Postgres was down: {summary:?}"
    );
    for a in &down {
        let (status, body) = a.outcome.as_ref().unwrap();
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{a:#?}");
        if a.what.ends_with("page") {
            let page = crate::util::Page {
                status: *status,
                headers: Default::default(),
                text: body.clone(),
            };
            assert_eq!(page.text_of("h1"), "Temporarily unavailable", "{body}");
            assert!(
                body.contains("The database is not answering")
                    && body.contains("try again in a minute"),
                "{body}"
            );
        }
    }
    // Every answer after recovery is the normal one.
    for a in all.iter().filter(|a| a.sent > recovered) {
        let (status, _) = a.outcome.as_ref().unwrap();
        assert_eq!(*status, StatusCode::OK, "{a:#?}");
    }
    // Each chat reader saw each message once, in order; the dropped one
    // was refused (503, counted above) until Postgres was back.
    let rows = chat_rows(&mut *app.conn().await, stream.id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(steady.events(), rows);
    assert_eq!(dropped.events(), rows);
    assert!(dropped.reconnects() >= 2, "{}", dropped.reconnects());
    assert!(
        count(&|a| a.what == "chat stream" && a.sent >= stopped && a.answered < restarting) >= 1
    );
    app.stop().await;
}
