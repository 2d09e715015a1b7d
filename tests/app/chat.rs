//! Live chat against real Postgres: posting and every refusal, the SSE stream
//! read as a browser's EventSource would (util/sse.rs), resuming with Last-Event-ID, two app instances on one database,
//! a lagging reader, deletion, the hold-back delay and escaping.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use stagepass::db::UserId;
use stagepass::db::channels::Channel;
use stagepass::db::schema::{audit_log, chat_messages};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::builders::{self, Studio, ban, grant, revoke};
use crate::util::sse::{ARRIVES, Event, Sse, body_of};
use crate::util::{Browser, Page, TestApp};

/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

struct Chat {
    app: TestApp,
    owner: Browser,
    owner_id: UserId,
    channel: Channel,
    stream: Stream,
    viewer: Browser,
    viewer_id: UserId,
}

/// A pass stream, announced for later (chat is open before the show), with
/// its owner and a viewer holding a grant.
async fn setup() -> Chat {
    setup_on(TestApp::spawn().await).await
}

async fn setup_on(app: TestApp) -> Chat {
    let Studio {
        app,
        owner,
        owner_id,
        channel,
        stream,
    } = Studio::on(app, "Olive Owner", "chatty", AccessKind::Pass).await;
    builders::schedule_in(&app, stream.id, "1 hour").await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Vera Viewer").await;
    grant(&app, viewer_id, channel.id, None, "-1 minute", "1 hour").await;
    Chat {
        app,
        owner,
        owner_id,
        channel,
        stream,
        viewer,
        viewer_id,
    }
}

impl Chat {
    fn path(&self, rest: &str) -> String {
        format!("/s/{}{rest}", self.stream.id)
    }

    async fn say(&self, who: &Browser, body: &str) -> Page {
        who.post_htmx(&self.path("/chat"), &[("body", body)]).await
    }

    /// Posts and expects it to go out.
    async fn said(&self, who: &Browser, body: &str) {
        let page = self.say(who, body).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(!page.has(".chat-error"), "{}", page.text);
    }

    async fn settings(&self, fields: &[(&str, &str)]) -> Page {
        self.owner
            .post_htmx(
                &format!("/studio/streams/{}/chat-settings", self.stream.id),
                fields,
            )
            .await
    }

    async fn events(&self, who: &Browser) -> Sse {
        Sse::open(who, &self.path("/chat/events"), None).await
    }

