//! Channels and their team: creating a channel, the public channel page, and
//! the owner adding and removing moderators — as creators, moderators and
//! strangers meet them.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::channels::Role;
use stagepass::db::schema::{audit_log, channel_members, channels};
use stagepass::db::streams::Status;
use stagepass::db::{ChannelId, UserId};

use crate::util::TestApp;
use crate::util::builders::{self, create_channel, stream_in_state};

async fn channel_count(app: &TestApp) -> i64 {
    channels::table
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn role_of(app: &TestApp, channel: ChannelId, user: UserId) -> Option<Role> {
    channel_members::table
        .filter(channel_members::channel_id.eq(channel))
        .filter(channel_members::user_id.eq(user))
        .select(channel_members::role)
        .first(&mut *app.conn().await)
        .await
        .optional()
        .unwrap()
}

async fn audited(app: &TestApp, action: &str) -> Vec<(Option<UserId>, Option<String>)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .order(audit_log::id)
        .select((audit_log::actor_id, audit_log::subject))
        .load::<(Option<i64>, Option<String>)>(&mut *app.conn().await)
        .await
        .unwrap()
        .into_iter()
        .map(|(a, s)| (a.map(UserId), s))
        .collect()
}

#[tokio::test]
async fn a_new_channel_appears_in_the_studio_and_at_its_address() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;

    let empty = ann.get("/studio").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.text_of("#create-channel"), "Create your channel");
    assert_eq!(
        empty.attr("#create-channel", "href").as_deref(),
        Some("/studio/channels/new")
    );

    let created = ann
        .submit(
            "/studio/channels/new",
            "#channel-form",
            &[
                ("handle", "  Ann-Live "),
                ("title", "Ann <Live>"),
                ("description", "Jazz piano,\r\nevery Friday."),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    assert_eq!(created.location().as_deref(), Some("/studio"));

    let studio = ann.follow(&created).await;
    assert!(studio.text_of("#alerts").contains("is ready"));
    assert!(!studio.has("#create-channel"), "no empty state any more");
    assert_eq!(
        studio.text_of(".studio-channel[data-handle=ann-live] .channel-name"),
        "Ann <Live>"
    );
    assert!(
        studio.has(
            ".studio-channel[data-role=owner] a[href='/studio/channels/ann-live/streams/new']"
        )
    );
    assert!(studio.has("a[href='/studio/channels/ann-live/team']"));
    assert!(studio.has("a[href='/c/ann-live']"));

    // The public page, for anyone; the title is text, never markup.
    let public = app.anonymous().get("/c/ann-live").await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.text_of("#channel-title"), "Ann <Live>");
    assert!(
        public
            .text_of(".channel-description")
            .contains("every Friday.")
    );
    assert!(!public.has("#open-studio"));
    assert_eq!(
        ann.get("/c/ANN-LIVE").await.text_of("#open-studio"),
        "Open studio"
    );

    let (id, handle, owner, description): (ChannelId, String, UserId, String) = channels::table
        .select((
            channels::id,
            channels::handle,
            channels::owner_id,
            channels::description,
        ))
        .first(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(handle, "ann-live");
    assert_eq!(owner, ann_id);
    assert_eq!(description, "Jazz piano,\nevery Friday.");
    assert_eq!(role_of(&app, id, ann_id).await, Some(Role::Owner));
    assert_eq!(
        audited(&app, "channel.created").await,
        vec![(Some(ann_id), Some("ann-live".to_owned()))]
    );
}

#[tokio::test]
async fn invalid_and_taken_handles_are_refused_next_to_the_field() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;

    let bo = app.signed_up("bo@example.com", "Bo").await;
    for (handle, message) in [
        ("ab", "Use 3 to 40 characters."),
        ("ann live", "Use only letters a–z, digits 0–9 and hyphens."),
        (
            "-ann",
            "Start and end with a letter or a digit, not a hyphen.",
        ),
        ("", "Choose a handle: it becomes your channel's address."),
        ("ANN-Live", "That handle is taken. Try another one."),
    ] {
        let page = bo
            .submit(
                "/studio/channels/new",
                "#channel-form",
                &[("handle", handle), ("title", "Bo's"), ("description", "")],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{handle}");
        assert_eq!(page.text_of("#handle-error"), message, "{handle}");
        assert_eq!(
            page.attr("#handle", "aria-invalid").as_deref(),
            Some("true")
        );
        assert_eq!(
            page.attr("#title", "value").as_deref(),
            Some("Bo's"),
            "what was typed is kept"
        );
    }

    // htmx gets the form alone, with every error at once.
    let fragment = bo
        .post_htmx(
            "/studio/channels",
            &[
                ("handle", "x"),
                ("title", "  "),
                ("description", &"d".repeat(5001)),
            ],
        )
        .await;
    assert_eq!(fragment.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!fragment.text.contains("<html"), "a fragment, not a page");
    assert!(fragment.has("form#channel-form"));
    assert_eq!(fragment.text_of("#handle-error"), "Use 3 to 40 characters.");
    assert_eq!(
        fragment.text_of("#title-error"),
        "Give your channel a title."
    );
    assert_eq!(
        fragment.text_of("#description-error"),
        "Use at most 5000 characters."
    );

    assert_eq!(channel_count(&app).await, 1);
}

#[tokio::test]
async fn an_unknown_channel_is_a_404_page() {
    let app = TestApp::spawn().await;
    let page = app.anonymous().get("/c/nobody-here").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.text_of(".alert h1"), "Page not found");
}

