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
use stagepass::db::recordings::{PartStatus, Status as RecordingStatus};
use stagepass::db::schema::chat_messages;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Status as StreamStatus;

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
    /// Streams opened (the first and every successful reconnect).
    opened: Arc<Mutex<usize>>,
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
                    Ok(Ok((_, Some(sse)))) => {
                        *reader.opened.lock().unwrap() += 1;
                        sse
                    }
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

    fn opened(&self) -> usize {
        *self.opened.lock().unwrap()
    }

    /// Waits until the reader has opened `n` streams.
    async fn wait_opened(&self, n: usize) {
        let deadline = Instant::now() + EVENTUALLY;
        while self.opened() < n {
            assert!(
                Instant::now() < deadline,
                "the chat reader opened {} of {n} streams",
                self.opened()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
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

// ---------------------------------------------------------------------------
// The app is SIGKILLed mid-stream and started again.

/// A viewer posting chat messages at a steady pace, as a person typing
/// would (under the rate limit), through whatever instance serves `base`.
/// A post that gets no answer (the app is down) is sent again, as a user
/// would press Send again; one the server answered is never repeated.
#[derive(Clone, Default)]
struct ChatPoster {
    /// Bodies the server accepted (200 and no refusal in the fragment).
    accepted: Arc<Mutex<Vec<String>>>,
    /// Bodies never accepted: their last try had no answer, or the server
    /// refused a retry (a duplicate of the try it did take before dying).
    unconfirmed: Arc<Mutex<Vec<String>>>,
    /// Tries that got no answer.
    failed_tries: Arc<Mutex<usize>>,
}

impl ChatPoster {
    fn start(
        &self,
        who: Browser,
        csrf: String,
        path: String,
        name: &'static str,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let poster = self.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!("{name} says {n}");
                let mut accepted = false;
                for _ in 0..100 {
                    let sent = tokio::time::timeout(
                        HUNG,
                        htmx_post(&who, &csrf, &path)
                            .form(&[("body", body.as_str())])
                            .send(),
                    )
                    .await;
                    let response = match sent {
                        Ok(Ok(r)) => r,
                        _ => {
                            *poster.failed_tries.lock().unwrap() += 1;
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            continue;
                        }
                    };
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    accepted = status == StatusCode::OK && !text.contains("chat-error");
                    break;
                }
                let list = if accepted {
                    &poster.accepted
                } else {
                    &poster.unconfirmed
                };
                list.lock().unwrap().push(body);
                // Five messages per ten seconds is the limit; stay under it.
                tokio::time::sleep(Duration::from_millis(2200)).await;
            }
        })
    }
}

/// The parts of a recording, in order.
async fn recording_parts(
    db: &stagepass::db::DbPool,
    recording: i64,
) -> Vec<stagepass::db::recordings::Part> {
    let mut conn = db.get().await.unwrap();
    stagepass::db::recordings::parts(&mut conn, recording)
        .await
        .unwrap()
}