    async fn message_count(&self) -> i64 {
        chat_messages::table
            .filter(chat_messages::stream_id.eq(self.stream.id))
            .count()
            .get_result(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    /// (id, seq) of the message with this body.
    async fn message(&self, body: &str) -> (i64, Option<i64>) {
        chat_messages::table
            .filter(chat_messages::stream_id.eq(self.stream.id))
            .filter(chat_messages::body.eq(body))
            .select((chat_messages::id, chat_messages::seq))
            .first(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    async fn panel(&self, who: &Browser) -> Page {
        who.get_htmx(&self.path("/chat")).await
    }

    async fn moderator(&self) -> Browser {
        let (moderator, id) = builders::user(&self.app, "mod@example.com", "Max Moderator").await;
        builders::moderator(&self.app, self.channel.id, id).await;
        moderator
    }
}

/// A second instance on `a`'s database and LiveKit.
async fn beside(a: &TestApp) -> TestApp {
    let url = a.state.config.database_url.expose_secret().to_owned();
    let prefix = a.state.config.livekit.room_prefix.clone();
    TestApp::spawn_with(|env| {
        env.insert("DATABASE_URL".into(), url);
        env.insert("LIVEKIT_ROOM_PREFIX".into(), prefix);
    })
    .await
}

/// The same browser on `app`: sessions live in Postgres and cookies are per host.
fn on(app: &TestApp, who: &Browser) -> Browser {
    Browser {
        base: app.url.clone(),
        ..who.clone()
    }
}

#[tokio::test]
async fn a_message_posted_through_one_instance_reaches_an_sse_client_of_another() {
    let a = TestApp::spawn().await;
    let b = beside(&a).await;
    let chat = setup_on(a).await;
    let on_b = |who: &Browser| on(&b, who);
    let mut viewer_on_b = Sse::open(&on_b(&chat.viewer), &chat.path("/chat/events"), None).await;
    let mut owner_on_a = chat.events(&chat.owner).await;

    chat.said(&chat.owner, "Hello from instance A").await;
    let e = viewer_on_b.expect("the message posted on A").await;
    assert_eq!(e.event, "chat");
    assert_eq!(e.id.as_deref(), Some("1"));
    assert_eq!(body_of(&e), "Hello from instance A");
    assert!(e.data.contains("Olive Owner"), "{}", e.data);
    assert_eq!(
        owner_on_a
            .expect("the same message on A")
            .await
            .id
            .as_deref(),
        Some("1")
    );

    // And the other way round: posted on B, seen on A.
    let viewer_b = on_b(&chat.viewer);
    chat.said(&viewer_b, "And hello from B").await;
    let e = owner_on_a.expect("the message posted on B").await;
    assert_eq!((e.event.as_str(), e.id.as_deref()), ("chat", Some("2")));
    assert_eq!(body_of(&e), "And hello from B");
    assert_eq!(
        body_of(&viewer_on_b.expect("its own message").await),
        "And hello from B"
    );
    assert!(
        viewer_on_b.drain(QUIET).await.is_empty(),
        "each message arrives once"
    );
}

#[tokio::test]
async fn a_client_that_resumes_with_last_event_id_gets_every_missed_event_once() {
    let chat = setup().await;
    let moderator = chat.moderator().await;
    let mut sse = chat.events(&chat.viewer).await;
    chat.said(&chat.owner, "one").await;
    chat.said(&chat.owner, "two").await;
    let first = sse.expect("one").await;
    let second = sse.expect("two").await;
    assert_eq!(
        (first.id.as_deref(), body_of(&first).as_str()),
        (Some("1"), "one")
    );
    assert_eq!(
        (second.id.as_deref(), body_of(&second).as_str()),
        (Some("2"), "two")
    );
    drop(sse); // the network drops

    chat.said(&chat.owner, "three").await;
    chat.said(&moderator, "four").await;
    let (one, _) = chat.message("one").await;
    let deleted = moderator
        .post_htmx(&chat.path(&format!("/chat/{one}/delete")), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);

    // EventSource reconnects with the id of the last event it saw.
    let mut sse = Sse::open(
        &chat.viewer,
        &chat.path("/chat/events"),
        second.id.as_deref(),
    )
    .await;
    let missed = sse.drain(QUIET).await;
    let got: Vec<(String, Option<String>, String)> = missed
        .iter()
        .map(|e| (e.event.clone(), e.id.clone(), body_of(e)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("chat".into(), Some("3".into()), "three".into()),
            ("chat".into(), Some("4".into()), "four".into()),
            ("delete".into(), Some("5".into()), String::new()),
        ]
    );
    assert_eq!(
        missed[2].data,
        r#"<div id="chat-msg-1" hx-swap-oob="delete"></div>"#
    );

    // Live again, once each.
    chat.said(&chat.owner, "five").await;
    let live = sse.drain(QUIET).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(
        (live[0].id.as_deref(), body_of(&live[0]).as_str()),
        (Some("6"), "five")
    );

    // A page loaded now resumes from where its panel ends (the URL carries it).
    let panel = chat.panel(&chat.viewer).await;
    let url = panel.attr("[data-chat]", "sse-connect").unwrap();
    assert_eq!(url, chat.path("/chat/events?after=6"));
    let texts = panel.texts(".chat-msg .chat-body");
    assert_eq!(texts, ["two", "three", "four", "five"]);
    let mut from_panel = Sse::open(&chat.viewer, &url, None).await;
    assert!(
        from_panel.drain(QUIET).await.is_empty(),
        "nothing the panel shows is sent again"
    );
    chat.said(&chat.owner, "six").await;
    assert_eq!(body_of(&from_panel.expect("six").await), "six");
}

#[tokio::test]
async fn a_reader_too_slow_for_the_broadcast_channel_catches_up_without_a_gap() {
    let chat = setup().await;
    let stream = chat.stream.clone();
    let asked_at = chat.app.state.chat.broadcasts();
    let access = stagepass::access::may(&mut *chat.app.conn().await, Some(chat.viewer_id), &stream)
        .await
        .unwrap();
    // A reader whose client reads nothing for now.
    let events = stagepass::chat::events(
        chat.app.state.clone(),
        stream.clone(),
        Some(chat.viewer_id),
        access,
        asked_at,
        Some(0),
    )
    .await
    .unwrap();
    let mut events = std::pin::pin!(events);
    // The client reads once (nothing there yet, so the reader now waits for
    // live events), then nothing for now.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.next())
            .await
            .is_err()
    );

    // Far more messages than the hub buffers (256), made visible and
    // announced the way posting does, in one go.
    let total: usize = 600;
    diesel::sql_query(format!(
        "DO $$ DECLARE n BIGINT; BEGIN FOR i IN 1..{total} LOOP \
           UPDATE streams SET chat_seq = chat_seq + 1 WHERE id = {s} RETURNING chat_seq INTO n; \
           INSERT INTO chat_messages (stream_id, author_id, body, seq) VALUES ({s}, {u}, 'message ' || n, n); \
           PERFORM pg_notify('stagepass_chat', 'm:{s}:' || n); \
         END LOOP; END $$",
        s = stream.id,
        u = chat.owner_id,
    ))
    .execute(&mut *chat.app.conn().await)
    .await
    .unwrap();
    // Let the bridge publish them all while the reader is stuck.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut seqs = Vec::new();
    while seqs.len() < total {
        let item = tokio::time::timeout(ARRIVES, events.next())
            .await
            .expect("the reader keeps delivering")
            .expect("the stream goes on")
            .unwrap();
        let item = Event::parse(std::str::from_utf8(&item.0).unwrap()).expect("one event a frame");
        if item.event == "chat" {
            let seq: i64 = item.id.unwrap().parse().unwrap();
            assert!(
                item.data.contains(&format!(">message {seq}<")),
                "{}",
                item.data
            );
            seqs.push(seq);
        }
    }
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<i64>>(),
        "every event once, in order"
    );
    let metrics = chat.app.anonymous().get("/metrics").await;
    assert!(
        metrics.text.contains("chat_reader_lagged_total"),
        "the reader did lag"
    );
}

#[tokio::test]
async fn a_revocation_between_the_access_check_and_subscribing_still_closes_the_stream() {
    let chat = setup().await;
    let state = chat.app.state.clone();
    let asked_at = state.chat.broadcasts();
    let access = stagepass::access::may(
        &mut *chat.app.conn().await,
        Some(chat.viewer_id),
        &chat.stream,
    )
    .await
    .unwrap();
    assert!(access.may_watch());
    // Revoked after the question, before the reader subscribes: the notice
    // goes out while the reader is on no topic yet.
    diesel::sql_query("UPDATE access_grants SET revoked_at = now() WHERE user_id = $1")
        .bind::<BigInt, _>(chat.viewer_id.0)
        .execute(&mut *chat.app.conn().await)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while state.chat.broadcasts() == asked_at {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge published the re-check"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = stagepass::chat::events(
        state.clone(),
        chat.stream.clone(),
        Some(chat.viewer_id),
        access,
        asked_at,
        None,
    )
    .await
    .unwrap();
    let mut events = std::pin::pin!(events);
    let first = tokio::time::timeout(ARRIVES, events.next())
        .await
        .expect("the reader asks again at once")
        .expect("an event")
        .unwrap();
    let first = Event::parse(std::str::from_utf8(&first.0).unwrap()).unwrap();
    assert_eq!(
        denied_reason(&first, &chat.stream),
        "Your pass has ended. Renew it to rejoin the chat."
    );
    assert!(events.next().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn slow_mode_refuses_with_the_wait_and_writes_nothing() {
    let chat = setup().await;
    let saved = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "60"),
            ("delay_seconds", "0"),
            ("max_length", "500"),
        ])
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert!(saved.has("#chat-settings .form-success"));

    chat.said(&chat.viewer, "first").await;
    let page = chat.say(&chat.viewer, "second").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let error = page.text_of(&format!("#chat-form-{} .chat-error", chat.stream.id));
    assert!(
        error.starts_with("Slow mode is on: you can send your next message in"),
        "{error}"
    );
    // The box keeps what they wrote.
    assert_eq!(
        page.attr("input[name=body]", "value").as_deref(),
        Some("second")
    );
    assert_eq!(chat.message_count().await, 1);
    // The team is not slowed down.
    chat.said(&chat.owner, "team one").await;
    chat.said(&chat.owner, "team two").await;
    assert_eq!(chat.message_count().await, 3);
}

#[tokio::test]
async fn a_timed_out_viewer_is_refused_with_the_end_of_the_timeout() {
    let chat = setup().await;
    diesel::sql_query(
        "INSERT INTO bans (channel_id, user_id, kind, until, reason) \
         VALUES ($1, $2, 'timeout', now() + interval '10 minutes', 'test')",
    )
    .bind::<BigInt, _>(chat.channel.id.0)
    .bind::<BigInt, _>(chat.viewer_id.0)
    .execute(&mut *chat.app.conn().await)
    .await
    .unwrap();
    let page = chat.say(&chat.viewer, "let me talk").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text_of(".chat-error")
            .starts_with("You are timed out of this chat until"),
        "{}",
        page.text
    );
    assert_eq!(chat.message_count().await, 0);
    // A timeout is chat only: they still read the chat, and the panel says so.
    let panel = chat.panel(&chat.viewer).await;
    assert_eq!(panel.status, StatusCode::OK);
    assert!(panel.text_of(".chat-notice").contains("timed out"));
    // The watch page's panel too (read in the page's own statement).
    let page = chat.viewer.get(&chat.path("")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text_of(".chat-notice").contains("timed out"),
        "{}",
        page.text
    );
    let (status, _) = Sse::try_open(&chat.viewer, &chat.path("/chat/events"), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_banned_viewer_is_refused_and_cannot_read_the_chat() {
    let chat = setup().await;
    ban(&chat.app, chat.channel.id, chat.viewer_id).await;
    let page = chat.say(&chat.viewer, "hello?").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        page.text_of(".chat-error"),
        "You have been banned from this channel."
    );
    assert_eq!(chat.message_count().await, 0);
    let (status, _) = Sse::try_open(&chat.viewer, &chat.path("/chat/events"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn chat_off_refuses_everyone_and_says_so() {
    let chat = setup().await;
    let saved = chat
        .settings(&[
            ("slow_mode_seconds", "0"),
            ("delay_seconds", "0"),
            ("max_length", "500"),
        ])
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.attr("#chat-enabled", "checked"), None);
    for who in [&chat.viewer, &chat.owner] {
        // No box to write in any more, and why.
        let page = chat.say(who, "anyone there?").await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            page.text_of(".chat-form .chat-closed"),
            "Chat is off for this stream."
        );
        assert!(!page.has("input[name=body]"));
    }
    assert_eq!(chat.message_count().await, 0);
    let panel = chat.panel(&chat.viewer).await;
    assert_eq!(
        panel.text_of(".chat-closed"),
        "Chat is off for this stream."
    );
    assert!(!panel.has("input[name=body]"));
}

#[tokio::test]
async fn the_maximum_length_refuses_longer_messages_with_both_numbers() {
    let chat = setup().await;
    let saved = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "0"),
            ("delay_seconds", "0"),
            ("max_length", "10"),
        ])
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let page = chat.say(&chat.viewer, "twelve chars").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        page.text_of(".chat-error"),
        "Messages can be at most 10 characters long; yours has 12."
    );
    assert_eq!(
        page.attr("input[name=body]", "maxlength").as_deref(),
        Some("10")
    );
    assert_eq!(chat.message_count().await, 0);
    chat.said(&chat.viewer, "ten chars!").await;
    assert_eq!(chat.message_count().await, 1);
}

