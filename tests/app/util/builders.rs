//! The one fixture layer of the tests: users and channels through the real
//! forms, streams, passes, grants and bans written straight to the test's
//! database (typed builders), going live, plus a real LiveKit client.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::channels::{self, Channel, NewChannel};
use stagepass::db::passes::Scope;
use stagepass::db::schema::{
    access_passes, channels as channels_table, streams as streams_table, users,
};
use stagepass::db::streams::{self, AccessKind, NewStream, Status, Stream};
use stagepass::db::{ChannelId, PassId, StreamId, UserId};

use super::{Browser, Page, TestApp};

/// Signs a user up through the real form: their browser and id.
pub async fn user(app: &TestApp, email: &str, name: &str) -> (Browser, UserId) {
    let browser = app.signed_up(email, name).await;
    let id: i64 = users::table
        .filter(users::email.eq(email.to_lowercase()))
        .select(users::id)
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    (browser, UserId(id))
}

pub async fn channel(app: &TestApp, owner: UserId, handle: &str) -> Channel {
    let new = NewChannel {
        handle,
        title: &format!("{handle} channel"),
        description: "",
        owner_id: owner,
    };
    channels::create(&mut *app.conn().await, new).await.unwrap()
}

pub async fn stream(app: &TestApp, channel: &Channel, access: AccessKind) -> Stream {
    let room = stagepass::lifecycle::new_room_name(&app.state);
    let new = NewStream {
        channel_id: channel.id,
        title: "Friday session",
        description: "",
        access,
        scheduled_at: None,
        room_name: &room,
    };
    streams::create(&mut *app.conn().await, &new).await.unwrap()
}

/// Where most studio tests start: an owner (owner@example.com) signed up
/// through the form, their channel and one stream in it (`builders::stream`).
pub struct Studio {
    pub app: TestApp,
    pub owner: Browser,
    pub owner_id: UserId,
    pub channel: Channel,
    pub stream: Stream,
}

impl Studio {
    /// On a fresh app, the owner named "Owner".
    pub async fn spawn(handle: &str, access: AccessKind) -> Studio {
        Studio::on(TestApp::spawn().await, "Owner", handle, access).await
    }

    pub async fn on(app: TestApp, owner_name: &str, handle: &str, access: AccessKind) -> Studio {
        let (owner, owner_id) = user(&app, "owner@example.com", owner_name).await;
        let channel = channel(&app, owner_id, handle).await;
        let stream = stream(&app, &channel, access).await;
        Studio {
            app,
            owner,
            owner_id,
            channel,
            stream,
        }
    }
}

/// Gives a stream a schedule (tomorrow), so that it is announced: an
/// unannounced draft exists only for its channel's team (404 for anyone else).
pub async fn announce(app: &TestApp, stream: StreamId) {
    schedule_in(app, stream, "1 day").await;
}

/// Schedules a stream at `now() + interval` (an SQL interval, e.g. "1 hour").
pub async fn schedule_in(app: &TestApp, stream: StreamId, interval: &str) {
    diesel::sql_query("UPDATE streams SET scheduled_at = now() + $2::interval WHERE id = $1")
        .bind::<BigInt, _>(stream.0)
        .bind::<Text, _>(interval)
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
}

