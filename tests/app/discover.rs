//! The home page as viewers meet it: live now before starting soon, no
//! unscheduled drafts or ended streams, followed channels first, viewer
//! counts, "More" pages, and search by part of a name — plus the query plans
//! with a few thousand streams.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::streams::Status;
use stagepass::db::{StreamId, UserId};

use crate::util::builders::create_channel;
use crate::util::builders::{self, stream_at};
use crate::util::{Page, TestApp};

/// Someone in the stream's room now (an open presence row).
async fn in_room(app: &TestApp, stream: StreamId, user: Option<UserId>, identity: &str) {
    let sid = format!("PA_{}", uuid::Uuid::new_v4().simple());
    stagepass::db::presence::joined(
        &mut *app.conn().await,
        &stagepass::db::presence::Joined {
            stream_id: stream,
            room_name: "room",
            user_id: user,
            identity,
            participant_sid: &sid,
            at: chrono::Utc::now(),
        },
    )
    .await
    .unwrap();
}

/// The stream ids of the cards under `selector`, in page order.
fn card_ids(page: &Page, selector: &str) -> Vec<i64> {
    let html = page.html();
    let sel = scraper::Selector::parse(&format!("{selector} .stream-card")).unwrap();
    html.select(&sel)
        .map(|el| el.value().attr("data-stream-id").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn discover_lists_live_streams_before_scheduled_ones_and_hides_drafts_and_ended_streams() {
    let app = TestApp::spawn().await;
    // Before anything exists: "nothing", not "nothing else".
    let empty = app.anonymous().get("/").await;
    assert_eq!(
        empty.text_of("#live-now .empty"),
        "Nothing is live right now."
    );
    assert_eq!(
        empty.text_of("#starting-soon .empty"),
        "Nothing is scheduled yet."
    );
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;

    let older_live = stream_at(&app, ch, "Morning show", Status::Live, Some(90), None).await;
    let newer_live = stream_at(&app, ch, "Evening show", Status::Live, Some(5), None).await;
    let soon = stream_at(&app, ch, "Tomorrow's show", Status::Draft, None, Some(125)).await;
    let later = stream_at(
        &app,
        ch,
        "Next week's show",
        Status::Draft,
        None,
        Some(60 * 24 * 7),
    )
    .await;
    let late = stream_at(&app, ch, "Running late", Status::Draft, None, Some(-10)).await;
    let never = stream_at(&app, ch, "Never started", Status::Draft, None, Some(-180)).await;
    let draft = stream_at(&app, ch, "Secret draft", Status::Draft, None, None).await;
    let ended = stream_at(&app, ch, "Last week's show", Status::Ended, Some(120), None).await;

    // Two viewers (one of whom has since deleted their account), the host,
    // and the built-in recorder in the newer room: the host and the recorder
    // do not count.
    let (_bob, bob_id) = builders::user(&app, "bob@example.com", "Bob").await;
    in_room(&app, newer_live, Some(ann_id), &ann_id.to_string()).await;
    in_room(&app, newer_live, Some(bob_id), &bob_id.to_string()).await;
    in_room(&app, newer_live, None, "987654").await;
    in_room(&app, newer_live, None, &format!("recorder-{newer_live}")).await;

    let page = app.anonymous().get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    let all = card_ids(&page, "main");
    assert_eq!(
        all,
        vec![newer_live.0, older_live.0, late.0, soon.0, later.0],
        "live (newest first), then starting soon (soonest first)"
    );
    assert_eq!(
        card_ids(&page, "#live-now"),
        vec![newer_live.0, older_live.0]
    );
    assert_eq!(
        card_ids(&page, "#starting-soon"),
        vec![late.0, soon.0, later.0]
    );
    for hidden in [never, draft, ended] {
        assert!(
            !all.contains(&hidden.0),
            "stream {hidden} must not be listed"
        );
    }
    assert!(!page.text.contains("Secret draft"));

    let live_card = format!("#live-now .stream-card[data-stream-id=\"{newer_live}\"]");
    assert_eq!(
        page.text_of(&format!("{live_card} [data-testid=viewer-count]")),
        "2 viewers"
    );
    assert!(
        page.text_of(&format!("{live_card} .stream-card-when"))
            .contains("live for 5 min")
    );
    assert_eq!(
        page.text_of(&format!("{live_card} .stream-card-channel a")),
        "Ann Live"
    );
    assert_eq!(
        page.attr(&format!("{live_card} img"), "src"),
        Some(format!("/s/{newer_live}/thumbnail"))
    );
    let soon_card = format!("#starting-soon .stream-card[data-stream-id=\"{soon}\"]");
    assert!(
        page.text_of(&format!("{soon_card} time"))
            .starts_with("in 2 h")
    );
    let late_card = format!("#starting-soon .stream-card[data-stream-id=\"{late}\"]");
    assert_eq!(page.text_of(&format!("{late_card} time")), "any minute now");
}

#[tokio::test]
async fn a_follower_sees_the_channels_they_follow_first() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (cat, _) = builders::user(&app, "cat@example.com", "Cat").await;
    let anns = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let cats = create_channel(&app, &cat, "cat-cooks", "Cat Cooks").await;
    // Ann's stream started last, so it leads "Live now" for everyone else.
    let cat_live = stream_at(&app, cats, "Cooking", Status::Live, Some(30), None).await;
    let cat_soon = stream_at(&app, cats, "Baking", Status::Draft, None, Some(60)).await;
    let ann_live = stream_at(&app, anns, "Singing", Status::Live, Some(1), None).await;

    let (viewer, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let before = viewer.get("/").await;
    assert_eq!(card_ids(&before, "main")[0], ann_live.0);
    assert!(!before.has("#following-now"));

    let followed = viewer.post_htmx("/c/cat-cooks/follow", &[]).await;
    assert_eq!(followed.status, StatusCode::OK, "{}", followed.text);

    let page = viewer.get("/").await;
    assert_eq!(
        page.text_of("#following-now h2"),
        "From channels you follow"
    );
    assert_eq!(
        card_ids(&page, "#following-now"),
        vec![cat_live.0, cat_soon.0]
    );
    assert_eq!(
        card_ids(&page, "main")[..2],
        [cat_live.0, cat_soon.0],
        "the followed channel's live and upcoming streams come first"
    );
    // Not a second time further down.
    assert_eq!(card_ids(&page, "#live-now"), vec![ann_live.0]);
    assert!(card_ids(&page, "#starting-soon").is_empty());
    // Streams above, none here: "nothing else".
    assert_eq!(
        page.text_of("#starting-soon .empty"),
        "Nothing else is scheduled yet."
    );
    // Its cards say so on their follow buttons.
    assert_eq!(
        page.text_of(&format!(
            "#follow-cat-cooks-s{cat_live} [data-testid=follow-button]"
        )),
        "Following"
    );
}

#[tokio::test]
async fn more_loads_the_next_page_of_live_streams() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(
            stream_at(
                &app,
                ch,
                &format!("Room {i}"),
                Status::Live,
                Some(i + 1),
                None,
            )
            .await
            .0,
        );
    }
    let anon = app.anonymous();
    let page = anon.get("/").await;
    assert_eq!(card_ids(&page, "#live-now"), ids[..12].to_vec());
    let more = page.attr("#live-more", "hx-get").expect("a More button");

    // htmx: just the next cards, appended in place of the button.
    let next = anon.get_htmx(&more).await;
    assert_eq!(next.status, StatusCode::OK);
    assert!(!next.text.contains("<html"), "a fragment");
    let html = scraper::Html::parse_fragment(&format!("<ul>{}</ul>", next.text));
    let sel = scraper::Selector::parse(".stream-card").unwrap();
    let rest: Vec<i64> = html
        .select(&sel)
        .map(|e| e.value().attr("data-stream-id").unwrap().parse().unwrap())
        .collect();
    assert_eq!(rest, ids[12..].to_vec());
    assert!(!next.text.contains("live-more"), "no further page");

    // Without htmx the same link is a page of its own.
    let plain = anon.get(&more).await;
    assert_eq!(card_ids(&plain, "#live-now"), ids[12..].to_vec());
}

