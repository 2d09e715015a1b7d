//! The deployment an operator who outgrows one box runs (util/cluster.rs):
//! two app instances and two LiveKit nodes over one Redis, behind Caddy,
//! over HTTPS with HTTP/2 — every step of a live stream through it, and the
//! death of an app instance and of a LiveKit node. `make test-cluster` runs
//! this module alone.
//!
//! When the node that hosts a room dies, LiveKit does not move the room by
//! itself: its record stays in Redis, pointing at the dead node, until
//! someone asks for the room again after the node has gone stale (5 s
//! without stats). The host's and the viewers' LiveKit clients do: they try
//! to resume, are told to rejoin, and the first rejoin re-creates the room
//! (same name, same id) on the surviving node. So the host reconnects to a
//! new room on the survivor, and the stream goes on; the reconciler has
//! nothing to end (LiveKit still lists the room throughout). A stream whose
//! host does not come back is ended by the reconciler after the departure
//! timeout (see `lifecycle::reconcile`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::{audit_log, notifications, streams};
use stagepass::db::streams::AccessKind;
use stagepass::db::{DbPool, StreamId, UserId};

use crate::util::browser::{Browser as Chromium, TIMEOUT, go_live_in};
use crate::util::cluster::{Cluster, PIN};
use crate::util::sse::{Sse, body_of};
use crate::util::webhook_receiver::Receiver;
use crate::util::{Browser, PASSWORD, builders};

const OWNER: &str = "olive@example.com";
const VIEWER: &str = "vera@example.com";

/// Media takes its time on a small machine.
const LONG: Duration = Duration::from_secs(90);

/// How long the host's LiveKit client may take to rejoin after its node
/// died (about 15 s here); the cluster's departure timeout, after which the
/// reconciler gives up on a stranded room, is longer (util/cluster.rs).
const REJOIN: Duration = Duration::from_secs(40);