/// Marks a stream live, started `now() - ago` (an SQL interval), without
/// going through LiveKit.
pub async fn set_live(app: &TestApp, stream: StreamId, ago: &str) {
    diesel::sql_query(
        "UPDATE streams SET status = 'live', started_at = now() - $2::interval WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.0)
    .bind::<Text, _>(ago)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}

/// Marks a stream ended now, after an hour live.
pub async fn set_ended(app: &TestApp, stream: StreamId) {
    diesel::sql_query(
        "UPDATE streams SET status = 'ended', started_at = now() - interval '1 hour', ended_at = now() WHERE id = $1",
    )
    .bind::<BigInt, _>(stream.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}

pub async fn moderator(app: &TestApp, channel: ChannelId, user: UserId) {
    assert!(
        channels::add_moderator(&mut *app.conn().await, channel, user)
            .await
            .unwrap()
    );
}

/// An access grant written straight to the database:
/// `GrantBuilder::new(&app, user, channel).stream(..).pass(..).starts_in("-1 hour").expires_in("1 day").create()`
/// (SQL intervals from now). Without a pass it is a comp; with one, a purchase.
/// Unless told otherwise it is channel-wide, from an hour ago for a day.
pub struct GrantBuilder<'a> {
    app: &'a TestApp,
    user: UserId,
    channel: ChannelId,
    stream: Option<StreamId>,
    pass: Option<PassId>,
    starts: String,
    expires: String,
}

impl<'a> GrantBuilder<'a> {
    pub fn new(app: &'a TestApp, user: UserId, channel: ChannelId) -> Self {
        GrantBuilder {
            app,
            user,
            channel,
            stream: None,
            pass: None,
            starts: "-1 hour".into(),
            expires: "1 day".into(),
        }
    }

    /// For one stream rather than the whole channel.
    pub fn stream(mut self, stream: Option<StreamId>) -> Self {
        self.stream = stream;
        self
    }

    /// Bought with this pass (source 'purchase').
    pub fn pass(mut self, pass: Option<PassId>) -> Self {
        self.pass = pass;
        self
    }

    /// Starts at `now() + interval` (e.g. "-1 minute").
    pub fn starts_in(mut self, interval: &str) -> Self {
        self.starts = interval.into();
        self
    }

    /// Expires at `now() + interval` (e.g. "1 hour", "-5 minutes").
    pub fn expires_in(mut self, interval: &str) -> Self {
        self.expires = interval.into();
        self
    }

    pub async fn create(self) -> i64 {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let row: Id = diesel::sql_query(
            "INSERT INTO access_grants (user_id, channel_id, stream_id, pass_id, source, starts_at, expires_at) \
             VALUES ($1, $2, $3, $4, CASE WHEN $4 IS NULL THEN 'comp' ELSE 'purchase' END, \
                     now() + $5::interval, now() + $6::interval) RETURNING id",
        )
        .bind::<BigInt, _>(self.user.0)
        .bind::<BigInt, _>(self.channel.0)
        .bind::<Nullable<BigInt>, _>(self.stream.map(|s| s.0))
        .bind::<Nullable<BigInt>, _>(self.pass.map(|p| p.0))
        .bind::<Text, _>(&self.starts)
        .bind::<Text, _>(&self.expires)
        .get_result(&mut *self.app.conn().await)
        .await
        .unwrap();
        row.id
    }
}

/// A comp grant from `now() + starts` to `now() + expires` (SQL intervals, e.g. "-1 hour").
pub async fn grant(
    app: &TestApp,
    user: UserId,
    channel: ChannelId,
    stream: Option<StreamId>,
    starts: &str,
    expires: &str,
) -> i64 {
    GrantBuilder::new(app, user, channel)
        .stream(stream)
        .starts_in(starts)
        .expires_in(expires)
        .create()
        .await
}

/// A viewer signed up through the form (password `PASSWORD`) holding a
/// channel pass active for the next hour: who watches in the browser tests.
pub async fn pass_holder(app: &TestApp, channel: ChannelId, email: &str, name: &str) -> UserId {
    let (_, id) = user(app, email, name).await;
    grant(app, id, channel, None, "-1 minute", "1 hour").await;
    id
}

pub async fn revoke(app: &TestApp, grant: i64) {
    diesel::sql_query(
        "UPDATE access_grants SET revoked_at = now(), revoked_reason = 'test' WHERE id = $1",
    )
    .bind::<BigInt, _>(grant)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}

pub async fn ban(app: &TestApp, channel: ChannelId, user: UserId) {
    diesel::sql_query(
        "INSERT INTO bans (channel_id, user_id, kind, reason) VALUES ($1, $2, 'ban', 'test')",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<BigInt, _>(user.0)
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}

/// Creates a channel through the real form; answers its id.
pub async fn create_channel(
    app: &TestApp,
    owner: &Browser,
    handle: &str,
    title: &str,
) -> ChannelId {
    let page = owner
        .submit(
            "/studio/channels/new",
            "#channel-form",
            &[("handle", handle), ("title", title), ("description", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    channels_table::table
        .filter(channels_table::handle.eq(handle.to_lowercase()))
        .select(channels_table::id)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

/// A stream written straight to the database, in any state:
/// `StreamBuilder::new(&app, channel).title("..").live_since(..).create()`.
/// Unless told otherwise it is a draft, pass-only (the column's default),
/// unscheduled, titled "Friday session".
pub struct StreamBuilder<'a> {
    app: &'a TestApp,
    channel: ChannelId,
    title: String,
    status: Status,
    access: AccessKind,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl<'a> StreamBuilder<'a> {
    pub fn new(app: &'a TestApp, channel: ChannelId) -> Self {
        StreamBuilder {
            app,
            channel,
            title: "Friday session".into(),
            status: Status::Draft,
            access: AccessKind::Pass,
            scheduled_at: None,
            started_at: None,
            ended_at: None,
        }
    }

    pub fn title(mut self, title: &str) -> Self {
        self.title = title.into();
        self
    }

    pub fn public(mut self) -> Self {
        self.access = AccessKind::Public;
        self
    }

    pub fn pass_only(mut self) -> Self {
        self.access = AccessKind::Pass;
        self
    }

    /// Scheduled `from_now` from now (negative: in the past).
    pub fn scheduled(mut self, from_now: Duration) -> Self {
        self.scheduled_at = Some(Utc::now() + from_now);
        self
    }

    /// Live, started `ago`.
    pub fn live_since(mut self, ago: Duration) -> Self {
        self.status = Status::Live;
        self.started_at = Some(Utc::now() - ago);
        self
    }

    /// Ended `ended_ago`, having started `started_ago`.
    pub fn ended(mut self, started_ago: Option<Duration>, ended_ago: Duration) -> Self {
        let now = Utc::now();
        self.status = Status::Ended;
        self.started_at = started_ago.map(|ago| now - ago);
        self.ended_at = Some(now - ended_ago);
        self
    }

    /// Any status, without start or end (`live_since` and `ended` set those).
    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    pub async fn create(self) -> StreamId {
        let room = stagepass::lifecycle::new_room_name(&self.app.state);
        diesel::insert_into(streams_table::table)
            .values((
                streams_table::channel_id.eq(self.channel),
                streams_table::title.eq(&self.title),
                streams_table::status.eq(self.status),
                streams_table::access.eq(self.access),
                streams_table::scheduled_at.eq(self.scheduled_at),
                streams_table::started_at.eq(self.started_at),
                streams_table::ended_at.eq(self.ended_at),
                streams_table::room_name.eq(room),
            ))
            .returning(streams_table::id)
            .get_result(&mut *self.app.conn().await)
            .await
            .unwrap()
    }
}

/// A pass-only stream in the given state: live since 5 minutes, or ended two
/// hours ago after an hour; scheduled `scheduled_in_hours` from now.
pub async fn stream_in_state(
    app: &TestApp,
    channel: ChannelId,
    title: &str,
    status: Status,
    scheduled_in_hours: Option<i64>,
) -> StreamId {
    let mut builder = StreamBuilder::new(app, channel).title(title).pass_only();
    builder = match status {
        Status::Live => builder.live_since(Duration::minutes(5)),
        Status::Ended => builder.ended(Some(Duration::hours(3)), Duration::hours(2)),
        Status::Draft => builder.status(Status::Draft),
    };
    if let Some(h) = scheduled_in_hours {
        builder = builder.scheduled(Duration::hours(h));
    }
    builder.create().await
}

/// A public stream in `status`, started `started_min` minutes ago (live/ended)
/// or scheduled `sched_min` minutes from now (negative: in the past); an ended
/// one ended a minute ago.
pub async fn stream_at(
    app: &TestApp,
    channel: ChannelId,
    title: &str,
    status: Status,
    started_min: Option<i64>,
    sched_min: Option<i64>,
) -> StreamId {
    let mut builder = StreamBuilder::new(app, channel).title(title).public();
    builder = match (status, started_min) {
        (Status::Ended, started) => {
            builder.ended(started.map(Duration::minutes), Duration::minutes(1))
        }
        (Status::Live, Some(m)) => builder.live_since(Duration::minutes(m)),
        (other, started) => {
            let mut b = builder.status(other);
            b.started_at = started.map(|m| Utc::now() - Duration::minutes(m));
            b
        }
    };
    if let Some(m) = sched_min {
        builder = builder.scheduled(Duration::minutes(m));
    }
    builder.create().await
}

/// A pass written straight to the database (the passes UI is another
/// area's): `PassBuilder::new(&app, &channel).name("..").stream(id).hours(3).create()`.
/// Unless told otherwise it is "Season pass", of the whole channel, for 24
/// hours, 9.00 EUR, replays included.
pub struct PassBuilder<'a> {
    app: &'a TestApp,
    channel: ChannelId,
    name: String,
    stream: Option<StreamId>,
    hours: i32,
}

impl<'a> PassBuilder<'a> {
    pub fn new(app: &'a TestApp, channel: &Channel) -> Self {
        PassBuilder {
            app,
            channel: channel.id,
            name: "Season pass".into(),
            stream: None,
            hours: 24,
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// For one stream rather than the whole channel.
    pub fn stream(mut self, stream: Option<StreamId>) -> Self {
        self.stream = stream;
        self
    }

    pub fn hours(mut self, hours: i32) -> Self {
        self.hours = hours;
        self
    }

    pub async fn create(self) -> PassId {
        diesel::insert_into(access_passes::table)
            .values((
                access_passes::channel_id.eq(self.channel),
                access_passes::stream_id.eq(self.stream),
                access_passes::name.eq(&self.name),
                access_passes::price_cents.eq(900),
                access_passes::currency.eq("EUR"),
                access_passes::scope.eq(if self.stream.is_some() {
                    Scope::Stream
                } else {
                    Scope::Channel
                }),
                access_passes::duration_seconds.eq(self.hours * 3600),
                access_passes::includes_replays.eq(true),
            ))
            .returning(access_passes::id)
            .get_result(&mut *self.app.conn().await)
            .await
            .unwrap()
    }
}

/// A pass of `channel`: for one stream or the whole channel, lasting `hours`.
pub async fn pass(
    app: &TestApp,
    channel: &Channel,
    name: &str,
    stream: Option<StreamId>,
    hours: i32,
) -> PassId {
    PassBuilder::new(app, channel)
        .name(name)
        .stream(stream)
        .hours(hours)
        .create()
        .await
}

/// The owner adds a webhook endpoint at `url` to channel `handle` through the
/// channel's webhooks form, with a generated secret: answers its id.
pub async fn webhook_endpoint(owner: &Browser, handle: &str, url: &str) -> i64 {
    let added = owner
        .submit(
            &format!("/studio/channels/{handle}/webhooks"),
            "#webhook-add-form",
            &[("url", url), ("secret_choice", "generate")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
    added
        .location()
        .unwrap()
        .rsplit("#webhook-")
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The owner goes live through the studio, as the broadcast page's button
/// does (an htmx POST): answers the page, which must be a 200.
pub async fn go_live(owner: &Browser, stream: StreamId) -> Page {
    let page = owner
        .post_htmx(&format!("/studio/streams/{stream}/live"), &[])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page
}

fn client_log() -> std::process::Stdio {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-services");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("lk_client.log"))
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null())
}

/// A real LiveKit participant (LiveKit's Python SDK, installed by scripts/setup).
pub struct LiveKitClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl LiveKitClient {
    /// `mode`: "publish" (try to publish a microphone track), "stay" (wait to be
    /// disconnected), "publish-stay" (publish a microphone track, then stay) or
    /// "watch" (count the video frames received).
    pub async fn start(url: &str, token: &str, mode: &str, seconds: u32) -> LiveKitClient {
        use tokio::io::AsyncBufReadExt;
        let tools =
            std::env::var("STAGEPASS_TOOLS").unwrap_or_else(|_| "/root/.cache/stagepass".into());
        let python = format!("{tools}/venv/bin/python");
        assert!(
            std::path::Path::new(&python).exists(),
            "LiveKit's Python SDK is not installed at {python}: run scripts/setup"
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/lk_client.py");
        let mut child = tokio::process::Command::new(python)
            .args([script, url, token, mode, &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            // The SDK's native core logs (and, when killed mid-call, panics) on
            // stderr: keep that out of the test output, in a log for post-mortems.
            .stderr(client_log())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the LiveKit client");
        let stdout = child.stdout.take().unwrap();
        LiveKitClient {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The client's next report.
    pub async fn next(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(40), self.lines.next_line())
            .await
            .expect("the LiveKit client answered in time")
            .unwrap()
            .expect("the LiveKit client printed a line");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
