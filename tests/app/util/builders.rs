//! Builders for fixtures that later issues' UIs will create (grants, bans),
//! written straight to the test's database, plus a real LiveKit client.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use stagepass::db::channels::{self, Channel, NewChannel};
use stagepass::db::schema::users;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::{self, NewStream, Stream};
use stagepass::db::{ChannelId, StreamId, UserId};

use super::{Browser, TestApp};

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

/// Gives a stream a schedule (tomorrow), so that it is announced: an
/// unannounced draft exists only for its channel's team (404 for anyone else).
pub async fn announce(app: &TestApp, stream: StreamId) {
    diesel::sql_query("UPDATE streams SET scheduled_at = now() + interval '1 day' WHERE id = $1")
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

/// A grant from `now() + starts` to `now() + expires` (SQL intervals, e.g. "-1 hour").
pub async fn grant(
    app: &TestApp,
    user: UserId,
    channel: ChannelId,
    stream: Option<StreamId>,
    starts: &str,
    expires: &str,
) -> i64 {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO access_grants (user_id, channel_id, stream_id, source, starts_at, expires_at) \
         VALUES ($1, $2, $3, 'comp', now() + $4::interval, now() + $5::interval) RETURNING id",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(channel.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .bind::<Text, _>(starts)
    .bind::<Text, _>(expires)
    .get_result(&mut *app.conn().await)
    .await
    .unwrap();
    row.id
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