#[tokio::test]
async fn search_finds_streams_and_channels_by_part_of_their_name_and_escapes_wildcards() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let jazz = create_channel(&app, &ann, "jazz-cellar", "The Jazz Cellar").await;
    let (bob, _) = builders::user(&app, "bob@example.com", "Bob").await;
    let other = create_channel(&app, &bob, "bobs-room", "Bob's Room").await;
    let late_jazz = stream_at(&app, other, "Late night jazz", Status::Live, Some(3), None).await;
    let old_jazz = stream_at(
        &app,
        jazz,
        "Jazz from last week",
        Status::Ended,
        Some(600),
        None,
    )
    .await;
    let sale = stream_at(
        &app,
        other,
        "100% live music",
        Status::Draft,
        None,
        Some(60),
    )
    .await;
    stream_at(
        &app,
        jazz,
        "Secret jazz rehearsal",
        Status::Draft,
        None,
        None,
    )
    .await;

    let anon = app.anonymous();
    let page = anon.get("/?q=AZZ").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text_of("#search-heading"), "Results for “AZZ”");
    assert_eq!(
        page.texts("#channel-results .channel-title"),
        vec!["The Jazz Cellar"]
    );
    assert_eq!(
        card_ids(&page, "#stream-results"),
        vec![late_jazz.0, old_jazz.0],
        "live first, ended after; never an unscheduled draft"
    );
    assert_eq!(page.attr("#q", "value").as_deref(), Some("AZZ"));

    // By handle, too.
    let by_handle = anon.get("/?q=bobs-r").await;
    assert_eq!(
        by_handle.texts("#channel-results .channel-title"),
        vec!["Bob's Room"]
    );
    // A channel's name finds its streams too (announced or live, never drafts).
    assert_eq!(
        card_ids(&anon.get("/?q=bob%27s%20room").await, "#stream-results"),
        vec![late_jazz.0, sale.0],
        "the channel's live stream, then its scheduled one"
    );

    // "%" and "_" are searched for, not wildcards.
    let percent = anon.get("/?q=%25").await;
    assert_eq!(card_ids(&percent, "#stream-results"), vec![sale.0]);
    assert!(percent.texts("#channel-results .channel-title").is_empty());
    let underscore = anon.get("/?q=_").await;
    assert!(card_ids(&underscore, "#stream-results").is_empty());
    assert_eq!(
        underscore.text_of("#stream-results .empty"),
        "No stream matches."
    );

    // Results come in pages of 12.
    let mut pianos = Vec::new();
    for i in 0..13 {
        pianos.push(
            stream_at(
                &app,
                other,
                &format!("Piano hour {i}"),
                Status::Live,
                Some(i + 1),
                None,
            )
            .await
            .0,
        );
    }
    let first = anon.get("/?q=piano").await;
    assert_eq!(card_ids(&first, "#stream-results"), pianos[..12].to_vec());
    assert_eq!(
        first.attr("#search-next", "href").as_deref(),
        Some("/?q=piano&page=2")
    );
    assert!(!first.has("#search-prev"));
    let second = anon.get("/?q=piano&page=2").await;
    assert_eq!(card_ids(&second, "#stream-results"), pianos[12..].to_vec());
    assert_eq!(
        second.attr("#search-prev", "href").as_deref(),
        Some("/?q=piano&page=1")
    );
    assert!(!second.has("#search-next"));
    assert_eq!(anon.get("/?q=piano&page=abc").await.status, StatusCode::OK);

    // An overlong term is cut, not an error.
    let long = anon.get(&format!("/?q={}", "j".repeat(5000))).await;
    assert_eq!(long.status, StatusCode::OK);
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