#[tokio::test]
async fn the_owner_adds_a_moderator_by_email() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo Moderator").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let team = "/studio/channels/ann-live/team";

    let unknown = ann
        .submit(
            team,
            "#add-moderator-form",
            &[("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        unknown.text_of("#email-error"),
        "No account uses that email. Ask them to sign up first."
    );
    assert_eq!(
        unknown.attr("#email", "value").as_deref(),
        Some("nobody@example.com")
    );

    let owner = ann
        .submit(team, "#add-moderator-form", &[("email", "ANN@example.com")])
        .await;
    assert_eq!(owner.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(owner.text_of("#email-error").contains("owner"));

    let added = ann
        .submit(
            team,
            "#add-moderator-form",
            &[("email", " Mo@Example.com ")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
    assert_eq!(added.location().as_deref(), Some(team));
    let page = ann.follow(&added).await;
    assert!(
        page.text_of("#alerts")
            .contains("Mo Moderator is now a moderator")
    );
    assert_eq!(
        page.text_of(&format!(
            "#member-{mo_id}[data-role=moderator] .member-name"
        )),
        "Mo Moderator"
    );
    assert!(page.has(&format!("#member-{ann_id}[data-role=owner]")));
    assert!(
        !page.has(&format!("#member-{ann_id} form.remove-member")),
        "the owner has no remove button"
    );
    assert_eq!(role_of(&app, channel, mo_id).await, Some(Role::Moderator));
    assert_eq!(
        audited(&app, "team.moderator_added").await,
        vec![(Some(ann_id), Some(mo_id.to_string()))]
    );

    // Adding them again says so, with htmx answering the team part alone.
    let again = ann.post_htmx(team, &[("email", "mo@example.com")]).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!again.text.contains("<html"));
    assert_eq!(
        again.text_of("#email-error"),
        "Mo Moderator is already on this channel's team."
    );

    // The moderator sees the channel in their studio, without the owner's links.
    let studio = mo.get("/studio").await;
    assert_eq!(studio.status, StatusCode::OK);
    assert!(studio.has(".studio-channel[data-handle=ann-live][data-role=moderator]"));
    assert!(!studio.has("a[href='/studio/channels/ann-live/streams/new']"));
    assert!(!studio.has("a[href='/studio/channels/ann-live/team']"));
    assert!(studio.has("a[href='/c/ann-live']"));
    assert!(!studio.has("#create-channel"));
}

#[tokio::test]
async fn a_moderator_added_with_htmx_shows_up_in_the_swapped_list() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (_, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;

    let page = ann
        .post_htmx(
            "/studio/channels/ann-live/team",
            &[("email", "mo@example.com")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("<html"));
    assert!(page.has("section#team"));
    assert!(page.has(&format!("#team-list #member-{mo_id}")));
    assert_eq!(page.text_of(".form-success"), "Mo is now a moderator.");
    assert_eq!(
        page.attr("#email", "value").as_deref(),
        Some(""),
        "the field is cleared"
    );
}

#[tokio::test]
async fn the_owner_removes_moderators_with_htmx_or_a_plain_form() {
    let app = TestApp::spawn().await;
    let (ann, ann_id) = builders::user(&app, "ann@example.com", "Ann").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    let (_, pat_id) = builders::user(&app, "pat@example.com", "Pat").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    builders::moderator(&app, channel, mo_id).await;
    builders::moderator(&app, channel, pat_id).await;
    let team = "/studio/channels/ann-live/team";

    // htmx: an empty body, so the row removes itself.
    let gone = ann.post_htmx(&format!("{team}/{mo_id}/remove"), &[]).await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(gone.text, "");
    assert_eq!(role_of(&app, channel, mo_id).await, None);
    assert!(
        !mo.get("/studio")
            .await
            .has(".studio-channel[data-handle=ann-live]")
    );

    // Without JavaScript: the row's form posts, and the page comes back without them.
    let removed = ann
        .submit(team, &format!("#member-{pat_id} form.remove-member"), &[])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let page = ann.follow(&removed).await;
    assert!(
        page.text_of("#alerts")
            .contains("Pat is no longer a moderator")
    );
    assert!(!page.has(&format!("#member-{pat_id}")));
    assert_eq!(role_of(&app, channel, pat_id).await, None);

    // The owner stays, whatever is posted.
    let owner = ann.post_htmx(&format!("{team}/{ann_id}/remove"), &[]).await;
    assert_eq!(owner.status, StatusCode::FORBIDDEN);
    assert!(owner.text_of(".alert").contains("owner can't be removed"));
    assert_eq!(role_of(&app, channel, ann_id).await, Some(Role::Owner));

    assert_eq!(
        audited(&app, "team.moderator_removed").await,
        vec![
            (Some(ann_id), Some(mo_id.to_string())),
            (Some(ann_id), Some(pat_id.to_string()))
        ]
    );
}

#[tokio::test]
async fn only_the_owner_manages_the_team() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    let (stranger, stranger_id) = builders::user(&app, "sam@example.com", "Sam").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    builders::moderator(&app, channel, mo_id).await;
    let team = "/studio/channels/ann-live/team";

    for who in [&mo, &stranger] {
        let page = who.get(team).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(
            page.text_of(".alert p"),
            "Only the owner of this channel can manage its team."
        );
        let add = who.post_htmx(team, &[("email", "sam@example.com")]).await;
        assert_eq!(add.status, StatusCode::FORBIDDEN);
        let remove = who.post_htmx(&format!("{team}/{mo_id}/remove"), &[]).await;
        assert_eq!(remove.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(role_of(&app, channel, stranger_id).await, None);
    assert_eq!(role_of(&app, channel, mo_id).await, Some(Role::Moderator));

    // Anonymous visitors are sent to sign in; an unknown channel is a 404.
    let anon = app.anonymous().get(team).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert!(anon.location().unwrap().starts_with("/signin?next="));
    assert_eq!(
        ann.get("/studio/channels/nope-nope/team").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_channel_page_lists_live_upcoming_and_past_streams() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let channel = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let live = stream_in_state(&app, channel, "On air", Status::Live, None).await;
    let later = stream_in_state(&app, channel, "Next week", Status::Draft, Some(24 * 7)).await;
    let soon = stream_in_state(&app, channel, "Tomorrow", Status::Draft, Some(24)).await;
    let ended = stream_in_state(&app, channel, "Last week", Status::Ended, None).await;
    let secret = stream_in_state(&app, channel, "Secret draft", Status::Draft, None).await;

    let page = app.anonymous().get("/c/ann-live").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts("#live-now .stream-title"), vec!["On air"]);
    assert_eq!(
        page.attr("#live-now .stream-title", "href"),
        Some(format!("/s/{live}"))
    );
    assert_eq!(
        page.texts("#upcoming .stream-title"),
        vec!["Tomorrow", "Next week"],
        "soonest first"
    );
    assert_eq!(
        page.attr(&format!("#upcoming [data-stream-id='{soon}'] a"), "href"),
        Some(format!("/s/{soon}"))
    );
    assert!(page.has(&format!(
        "#upcoming [data-stream-id='{later}'] time[datetime$='Z']"
    )));
    assert!(
        page.text_of(&format!("#upcoming [data-stream-id='{later}'] time"))
            .ends_with(" UTC")
    );
    assert_eq!(page.texts("#past .stream-title"), vec!["Last week"]);
    assert!(page.has(&format!("#past [data-stream-id='{ended}']")));
    assert!(
        !page.text.contains("Secret draft"),
        "unscheduled drafts are private"
    );
    assert!(!page.has(&format!("[data-stream-id='{secret}']")));
}

#[tokio::test]
async fn creating_channels_is_limited_per_account() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CHANNELS_MAX_PER_ACCOUNT_PER_DAY".into(), "1".into());
    })
    .await;
    let owner = app.signed_up("cleo@example.com", "Cleo").await;
    create_channel(&app, &owner, "first", "First").await;
    let page = owner
        .submit(
            "/studio/channels/new",
            "#channel-form",
            &[
                ("handle", "second"),
                ("title", "Second"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of("#channel-form .form-error")
            .starts_with("You created 1 channel in the last day, the most one account may. Wait"),
        "{}",
        page.text
    );
    let second: i64 = channels::table
        .filter(channels::handle.eq("second"))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(second, 0);
}