#[tokio::test]
async fn two_instances_and_two_livekit_nodes_behind_caddy_hold_a_live_stream() {
    let cluster = Cluster::start().await;
    let app = &cluster.app;
    let db = app.db().clone();

    // The channel has a follower (notifications) and an outgoing webhook
    // endpoint, so that both instances' workers have something to do once.
    let (owner, owner_id) = builders::user(app, OWNER, "Olive Owner").await;
    let owner_a = owner.with_header((PIN, "a"));
    let owner_b = owner.with_header((PIN, "b"));
    let channel = builders::channel(app, owner_id, "duo").await;
    let (follower, follower_id) = builders::user(app, "finn@example.com", "Finn Follower").await;
    let followed = follower.post_htmx("/c/duo/follow", &[]).await;
    assert_eq!(followed.status, StatusCode::OK, "{}", followed.text);
    let (receiver, endpoint) = Receiver::start(&[]).await;
    builders::webhook_endpoint(&owner_a, "duo", &endpoint).await;

    // 1. The creator goes live through instance A, in Chromium with the fake
    //    camera, over HTTPS.
    let stream = builders::stream(app, &channel, AccessKind::Pass).await;
    let creator = Chromium::start_trusting(&cluster.ca).await;
    creator.send_header(PIN, "a").await;
    let creator = go_live_in(creator, &app.url, OWNER, stream.id).await;
    let go_live = r#"route="/studio/streams/{id}/live""#;
    assert_eq!(requests(&cluster, "a", "POST", go_live).await, 1.0);
    assert_eq!(requests(&cluster, "b", "POST", go_live).await, 0.0);
    // From now on the creator's requests go wherever the proxy sends them;
    // the page's chat stream stays where it was opened, on A.
    creator.send_header(PIN, "").await;

    // 2. A viewer buys a pass (the development checkout) and watches,
    //    through instance B: the video plays, and Chromium got the page and
    //    the chat stream over HTTP/2.
    builders::pass(app, &channel, "Day pass", None, 24).await;
    let (viewer_http, viewer_id) = builders::user(app, VIEWER, "Vera Viewer").await;
    let viewer = Chromium::start_trusting(&cluster.ca).await;
    viewer.send_header(PIN, "b").await;
    viewer.sign_in(&app.url, VIEWER, PASSWORD).await;
    let watch_url = format!("{}/s/{}", app.url, stream.id);
    viewer.goto(&watch_url).await;
    viewer.click("#get-pass").await;
    viewer.click(".buy-form [type=submit]").await;
    viewer.click("#dev-confirm-form [type=submit]").await;
    viewer.wait_for("#player").await;
    assert_eq!(viewer.path().await, format!("/s/{}", stream.id));
    let grant = grant_of(&db, viewer_id).await;
    plays(&viewer, "the stream's video to play for the viewer on B").await;
    viewer.wait_chat_open().await;
    let token = r#"route="/s/{id}/token""#;
    assert!(requests(&cluster, "b", "POST", token).await >= 1.0);
    assert_eq!(requests(&cluster, "a", "POST", token).await, 0.0);
    let seen = viewer.protocols().await;
    let protocol_of = |kind: &str, path: &str| {
        seen.iter()
            .find(|(k, url, _)| k == kind && url.split('?').next().unwrap().ends_with(path))
            .map(|(_, _, p)| p.clone())
            .unwrap_or_else(|| panic!("no {kind} response for {path} in {seen:#?}"))
    };
    assert_eq!(protocol_of("Document", &format!("/s/{}", stream.id)), "h2");
    assert_eq!(
        protocol_of("EventSource", &format!("/s/{}/chat/events", stream.id)),
        "h2"
    );

    // 3. Chat crosses instances: the viewer's message (posted on B) reaches
    //    the creator's broadcast page (on A), and the owner's (posted on A)
    //    the viewer's page.
    viewer
        .wait_for(".chat-form input[name=body]")
        .await
        .send_keys("Hello from instance B\u{E007}")
        .await
        .unwrap();
    shows(
        &creator,
        "the viewer's message on the creator's page",
        "Hello from instance B",
    )
    .await;
    let posted = owner_a
        .post_htmx(
            &format!("/s/{}/chat", stream.id),
            &[("body", "Hello from instance A")],
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text);
    shows(
        &viewer,
        "the owner's message on the viewer's page",
        "Hello from instance A",
    )
    .await;

    // 4. LiveKit places rooms on both nodes: three more streams go live,
    //    through A and B in turn, 3 s apart (placement reads the nodes' room
    //    counts, which they publish every 2 s).
    let mut others = Vec::new();
    for (i, through) in [&owner_b, &owner_a, &owner_b].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = builders::stream(app, &channel, AccessKind::Public).await;
        builders::go_live(through, s.id).await;
        eprintln!("stream {} ({i}) is live", s.id);
        others.push(s);
    }
    let mut placed = BTreeMap::<&str, usize>::new();
    for s in std::iter::once(&stream).chain(&others) {
        let node = cluster
            .node_of(&room_of(&db, s.id).await)
            .unwrap_or_else(|| panic!("no node hosts the room of stream {}", s.id));
        *placed.entry(node.name).or_default() += 1;
    }
    assert_eq!(placed.len(), 2, "rooms on both nodes: {placed:?}");

    // 5. The owner revokes the viewer's grant through A: within 2 s the
    //    viewer is no longer in LiveKit's room, removed once.
    let room = room_of(&db, stream.id).await;
    assert!(
        in_room(app, &room, viewer_id).await,
        "the viewer is in the room before the revocation"
    );
    let revoked = Instant::now();
    let page = owner_a
        .post_htmx(
            &format!("/studio/grants/{grant}/revoke"),
            &[("reason", "Refunded at their request")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    loop {
        if !in_room(app, &room, viewer_id).await {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "the viewer is still in the room {:?} after the revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("removed {:?} after the revocation", revoked.elapsed());

    // 6. Both instances run the reconciler, the enforcer and the webhook
    //    workers: two of the streams end (one through each instance), and a
    //    few rounds later everything happened once — one removal, one end
    //    per stream, one delivery per event, one notification per go-live.
    let (ended_a, ended_b) = (&others[0], &others[1]);
    end(&owner_a, ended_a.id).await;
    end(&owner_b, ended_b.id).await;
    eventually("every delivery delivered", || async {
        let all = receiver.all();
        let ended = all.iter().filter(|r| r.event() == "stream.ended").count();
        let started = all.iter().filter(|r| r.event() == "stream.started").count();
        if ended >= 2 && started >= 4 {
            Ok(())
        } else {
            Err(format!("{started} started, {ended} ended"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = receiver.all();
    let mut by_event = BTreeMap::<(String, i64), usize>::new();
    for r in &all {
        *by_event
            .entry((r.event(), r.json()["stream"]["id"].as_i64().unwrap_or(0)))
            .or_default() += 1;
    }
    assert!(
        by_event.values().all(|n| *n == 1),
        "deliveries: {by_event:?}"
    );
    assert_eq!(by_event.len(), 6, "deliveries: {by_event:?}");
    for s in std::iter::once(&stream).chain(&others) {
        assert_eq!(notified(&db, follower_id, s.id).await, 1, "stream {}", s.id);
    }
    for s in [ended_a, ended_b] {
        assert_eq!(
            audited_like(&db, "stream.ended%", &s.id.to_string()).await,
            1
        );
    }
    for which in ["a", "b"] {
        assert!(
            cluster
                .has_metric(which, "reconciler_streams_ended_total")
                .await,
            "instance {which}'s reconciler ran"
        );
    }
    assert_eq!(
        audited_like(&db, "participant.removed%", &viewer_id.to_string()).await,
        1
    );

    // The viewer buys again (a new grant) and reloads: they watch again.
    builders::grant(app, viewer_id, channel.id, None, "-1 minute", "1 hour").await;
    viewer.goto(&watch_url).await;
    plays(&viewer, "the stream's video to play again after a new pass").await;

    // 7. Instance A dies. Two chat streams that were on A resume through the
    //    proxy, on B, from where they were: every message once, none lost.
    let reader = builders::user(app, "rhea@example.com", "Rhea Reader")
        .await
        .0;
    let events = format!("/s/{}/chat/events", others[2].id);
    let held_by_a = cluster.metric("a", "chat_subscribers").await;
    let mut on_a = Vec::new();
    for _ in 0..2 {
        on_a.push(Sse::open(&reader.with_header((PIN, "a")), &events, None).await);
    }
    assert!(cluster.metric("a", "chat_subscribers").await >= held_by_a + 2.0);
    let chat = format!("/s/{}/chat", others[2].id);
    for i in 1..=3 {
        post(&owner_b, &chat, &format!("before the kill {i}")).await;
    }
    let mut last_ids = Vec::new();
    for sse in &mut on_a {
        let mut last = None;
        for i in 1..=3 {
            let e = sse.expect("a message before the kill").await;
            assert_eq!(body_of(&e), format!("before the kill {i}"));
            last = e.id.clone();
        }
        last_ids.push(last.expect("chat events carry ids"));
    }
    cluster.kill_instance("a").await;
    // At once, while the creator's page (its chat stream was on A) is cut off.
    post(
        &viewer_http,
        &format!("/s/{}/chat", stream.id),
        "Still here after A",
    )
    .await;
    for i in 1..=3 {
        // No pin: as a browser would, through the proxy, which sends it to B.
        post(&follower, &chat, &format!("after the kill {i}")).await;
    }
    let pinned = owner_a.get("/readyz").await;
    assert_eq!(pinned.status, StatusCode::BAD_GATEWAY, "A is gone");
    let held_by_b = cluster.metric("b", "chat_subscribers").await;
    let mut resumed_all = Vec::new();
    for (sse, last) in on_a.iter_mut().zip(&last_ids) {
        // The stream from A ends; the client reconnects with Last-Event-ID.
        assert!(
            sse.drain(Duration::from_secs(5)).await.is_empty(),
            "nothing arrives from a dead instance"
        );
        let mut resumed = Sse::open(&reader, &events, Some(last)).await;
        let bodies: Vec<String> = resumed
            .drain(Duration::from_secs(3))
            .await
            .iter()
            .filter(|e| e.event == "chat")
            .map(body_of)
            .collect();
        assert_eq!(
            bodies,
            ["after the kill 1", "after the kill 2", "after the kill 3"],
            "resumed on B from where it was"
        );
        resumed_all.push(resumed);
    }
    assert!(cluster.metric("b", "chat_subscribers").await >= held_by_b + 2.0);
    // The creator's browser reconnected through the proxy, to B, and got the
    // message posted while it was cut off, once.
    shows(
        &creator,
        "the message posted during the cut on the creator's page",
        "Still here after A",
    )
    .await;
    let copies = creator
        .js("return [...document.querySelectorAll('.chat-msg')].filter(li => li.innerText.includes('Still here after A')).length")
        .await;
    assert_eq!(copies, 1);

    // 8. The LiveKit node that hosts the creator's room dies. The viewer's
    //    player says it is reconnecting; the host's client rejoins, which
    //    re-creates the room on the surviving node, and the video plays again.
    let host = cluster.node_of(&room).expect("a node hosts the room").name;
    let survivor = cluster.nodes.iter().find(|n| n.name != host).unwrap().name;
    // Two streams on the same node with nobody in their rooms.
    let mut stranded = Vec::new();
    for _ in 0..8 {
        if stranded.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = builders::stream(app, &channel, AccessKind::Public).await;
        builders::go_live(&owner_b, s.id).await;
        if cluster.node_of(&room_of(&db, s.id).await).map(|n| n.name) == Some(host) {
            stranded.push(s);
        }
    }
    assert_eq!(
        stranded.len(),
        2,
        "two streams placed on the node that hosts the creator's room"
    );
    creator.js("window.states = []; new MutationObserver(() => window.states.push(document.getElementById('connection-state').dataset.state)).observe(document.getElementById('connection-state'), { attributes: true }); return true").await;
    viewer.js("window.states = []; new MutationObserver(() => window.states.push(document.getElementById('player').dataset.state)).observe(document.getElementById('player'), { attributes: true }); return true").await;
    let killed = Instant::now();
    cluster.kill_node(host);
    viewer
        .wait_until(
            "the player to say it is reconnecting",
            "return window.states.includes('reconnecting')",
            LONG,
        )
        .await;
    eprintln!(
        "the viewer saw reconnecting {:?} after the kill",
        killed.elapsed()
    );
    creator
        .wait_until(
                        "the host to be live again",
            "const s = window.states; const r = s.indexOf('reconnecting'); \
             return r >= 0 && s.indexOf('live', r) > r && document.getElementById('connection-state').dataset.state === 'live'",
            REJOIN,
        )
        .await;
    viewer
        .wait_until(
            "the video to play again",
            "const v = document.getElementById('stream-video'); \
             return v && v.videoWidth > 0 && document.getElementById('player').dataset.state === 'playing' && (window.t0 = window.t0 || v.currentTime) && v.currentTime > window.t0 + 1",
            LONG,
        )
        .await;
    eprintln!(
        "the video played again {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(cluster.node_of(&room).map(|n| n.name), Some(survivor));

    // The owner ends one stream whose room was left on the dead node (LiveKit
    // answers "unavailable" for it until it is moved): it ends, its room is gone.
    end(&owner_b, stranded[0].id).await;
    assert_eq!(status(&db, stranded[0].id).await, "ended");
    // Once. (LiveKit's room_finished for the moved room may be applied
    // before the owner's request records its end: then it is audited as
    // LiveKit's.)
    let ends = audited_like(&db, "stream.ended%", &stranded[0].id.to_string()).await;
    assert_eq!(ends, 1);
    assert_eq!(
        audited_like(
            &db,
            "stream.ended_by_reconciler",
            &stranded[0].id.to_string()
        )
        .await,
        0,
        "ended by the owner's request, long before the reconciler's departure timeout"
    );
    let rooms = app.state.livekit.rooms.list_rooms(vec![]).await.unwrap();
    let gone = room_of(&db, stranded[0].id).await;
    assert!(!rooms.iter().any(|r| r.name == gone), "{rooms:?}");

    // Nobody comes back to the other: a reconciler moves its room once it has
    // been stranded for the departure timeout (45 s here) and, finding it
    // empty, ends the stream, once. The creator's stream, whose host came
    // back, stays live.
    let other = stranded[1].id;
    eventually_within(
        "the stranded stream ended by the reconciler",
        LONG,
        || async {
            match status(&db, other).await.as_str() {
                "ended" => Ok(()),
                s => Err(s.to_owned()),
            }
        },
    )
    .await;
    eprintln!(
        "the stranded stream ended {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(
        audited_like(&db, "stream.ended%", &other.to_string()).await,
        1
    );
    assert_eq!(status(&db, stream.id).await, "live");

    // A new go-live lands on the surviving node.
    let fresh = builders::stream(app, &channel, AccessKind::Public).await;
    builders::go_live(&owner, fresh.id).await;
    assert_eq!(
        cluster
            .node_of(&room_of(&db, fresh.id).await)
            .map(|n| n.name),
        Some(survivor)
    );

    viewer.close().await;
    creator.close().await;
}

/// Requests instance `which` counted for `route` (a `route="…"` label) with `method`.
async fn requests(cluster: &Cluster, which: &str, method: &str, route: &str) -> f64 {
    cluster
        .metric_with(
            which,
            "http_requests_total",
            &[&format!(r#"method="{method}""#), route],
        )
        .await
}

async fn room_of(db: &DbPool, stream: StreamId) -> String {
    streams::table
        .find(stream)
        .select(streams::room_name)
        .first(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

/// The viewer's newest grant.
async fn grant_of(db: &DbPool, user: UserId) -> i64 {
    use stagepass::db::schema::access_grants;
    access_grants::table
        .filter(access_grants::user_id.eq(user.0))
        .order(access_grants::id.desc())
        .select(access_grants::id)
        .first(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

async fn notified(db: &DbPool, user: UserId, stream: StreamId) -> i64 {
    notifications::table
        .filter(notifications::user_id.eq(user.0))
        .filter(notifications::stream_id.eq(stream.0))
        .count()
        .get_result(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

async fn audited_like(db: &DbPool, action: &str, subject: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.like(action))
        .filter(audit_log::subject.eq(subject))
        .count()
        .get_result(&mut *db.get().await.unwrap())
        .await
        .unwrap()
}

async fn end(owner: &Browser, stream: StreamId) {
    let page = owner
        .post_htmx(&format!("/studio/streams/{stream}/end"), &[])
        .await;
    assert!(
        page.status.is_success() || page.status.is_redirection(),
        "{}: {}",
        page.status,
        page.text
    );
}

async fn post(who: &Browser, chat: &str, body: &str) {
    let page = who.post_htmx(chat, &[("body", body)]).await;
    assert_eq!(page.status, StatusCode::OK, "{body}: {}", page.text);
}

async fn plays(b: &Chromium, what: &str) {
    b.wait_until(
        what,
        "const v = document.getElementById('stream-video'); \
         return v && v.videoWidth > 0 && v.currentTime > 0",
        LONG,
    )
    .await;
}

/// Whether `user` is in LiveKit's room `room`, as LiveKit answers.
async fn in_room(app: &crate::util::TestApp, room: &str, user: UserId) -> bool {
    let people = app
        .state
        .livekit
        .rooms
        .list_participants(room)
        .await
        .unwrap();
    people.iter().any(|p| p.identity == user.to_string())
}

/// Waits until a chat message on `b`'s page contains `needle`.
async fn shows(b: &Chromium, what: &str, needle: &str) {
    let script = format!(
        "return [...document.querySelectorAll('.chat-msg')].some(li => li.innerText.includes({}))",
        serde_json::to_string(needle).unwrap()
    );
    b.wait_until(what, &script, TIMEOUT).await;
}

async fn eventually<Fut>(what: &str, check: impl FnMut() -> Fut)
where
    Fut: std::future::Future<Output = Result<(), String>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

async fn eventually_within<Fut>(what: &str, wait: Duration, mut check: impl FnMut() -> Fut)
where
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + wait;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("waited {wait:?} for {what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The stream's status, as its row says.
async fn status(db: &DbPool, stream: StreamId) -> String {
    stagepass::db::streams::find(&mut db.get().await.unwrap(), stream)
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
}