async fn recording(db: &stagepass::db::DbPool, id: i64) -> stagepass::db::recordings::Recording {
    use diesel::SelectableHelper;
    use diesel_async::RunQueryDsl;
    use stagepass::db::schema::recordings;
    recordings::table
        .find(id)
        .select(stagepass::db::recordings::Recording::as_select())
        .first(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

/// Polls `check` until it answers Some, or fails with `what` at `EVENTUALLY`.
async fn eventually<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match check().await {
            Ok(t) => return t,
            Err(now) => assert!(
                Instant::now() < deadline,
                "{what} within {EVENTUALLY:?}; now: {now}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn after_a_sigkill_mid_stream_chat_resumes_exactly_once_and_the_stream_and_recording_go_on() {
    // The test's in-process app only sets the deployment up (its database,
    // the people); then it stops, and the real binary serves alone.
    let setup = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&setup, "owner@example.com", "Olive Owner").await;
    let channel = builders::channel(&setup, owner_id, "resilient").await;
    let stream = builders::stream(&setup, &channel, AccessKind::Pass).await;
    let mut viewers = Vec::new();
    for (email, name) in [
        ("ann@example.com", "Ann"),
        ("bob@example.com", "Bob"),
        ("cat@example.com", "Cat"),
    ] {
        let (viewer, id) = builders::user(&setup, email, name).await;
        builders::grant(&setup, id, channel.id, None, "-1 minute", "1 hour").await;
        viewers.push((viewer, name));
    }
    let (state, env) = (setup.state.clone(), setup.env.clone());
    setup.stop().await;
    let db = state.db.clone();

    let app = crate::util::instance::Instance::start_with(&env, None).await;
    // Sessions live in Postgres and cookies are per host, not per port: the
    // same browsers, on the instance.
    let base = app.url.clone();
    let at = |who: &Browser| Browser {
        base: base.clone(),
        ..who.clone()
    };
    let owner = at(&owner);
    builders::go_live(&owner, stream.id).await;
    // The host's microphone, from LiveKit's Python SDK: a tone the recorder
    // writes as sound alone (WebM). Video would take a browser; the takeover
    // of a part with video uploaded is recorder.rs's test.
    let host_token = stagepass::livekit::tokens::host(
        &state.config.livekit,
        owner_id,
        "Olive Owner",
        &stream.room_name,
    )
    .unwrap();
    let mut host = builders::LiveKitClient::start(
        state.config.livekit.public_url.as_str(),
        &host_token,
        "tone",
        300,
    )
    .await;
    assert_eq!(host.next().await["connected"], true);
    assert_eq!(host.next().await["published"], true);
    let started = owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/start", stream.id),
            &[],
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let recording_id: i64 = {
        use diesel_async::RunQueryDsl;
        use stagepass::db::schema::recordings;
        recordings::table
            .filter(recordings::stream_id.eq(stream.id))
            .select(recordings::id)
            .first(&mut *db.get().await.unwrap())
            .await
            .unwrap()
    };

    // Chat flows: every viewer posts and reads; the owner reads too.
    // Posting stops first; the readers are stopped once they caught up.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let chat = format!("/s/{}/chat", stream.id);
    let events = format!("/s/{}/chat/events", stream.id);
    let poster = ChatPoster::default();
    let mut readers = vec![ChatReader::default()];
    let mut reading = vec![readers[0].start(owner.clone(), events.clone(), stop_reading.clone())];
    for (viewer, _) in &viewers {
        let reader = ChatReader::default();
        reading.push(reader.start(at(viewer), events.clone(), stop_reading.clone()));
        readers.push(reader);
    }
    let mut tasks = Vec::new();
    // Everyone reads from the first message on.
    for reader in &readers {
        reader.wait_opened(1).await;
    }
    for (viewer, name) in &viewers {
        let viewer = at(viewer);
        let csrf = viewer.csrf_token().await;
        tasks.push(poster.start(viewer, csrf, chat.clone(), name, stop.clone()));
    }

    // The recording is running and chat has flowed for a while: SIGKILL.
    eventually("the recording to be active", || async {
        let r = recording(&db, recording_id).await;
        let parts = recording_parts(&db, recording_id).await;
        if r.status == RecordingStatus::Active && parts.len() == 1 {
            Ok(())
        } else {
            Err(format!("{r:?} {parts:?}"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let port = app.port;
    app.kill().await;
    let killed = Instant::now();
    // Down for a moment, then the same binary starts again where it served
    // (clients reconnect to the same address, as behind a load balancer).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let app = crate::util::instance::Instance::start_with(&env, Some(port)).await;
    eprintln!("served again {:?} after the kill", killed.elapsed());

    // The stream is still live: its row, LiveKit's room, the watch page.
    let page = at(&viewers[0].0).get(&format!("/s/{}", stream.id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.attr("#stage", "data-status").as_deref(), Some("live"));
    assert!(page.has("#player"), "{}", page.text);
    let row = stagepass::db::streams::find(&mut db.get().await.unwrap(), stream.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, StreamStatus::Live);
    let rooms = state.livekit.rooms.list_rooms(vec![]).await.unwrap();
    assert!(rooms.iter().any(|r| r.name == stream.room_name));

    // The recording goes on: the restarted instance takes the lapsed lease
    // and records a new part (what the dead one had uploaded is kept).
    let parts = eventually("a second part, recording", || async {
        let parts = recording_parts(&db, recording_id).await;
        if parts.len() == 2 && parts[1].status == PartStatus::Writing {
            Ok(parts)
        } else {
            Err(format!("{parts:?}"))
        }
    })
    .await;
    // The dead instance's part is settled from what reached the bucket:
    // complete, or lost when nothing did (a part goes up in 5 MiB pieces,
    // many minutes of sound alone).
    assert!(
        [PartStatus::Complete, PartStatus::Lost].contains(&parts[0].status),
        "{parts:?}"
    );
    assert_eq!(
        recording(&db, recording_id).await.status,
        RecordingStatus::Active
    );

    // Chat went on meanwhile; now it stops, and the readers catch up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks.drain(..) {
        task.await.unwrap();
    }
    let rows = chat_rows(&mut db.get().await.unwrap(), stream.id).await;
    let accepted = poster.accepted.lock().unwrap().clone();
    let unconfirmed = poster.unconfirmed.lock().unwrap().clone();
    eprintln!(
        "{} messages accepted, {} unconfirmed, {} tries without an answer",
        accepted.len(),
        unconfirmed.len(),
        poster.failed_tries.lock().unwrap()
    );
    assert!(
        *poster.failed_tries.lock().unwrap() >= 1,
        "some posts met the dead app"
    );
    // Every accepted message is there, once; nothing else is, but a try
    // whose answer died with the app.
    for body in &accepted {
        let n = rows.iter().filter(|(_, b)| b == body).count();
        assert_eq!(n, 1, "{body:?} is in the chat {n} times: {rows:?}");
    }
    for (_, body) in &rows {
        assert!(
            accepted.contains(body) || unconfirmed.contains(body),
            "{body:?} was never posted"
        );
    }
    // Every reader saw every message once, in order: none missing, none
    // twice. The last ones may still be on their way (a loaded machine):
    // each reader is given until it has as many as the table, then compared.
    for (i, reader) in readers.iter().enumerate() {
        assert!(reader.opened() >= 2, "reader {i} reconnected");
        eventually(&format!("reader {i} caught up"), || async {
            let seen = reader.events();
            if seen.len() >= rows.len() {
                Ok(())
            } else {
                Err(format!("{} of {} messages", seen.len(), rows.len()))
            }
        })
        .await;
        assert_eq!(reader.events(), rows, "reader {i}");
    }
    stop_reading.store(true, Ordering::Relaxed);
    for task in reading.drain(..) {
        task.await.unwrap();
    }

    // The new part records for a while (its recorder, too, waits 10 s for
    // video before it writes the sound alone); then the owner stops the
    // recording on the restarted instance: it ends complete, from what
    // reached the bucket.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let stopped = owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/stop", stream.id),
            &[],
        )
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
    let done = eventually("the recording to end", || async {
        let r = recording(&db, recording_id).await;
        if matches!(
            r.status,
            RecordingStatus::Complete | RecordingStatus::Failed
        ) {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(done.status, RecordingStatus::Complete, "{done:?}");
    let parts = recording_parts(&db, recording_id).await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[1].status, PartStatus::Complete, "{parts:?}");
    let complete: Vec<_> = parts
        .iter()
        .filter(|p| p.status == PartStatus::Complete)
        .collect();
    for part in complete {
        let (bytes, _) = state
            .storage
            .get(&part.object_key)
            .await
            .unwrap()
            .expect("a complete part is in the bucket");
        assert_eq!(Some(bytes.len() as i64), part.size_bytes, "{part:?}");
    }
    host.stop().await;
    app.kill().await;
}

// ---------------------------------------------------------------------------
// Two instances; one is SIGKILLed.

/// How many audit entries record `action` on `subject`.
async fn audited(db: &stagepass::db::DbPool, action: &str, subject: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    use stagepass::db::schema::audit_log;
    audit_log::table
        .filter(audit_log::action.eq(action))
        .filter(audit_log::subject.eq(subject))
        .count()
        .get_result(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

/// Deliveries of the run's endpoints not yet delivered.
async fn undelivered(db: &stagepass::db::DbPool) -> i64 {
    use diesel_async::RunQueryDsl;
    use stagepass::db::schema::webhook_deliveries;
    webhook_deliveries::table
        .filter(webhook_deliveries::status.ne("delivered"))
        .count()
        .get_result(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn when_one_of_two_instances_is_killed_the_survivor_does_its_jobs_once() {
    use crate::util::webhook_receiver::{Receiver, plant};

    // The survivor runs in the test; the victim is the real binary beside
    // it, on the same database and settings. The reconciler runs every 2 s
    // (instead of every minute) so that the test need not wait for it.
    let survivor = TestApp::spawn_with(|env| {
        env.insert("LIVEKIT_RECONCILE_SECONDS".into(), "2".into());
        env.insert("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES".into(), "true".into());
        env.insert("WEBHOOKS_BACKOFF_BASE_MS".into(), "200".into());
    })
    .await;
    let db = survivor.db().clone();
    let victim = crate::util::instance::Instance::start(&survivor).await;
    let on_victim = |who: &Browser| Browser {
        base: victim.url.clone(),
        ..who.clone()
    };
    let (owner, owner_id) = builders::user(&survivor, "owner@example.com", "Olive Owner").await;
    let channel = builders::channel(&survivor, owner_id, "twins").await;
    let stream = builders::stream(&survivor, &channel, AccessKind::Pass).await;
    let orphan = builders::stream(&survivor, &channel, AccessKind::Pass).await;
    builders::go_live(&on_victim(&owner), stream.id).await;

    // Three receivers of the channel's webhooks.
    let mut receivers = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..3 {
        let (receiver, url) = Receiver::start(&[]).await;
        let id = builders::webhook_endpoint(&owner, "twins", &url).await;
        receivers.push(receiver);
        endpoints.push(id);
    }

    // A viewer watches, through a real LiveKit client, on a pass that ends
    // after the kill (the token comes from the victim).
    let (viewer, viewer_id) = builders::user(&survivor, "viewer@example.com", "Vera Viewer").await;
    let grant = builders::grant(
        &survivor,
        viewer_id,
        channel.id,
        None,
        "-1 minute",
        "20 seconds",
    )
    .await;
    let ends =
        stagepass::db::grants::find(&mut *survivor.conn().await, stagepass::db::GrantId(grant))
            .await
            .unwrap()
            .unwrap()
            .expires_at;
    let token = on_victim(&viewer)
        .post_htmx(&format!("/s/{}/token", stream.id), &[])
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    let token: serde_json::Value = serde_json::from_str(&token.text).unwrap();
    let mut watching = builders::LiveKitClient::start(
        token["url"].as_str().unwrap(),
        token["token"].as_str().unwrap(),
        "stay",
        40,
    )
    .await;
    assert_eq!(watching.next().await["connected"], true);

    // Deliveries due now go out from either instance (whichever claims
    // them); wait until all are recorded delivered, so none is in flight
    // when the victim dies. Deliveries due a few seconds from now are
    // queued, unclaimed, when it dies.
    for endpoint in &endpoints {
        plant(&db, *endpoint, 3, "0 seconds").await;
    }
    eventually("the first deliveries delivered", || async {
        match undelivered(&db).await {
            0 => Ok(()),
            n => Err(format!("{n} undelivered")),
        }
    })
    .await;
    for endpoint in &endpoints {
        plant(&db, *endpoint, 3, "4 seconds").await;
    }
    victim.kill().await;
    assert!(
        chrono::Utc::now() < ends,
        "the setup took so long that the pass ended before the kill"
    );

    // After the kill: deliveries queued now, and an orphan (a stream live
    // in the database whose room does not exist, as after a lost webhook).
    for endpoint in &endpoints {
        plant(&db, *endpoint, 3, "0 seconds").await;
    }
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "UPDATE streams SET status = 'live', started_at = now() - interval '1 hour' WHERE id = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(orphan.id.0)
        .execute(&mut *db.get().await.unwrap())
        .await
        .unwrap();
    }

    // The enforcer removes the viewer when the pass ends: once.
    let gone = watching.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let removed = "participant.removed_access_ended";
    let viewer_identity = viewer_id.to_string();
    // (The audit entry follows LiveKit's answer to the removal.)
    eventually("the removal audited", || async {
        match audited(&db, removed, &viewer_identity).await {
            0 => Err("not yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;

    // The reconciler ends the orphan: once. The real stream stays live.
    let ended = "stream.ended_by_reconciler";
    eventually("the orphan ended", || async {
        let row = stagepass::db::streams::find(&mut db.get().await.unwrap(), orphan.id)
            .await
            .unwrap()
            .unwrap();
        if row.status == StreamStatus::Ended {
            Ok(())
        } else {
            Err(row.status.to_string())
        }
    })
    .await;
    assert_eq!(audited(&db, ended, &orphan.id.to_string()).await, 1);
    let row = stagepass::db::streams::find(&mut db.get().await.unwrap(), stream.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, StreamStatus::Live);

    // Every delivery arrives, each exactly once: the nine planted per
    // endpoint (before the kill, queued at the kill, after it) and the
    // orphan's stream.ended, which the survivor's reconciler queued.
    eventually("every delivery delivered", || async {
        match undelivered(&db).await {
            0 => Ok(()),
            n => Err(format!("{n} undelivered")),
        }
    })
    .await;
    // A few reconciler and worker rounds more: nothing comes twice.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (receiver, endpoint) in receivers.iter().zip(&endpoints) {
        let all = receiver.all();
        let mut seen = BTreeMap::<String, usize>::new();
        for r in &all {
            *seen.entry(r.header("x-stagepass-delivery")).or_default() += 1;
        }
        assert_eq!(seen.len(), 10, "endpoint {endpoint}: {seen:?}");
        assert!(
            seen.values().all(|n| *n == 1),
            "endpoint {endpoint}: {seen:?}"
        );
        let real: Vec<_> = all
            .iter()
            .filter(|r| r.json() != serde_json::json!({}))
            .collect();
        assert_eq!(real.len(), 1, "endpoint {endpoint}");
        assert_eq!(real[0].event(), "stream.ended");
        assert_eq!(real[0].json()["stream"]["id"], orphan.id.0);
    }
    assert_eq!(audited(&db, removed, &viewer_identity).await, 1);
    assert_eq!(audited(&db, ended, &orphan.id.to_string()).await, 1);
    // The recorder's lease is taken over too: recorder.rs's
    // `when_the_recording_instance_is_killed_the_other_continues_and_the_replay_holds_both_parts`
    // (it records real video, from Chromium).
    survivor.stop().await;
}