#[tokio::test]
async fn floods_and_repeats_are_refused() {
    let chat = setup().await;
    chat.said(&chat.viewer, "hi").await;
    let again = chat.say(&chat.viewer, "  HI ").await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        again.text_of(".chat-error"),
        "You just sent that message. Say something new."
    );
    for n in 2..=5 {
        chat.said(&chat.viewer, &format!("message {n}")).await;
    }
    let flood = chat.say(&chat.viewer, "message 6").await;
    assert_eq!(flood.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        flood
            .text_of(".chat-error")
            .starts_with("You're sending messages too fast")
    );
    let empty = chat.say(&chat.viewer, "   ").await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(chat.message_count().await, 5);
}

#[tokio::test]
async fn a_stranger_without_a_pass_gets_403_from_the_stream_and_from_posting() {
    let chat = setup().await;
    let (stranger, _) = builders::user(&chat.app, "stranger@example.com", "Stranger").await;
    let (status, _) = Sse::try_open(&stranger, &chat.path("/chat/events"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let page = chat.say(&stranger, "let me in").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        page.text_of(".chat-error"),
        "The chat is for access pass holders. Get a pass to join in."
    );
    let panel = chat.panel(&stranger).await;
    assert_eq!(panel.status, StatusCode::FORBIDDEN);
    assert!(!panel.has("[sse-connect]"));
    assert!(!panel.has(".chat-msg"));

    let anonymous = chat.app.anonymous();
    let (status, _) = Sse::try_open(&anonymous, &chat.path("/chat/events"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = anonymous.csrf_token().await;
    let posted = anonymous
        .client
        .post(anonymous.url(&chat.path("/chat")))
        .header("HX-Request", "true")
        .header("X-CSRF-Token", token)
        .form(&[("body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::FORBIDDEN);
    assert!(
        posted
            .text()
            .await
            .unwrap()
            .contains("Sign in to join the chat.")
    );
    assert_eq!(chat.message_count().await, 0);
}

#[tokio::test]
async fn a_script_arrives_escaped_in_the_stream_and_in_the_panel() {
    let chat = setup().await;
    let mut sse = chat.events(&chat.owner).await;
    let evil = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    chat.said(&chat.viewer, evil).await;
    let e = sse.expect("the message").await;
    assert!(!e.data.contains("<script"), "{}", e.data);
    assert!(!e.data.contains("<img"), "{}", e.data);
    assert!(
        e.data.contains("&#60;script&#62;") || e.data.contains("&lt;script&gt;"),
        "{}",
        e.data
    );
    assert_eq!(body_of(&e), evil);

    let panel = chat.panel(&chat.viewer).await;
    assert!(!panel.text.contains("<script>alert"), "{}", panel.text);
    assert_eq!(panel.texts(".chat-msg .chat-body"), [evil]);
    assert!(!panel.has(".chat-body img"));
}

#[tokio::test]
async fn only_the_teams_links_are_clickable() {
    let chat = setup().await;
    chat.said(&chat.viewer, "visit https://viewer.example/x now")
        .await;
    chat.said(&chat.owner, "merch at https://shop.example/tee.")
        .await;
    let panel = chat.panel(&chat.viewer).await;
    let (viewer_msg, owner_msg) = (
        chat.message("visit https://viewer.example/x now").await,
        chat.message("merch at https://shop.example/tee.").await,
    );
    let viewer_sel = format!("#chat-msg-{}", viewer_msg.1.unwrap());
    let owner_sel = format!("#chat-msg-{}", owner_msg.1.unwrap());
    assert!(!panel.has(&format!("{viewer_sel} a")), "{}", panel.text);
    assert_eq!(
        panel.text_of(&format!("{viewer_sel} .chat-body")),
        "visit https://viewer.example/x now"
    );
    assert_eq!(
        panel
            .attr(&format!("{owner_sel} .chat-body a"), "href")
            .as_deref(),
        Some("https://shop.example/tee")
    );
    assert_eq!(
        panel
            .attr(&format!("{owner_sel} .chat-body a"), "rel")
            .as_deref(),
        Some("nofollow noopener noreferrer")
    );
    assert_eq!(panel.text_of(&format!("{owner_sel} .chat-badge")), "owner");
    assert!(!panel.has(&format!("{viewer_sel} .chat-badge")));
}

#[tokio::test]
async fn a_moderator_deletes_a_message_for_everyone_live() {
    let chat = setup().await;
    let moderator = chat.moderator().await;
    let mut viewer_sse = chat.events(&chat.viewer).await;
    let mut moderator_sse = chat.events(&moderator).await;
    chat.said(&chat.viewer, "something regrettable").await;
    let shown = viewer_sse.expect("the message").await;
    let team_view = moderator_sse.expect("the message, for the team").await;
    // Only the team gets the delete button.
    assert!(!shown.data.contains("chat-delete"), "{}", shown.data);
    assert!(team_view.data.contains("chat-delete"), "{}", team_view.data);
    let (id, seq) = chat.message("something regrettable").await;
    let seq = seq.unwrap();

    // Viewers cannot delete.
    let refused = chat
        .viewer
        .post_htmx(&chat.path(&format!("/chat/{id}/delete")), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let deleted = moderator
        .post_htmx(&chat.path(&format!("/chat/{id}/delete")), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    for sse in [&mut viewer_sse, &mut moderator_sse] {
        let e = sse.expect("the deletion").await;
        assert_eq!(e.event, "delete");
        assert_eq!(
            e.data,
            format!(r#"<div id="chat-msg-{seq}" hx-swap-oob="delete"></div>"#)
        );
    }
    let panel = chat.panel(&chat.viewer).await;
    assert!(!panel.has(&format!("#chat-msg-{seq}")), "{}", panel.text);

    // Deleting again changes nothing; the audit log has it once.
    let again = moderator
        .post_htmx(&chat.path(&format!("/chat/{id}/delete")), &[])
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(viewer_sse.drain(QUIET).await.is_empty());
    let audit: Vec<(Option<i64>, Option<String>, serde_json::Value)> = audit_log::table
        .filter(audit_log::action.eq("chat.message_deleted"))
        .select((
            audit_log::channel_id,
            audit_log::subject,
            audit_log::details,
        ))
        .load::<(
            Option<stagepass::db::ChannelId>,
            Option<String>,
            serde_json::Value,
        )>(&mut *chat.app.conn().await)
        .await
        .unwrap()
        .into_iter()
        .map(|(c, s, d)| (c.map(|c| c.0), s, d))
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, Some(chat.channel.id.0));
    assert_eq!(audit[0].1, Some(id.to_string()));
    assert_eq!(audit[0].2["body"], "something regrettable");
    assert_eq!(audit[0].2["author_id"], chat.viewer_id.0);
    let missing = moderator
        .post_htmx(&chat.path("/chat/999999/delete"), &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_viewers_message_is_held_back_until_its_visible_at_while_the_team_sees_it() {
    let chat = setup().await;
    let moderator = chat.moderator().await;
    let saved = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "0"),
            ("delay_seconds", "3"),
            ("max_length", "500"),
        ])
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let mut viewer_sse = chat.events(&chat.viewer).await;
    let mut team_sse = chat.events(&moderator).await;
    // The team's stream starts with the (empty) held list.
    let first = team_sse.expect_held("the held list").await;
    assert!(!first.data.contains("chat-msg"), "{}", first.data);

    let page = chat.say(&chat.viewer, "held for a moment").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.text_of(".chat-notice"),
        "Sent. Viewers see it in 3 seconds unless a moderator removes it."
    );
    let (id, seq) = chat.message("held for a moment").await;
    assert_eq!(seq, None, "no event number until it is visible");

    // The team sees it at once, in the held list, with a delete button.
    let held = team_sse.expect_held("the held list with the message").await;
    assert!(
        held.data.contains(&format!(r#"id="chat-held-{id}""#)),
        "{}",
        held.data
    );
    assert!(held.data.contains("chat-delete"));

    // Viewers see it when visible_at has come, not before.
    let e = viewer_sse.expect("the released message").await;
    assert_eq!(body_of(&e), "held for a moment");
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Bool)]
        due: bool,
        #[diesel(sql_type = Nullable<BigInt>)]
        seq: Option<i64>,
    }
    let due: Due = diesel::sql_query(
        "SELECT visible_at <= now() AS due, seq FROM chat_messages WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .get_result(&mut *chat.app.conn().await)
    .await
    .unwrap();
    assert!(due.due, "delivered before its visible_at");
    assert_eq!(e.id, due.seq.map(|s| s.to_string()));
    // The team's copy leaves the held list for the chat.
    let released = team_sse.expect("the released message, for the team").await;
    assert_eq!(released.event, "chat");
    assert!(released.data.contains(&format!(
        r#"<div id="chat-held-{id}" hx-swap-oob="delete">"#
    )));

    // The team posts at once; a held message a moderator deletes is never shown.
    chat.said(&chat.owner, "no delay for the team").await;
    assert_eq!(
        body_of(&viewer_sse.expect("the owner's message").await),
        "no delay for the team"
    );
    chat.said(&chat.viewer, "deleted while held").await;
    let (held_id, _) = chat.message("deleted while held").await;
    let deleted = moderator
        .post_htmx(&chat.path(&format!("/chat/{held_id}/delete")), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    // The team's held list loses it at once (an empty list still arrives).
    loop {
        let list = team_sse.expect_held("the held list without it").await;
        if !list.data.contains("deleted while held") {
            assert!(!list.data.is_empty());
            break;
        }
    }
    let seen = viewer_sse.drain(Duration::from_secs(5)).await;
    assert!(
        seen.iter().all(|e| !e.data.contains("deleted while held")),
        "{seen:?}"
    );
    let seq: Option<i64> = chat_messages::table
        .find(held_id)
        .select(chat_messages::seq)
        .first(&mut *chat.app.conn().await)
        .await
        .unwrap();
    assert_eq!(seq, None);
}

#[tokio::test]
async fn a_reader_who_loses_access_is_shown_why_and_the_stream_ends() {
    let app = TestApp::spawn().await;
    let (_, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "revoking").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    builders::schedule_in(&app, stream.id, "1 hour").await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let g = grant(&app, viewer_id, channel.id, None, "-1 minute", "1 hour").await;
    let mut sse = Sse::open(&viewer, &format!("/s/{}/chat/events", stream.id), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    revoke(&app, g).await;
    let e = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("the revocation reaches the open stream at once")
        .expect("a denied event");
    assert_eq!(e.event, "denied");
    let panel = scraper::Html::parse_fragment(&e.data);
    let closed = scraper::Selector::parse(&format!(
        r#"#chat-{}[hx-swap-oob="outerHTML"] .chat-denied"#,
        stream.id
    ))
    .unwrap();
    assert_eq!(
        panel
            .select(&closed)
            .next()
            .map(|p| p.text().collect::<String>())
            .as_deref(),
        Some("Your pass has ended. Renew it to rejoin the chat.")
    );
    assert!(!e.data.contains("sse-connect"));
    assert!(sse.next_within(ARRIVES).await.is_none(), "the stream ends");
}

/// The `denied` event's reason, read as the closed panel shows it.
fn denied_reason(e: &Event, stream: &Stream) -> String {
    assert_eq!(e.event, "denied", "{}", e.data);
    let panel = scraper::Html::parse_fragment(&e.data);
    let reason = scraper::Selector::parse(&format!("#chat-{} .chat-denied", stream.id)).unwrap();
    panel
        .select(&reason)
        .next()
        .map(|p| p.text().collect::<String>())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_readers_chat_ends_when_their_pass_runs_out_or_is_deleted() {
    let chat = setup().await;
    let (short, short_id) = builders::user(&chat.app, "short@example.com", "Sam Short").await;
    grant(
        &chat.app,
        short_id,
        chat.channel.id,
        None,
        "-1 minute",
        "3 seconds",
    )
    .await;
    let opened = std::time::Instant::now();
    let mut short_sse = chat.events(&short).await;
    let mut viewer_sse = chat.events(&chat.viewer).await;

    // Asked about when the pass ends (the periodic backstop is minutes away).
    let e = tokio::time::timeout(Duration::from_secs(10), short_sse.next())
        .await
        .expect("the end of the pass reaches the open stream")
        .expect("a denied event");
    assert_eq!(
        denied_reason(&e, &chat.stream),
        "Your pass has ended. Renew it to rejoin the chat."
    );
    let after = opened.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "not before the pass ends: {after:?}"
    );
    assert!(
        short_sse.next_within(ARRIVES).await.is_none(),
        "the stream ends"
    );

    // A grant deleted outright ends the chat as a revocation does.
    diesel::sql_query("DELETE FROM access_grants WHERE user_id = $1")
        .bind::<BigInt, _>(chat.viewer_id.0)
        .execute(&mut *chat.app.conn().await)
        .await
        .unwrap();
    let e = viewer_sse.expect("the deletion's re-check").await;
    assert_eq!(
        denied_reason(&e, &chat.stream),
        "The chat is for access pass holders. Get a pass to join in."
    );
}

#[tokio::test]
async fn turning_a_public_stream_to_pass_ends_the_chat_of_readers_without_one() {
    let Studio {
        app,
        owner,
        channel,
        stream,
        ..
    } = Studio::spawn("opendoor", AccessKind::Public).await;
    builders::schedule_in(&app, stream.id, "1 hour").await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stan").await;
    let (holder, holder_id) = builders::user(&app, "holder@example.com", "Hal").await;
    grant(&app, holder_id, channel.id, None, "-1 minute", "1 hour").await;
    let path = format!("/s/{}/chat/events", stream.id);
    let mut stranger_sse = Sse::open(&stranger, &path, None).await;
    let mut holder_sse = Sse::open(&holder, &path, None).await;

    let studio = format!("/studio/streams/{}", stream.id);
    let when = owner
        .get(&studio)
        .await
        .attr("#stream-form [name=scheduled_at]", "value")
        .expect("the form shows the schedule");
    let saved = owner
        .submit(
            &studio,
            "#stream-form",
            &[
                ("title", stream.title.as_str()),
                ("scheduled_at", when.as_str()),
                ("access", "pass"),
            ],
        )
        .await;
    assert_eq!(
        saved.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        saved.texts(".field-error, .error, .flash")
    );
    let e = stranger_sse.expect("the re-check").await;
    assert_eq!(
        denied_reason(&e, &stream),
        "The chat is for access pass holders. Get a pass to join in."
    );
    // A pass holder reads on: their stream is still open and delivers.
    let said = holder
        .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "still here")])
        .await;
    assert_eq!(said.status, StatusCode::OK, "{}", said.text);
    let e = holder_sse.expect("the holder's own message").await;
    assert_eq!(
        (e.event.as_str(), body_of(&e).as_str()),
        ("chat", "still here")
    );

    // Unannounced again (no schedule: a draft only its team knows of), the
    // stream closes the chat of everyone outside the team at once.
    let saved = owner
        .submit(
            &studio,
            "#stream-form",
            &[
                ("title", stream.title.as_str()),
                ("scheduled_at", ""),
                ("access", "pass"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let e = holder_sse.expect("the re-check").await;
    assert_eq!(denied_reason(&e, &stream), "This stream is not available.");
}

#[tokio::test]
async fn only_the_owner_changes_chat_settings_and_bad_numbers_are_explained() {
    let chat = setup().await;
    let moderator = chat.moderator().await;
    let path = format!("/studio/streams/{}/chat-settings", chat.stream.id);
    let fields = [
        ("enabled", "on"),
        ("slow_mode_seconds", "5"),
        ("delay_seconds", "0"),
        ("max_length", "200"),
    ];
    assert_eq!(
        moderator.post_htmx(&path, &fields).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        chat.viewer.post_htmx(&path, &fields).await.status,
        StatusCode::FORBIDDEN
    );

    let bad = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "-1"),
            ("delay_seconds", "61"),
            ("max_length", "2001"),
        ])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.text_of("#chat-slow-mode-error"),
        "Slow mode must be a whole number from 0 to 3600."
    );
    assert_eq!(
        bad.text_of("#chat-delay-error"),
        "The hold-back delay must be a whole number from 0 to 60."
    );
    assert_eq!(
        bad.text_of("#chat-max-length-error"),
        "The maximum length must be a whole number from 1 to 2000."
    );
    assert_eq!(bad.attr("#chat-delay", "value").as_deref(), Some("61"));

    let good = chat.settings(&fields).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.text);
    assert_eq!(good.attr("#chat-slow-mode", "value").as_deref(), Some("5"));
    let settings = stagepass::db::chat::settings(&mut *chat.app.conn().await, chat.stream.id)
        .await
        .unwrap();
    assert_eq!(
        (
            settings.enabled,
            settings.slow_mode_seconds,
            settings.max_length
        ),
        (true, 5, 200)
    );
    let changes: Vec<serde_json::Value> = audit_log::table
        .filter(audit_log::action.eq("chat.settings_changed"))
        .select(audit_log::details)
        .load(&mut *chat.app.conn().await)
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["before"]["slow_mode_seconds"], 0);
    assert_eq!(changes[0]["after"]["slow_mode_seconds"], 5);
}

#[tokio::test]
async fn the_panel_shows_the_last_hundred_messages_with_authors_and_times() {
    let chat = setup().await;
    // Written directly: the rate limit would take a while.
    diesel::sql_query(format!(
        "DO $$ DECLARE n BIGINT; BEGIN FOR i IN 1..105 LOOP \
           UPDATE streams SET chat_seq = chat_seq + 1 WHERE id = {s} RETURNING chat_seq INTO n; \
           INSERT INTO chat_messages (stream_id, author_id, body, seq) VALUES ({s}, {u}, 'line ' || n, n); \
         END LOOP; END $$",
        s = chat.stream.id,
        u = chat.viewer_id,
    ))
    .execute(&mut *chat.app.conn().await)
    .await
    .unwrap();
    let panel = chat.panel(&chat.viewer).await;
    assert_eq!(panel.status, StatusCode::OK);
    let bodies = panel.texts(".chat-msg .chat-body");
    assert_eq!(bodies.len(), 100);
    assert_eq!(
        (bodies[0].as_str(), bodies[99].as_str()),
        ("line 6", "line 105")
    );
    assert_eq!(panel.text_of("#chat-msg-105 .chat-author"), "Vera Viewer");
    assert!(panel.attr("#chat-msg-105 time", "datetime").is_some());
    assert!(panel.has("[role=log][aria-live=polite]"));
    assert!(!panel.has(".chat-delete"), "viewers get no delete buttons");
    let team = chat.panel(&chat.owner).await;
    assert!(team.has("#chat-msg-105 .chat-delete"));
    assert!(team.has(&format!("#chat-held-list-{}", chat.stream.id)));
}

#[tokio::test]
async fn the_watch_pages_panel_shows_each_new_or_deleted_message_at_the_next_view() {
    let chat = setup().await;
    let moderator = chat.moderator().await;
    let second = beside(&chat.app).await;
    let bodies = |page: &Page| page.texts(".chat-msg .chat-body");
    // Viewed on both instances (each keeps the last messages it read).
    for app in [&chat.app, &second] {
        let page = on(app, &chat.viewer).get(&chat.path("")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(bodies(&page).is_empty());
    }
    chat.said(&chat.viewer, "first!").await;
    chat.said(&chat.owner, "welcome").await;
    for app in [&chat.app, &second] {
        let page = on(app, &chat.viewer).get(&chat.path("")).await;
        assert_eq!(bodies(&page), ["first!", "welcome"], "{}", page.text);
        // The events continue after the last message shown.
        let (_, seq) = chat.message("welcome").await;
        let events = page.attr(&format!("#chat-{}", chat.stream.id), "sse-connect");
        assert_eq!(
            events,
            Some(format!(
                "/s/{}/chat/events?after={}",
                chat.stream.id,
                seq.unwrap()
            ))
        );
    }
    let (id, _) = chat.message("first!").await;
    let deleted = moderator
        .post_htmx(&chat.path(&format!("/chat/{id}/delete")), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    for app in [&chat.app, &second] {
        let page = on(app, &chat.viewer).get(&chat.path("")).await;
        assert_eq!(bodies(&page), ["welcome"], "{}", page.text);
        // The team's view of the same messages has its delete buttons.
        let team = on(app, &chat.owner).get(&chat.path("")).await;
        assert_eq!(bodies(&team), ["welcome"]);
        assert!(team.has(".chat-msg .chat-delete"), "{}", team.text);
        assert!(!page.has(".chat-delete"));
    }
}

/// Opens the chat's event stream and expects a refusal: its status and text.
async fn refused_events(who: &Browser, path: &str) -> (StatusCode, String) {
    let response = who
        .client
        .get(who.url(path))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_ne!(status, StatusCode::OK, "{path} was opened");
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn one_account_may_hold_only_so_many_chat_streams_and_is_told_why() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CHAT_STREAMS_PER_USER_AND_STREAM".into(), "2".into());
        env.insert("CHAT_STREAMS_PER_USER".into(), "3".into());
    })
    .await;
    let chat = setup_on(app).await;
    let mut open = vec![
        chat.events(&chat.viewer).await,
        chat.events(&chat.viewer).await,
    ];
    let (status, text) = refused_events(&chat.viewer, &chat.path("/chat/events")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        text.contains("You already have 2 chat windows open on this stream"),
        "{text}"
    );
    // Someone else is not held back.
    let (status, _owner_sse) = Sse::try_open(&chat.owner, &chat.path("/chat/events"), None).await;
    assert_eq!(status, StatusCode::OK);

    // Another stream of the channel (the grant covers it): the per-account cap.
    let other = builders::stream(&chat.app, &chat.channel, AccessKind::Pass).await;
    builders::schedule_in(&chat.app, other.id, "1 hour").await;
    let other_path = format!("/s/{}/chat/events", other.id);
    open.push(Sse::open(&chat.viewer, &other_path, None).await);
    let (status, text) = refused_events(&chat.viewer, &other_path).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        text.contains("You already have 3 chat windows open"),
        "{text}"
    );

    // Closing one frees its place (once the server notices the client left).
    drop(open.remove(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let (status, sse) = Sse::try_open(&chat.viewer, &chat.path("/chat/events"), None).await;
        if status == StatusCode::OK {
            open.extend(sse);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn followers_only_chat_refuses_strangers_and_fresh_followers_with_the_time_left() {
    let chat = setup().await;
    // A follow age outside the list is refused next to its field.
    let page = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "0"),
            ("delay_seconds", "0"),
            ("max_length", "500"),
            ("followers", "42"),
        ])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text_of("#chat-followers-error")
            .contains("Choose who may chat")
    );
    let page = chat
        .settings(&[
            ("enabled", "on"),
            ("slow_mode_seconds", "0"),
            ("delay_seconds", "0"),
            ("max_length", "500"),
            ("followers", "3600"),
        ])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        page.attr("#chat-followers option[selected]", "value")
            .as_deref(),
        Some("3600")
    );

    // Not a follower: follow first.
    let page = chat.say(&chat.viewer, "hello").await;
    assert!(
        page.text_of(".chat-error")
            .contains("followed the channel for at least 1 hour: follow it to join in"),
        "{} {}",
        page.status,
        page.text
    );
    // A fresh follower: told how long is left.
    let followed = chat
        .viewer
        .post_htmx(&format!("/c/{}/follow", chat.channel.handle), &[])
        .await;
    assert_eq!(followed.status, StatusCode::OK, "{}", followed.text);
    let page = chat.say(&chat.viewer, "hello").await;
    assert!(
        page.text_of(".chat-error")
            .contains("you can post in 60 minutes"),
        "{}",
        page.text
    );
    assert_eq!(chat.message_count().await, 0);
    // The team is exempt.
    let moderator = chat.moderator().await;
    chat.said(&moderator, "welcome").await;
    chat.said(&chat.owner, "hi all").await;
    // Past the age, the follower posts.
    diesel::sql_query(
        "UPDATE follows SET created_at = now() - interval '61 minutes' WHERE user_id = $1",
    )
    .bind::<BigInt, _>(chat.viewer_id.0)
    .execute(&mut *chat.app.conn().await)
    .await
    .unwrap();
    chat.said(&chat.viewer, "hello").await;
    assert_eq!(chat.message_count().await, 3);
}