async fn plan(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> String {
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {sql}"))
        .load(conn)
        .await
        .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// With a few thousand streams the lists and search use their indexes (the
/// plans are printed for the record: `cargo test … -- --nocapture`).
#[tokio::test]
async fn the_lists_and_search_use_their_indexes_with_thousands_of_streams() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let mut conn = app.conn().await;
    // 200 channels and 5000 streams: mostly ended, some drafts, a few live.
    diesel::sql_query(
        "INSERT INTO channels (handle, title, owner_id) \
         SELECT 'bulk-' || g, 'Bulk channel ' || md5(g::text), owner_id FROM generate_series(1, 200) g, \
                (SELECT owner_id FROM channels WHERE id = $1) o",
    )
    .bind::<BigInt, _>(ch.0)
    .execute(&mut *conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO streams (channel_id, title, status, scheduled_at, started_at, ended_at, room_name) \
         SELECT c.id, 'Stream ' || md5(g::text), \
                CASE WHEN g % 100 = 0 THEN 'live' WHEN g % 10 = 1 THEN 'draft' ELSE 'ended' END, \
                CASE WHEN g % 10 = 1 THEN now() + g * interval '1 minute' END, \
                CASE WHEN g % 10 <> 1 THEN now() - g * interval '1 minute' END, \
                CASE WHEN g % 100 <> 0 AND g % 10 <> 1 THEN now() END, \
                'bulk-room-' || g \
         FROM generate_series(1, 5000) g JOIN channels c ON c.handle = 'bulk-' || (g % 200 + 1)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE streams")
        .execute(&mut *conn)
        .await
        .unwrap();
    diesel::sql_query("ANALYZE channels")
        .execute(&mut *conn)
        .await
        .unwrap();

    // The lists read their partial indexes in order and stop after a page.
    let live = plan(
        &mut conn,
        "SELECT s.id FROM streams s WHERE s.status = 'live' ORDER BY s.started_at DESC, s.id DESC LIMIT 13",
    )
    .await;
    println!("live now:\n{live}");
    assert!(live.contains("streams_live_started_at_idx"), "{live}");
    let soon = plan(
        &mut conn,
        "SELECT s.id FROM streams s WHERE s.status = 'draft' AND s.scheduled_at IS NOT NULL \
         AND s.scheduled_at > now() - make_interval(mins => 30) ORDER BY s.scheduled_at, s.id LIMIT 13",
    )
    .await;
    println!("starting soon:\n{soon}");
    assert!(soon.contains("streams_scheduled_at_idx"), "{soon}");

    // Search: at this size a sequential scan of the titles costs about the
    // same as the trigram index and the planner may take either (from some
    // tens of thousands of streams on it takes the index). What must hold is
    // that the index can serve the query as the app writes it.
    let search = "SELECT s.id FROM streams s WHERE s.title ILIKE '%3f2a%' \
         AND (s.status IN ('live', 'ended') OR s.status = 'draft')";
    println!(
        "search streams (planner's choice):\n{}",
        plan(&mut conn, search).await
    );
    let channels_search =
        "SELECT c.id FROM channels c WHERE c.title ILIKE '%3f2a%' OR c.handle ILIKE '%3f2a%'";
    diesel::sql_query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let forced = plan(
        &mut conn,
        "SELECT s.id FROM streams s WHERE s.title ILIKE '%3f2a%'",
    )
    .await;
    println!("search streams (sequential scans off):\n{forced}");
    assert!(forced.contains("streams_title_trgm_idx"), "{forced}");
    let forced = plan(&mut conn, channels_search).await;
    println!("search channels (sequential scans off):\n{forced}");
    assert!(
        forced.contains("channels_title_trgm_idx") && forced.contains("channels_handle_trgm_idx"),
        "{forced}"
    );
    diesel::sql_query("RESET enable_seqscan")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    // And the page itself answers with them.
    let page = app.anonymous().get("/").await;
    assert_eq!(card_ids(&page, "#live-now").len(), 12);
    assert!(page.has("#live-more"));
}
