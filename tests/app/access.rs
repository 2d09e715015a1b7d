//! The access rule, case by case, without HTTP (it is a function of the
//! database at the moment of the check).

use diesel_async::AsyncConnection;
use stagepass::access::{self, Access, Denial};
use stagepass::db::streams::AccessKind;

use crate::util::TestApp;
use crate::util::builders::{self, ban, grant, revoke};

struct World {
    app: TestApp,
    owner: stagepass::db::UserId,
    channel: stagepass::db::channels::Channel,
    stream: stagepass::db::streams::Stream,
    other_stream: stagepass::db::streams::Stream,
    viewer: stagepass::db::UserId,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let (_, owner) = builders::user(&app, "owner@example.com", "Owner").await;
    let (_, viewer) = builders::user(&app, "viewer@example.com", "Viewer").await;
    let channel = builders::channel(&app, owner, "owners-channel").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    let other_stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    World {
        app,
        owner,
        channel,
        stream,
        other_stream,
        viewer,
    }
}

async fn may(w: &World, user: Option<stagepass::db::UserId>) -> Access {
    access::may(&mut *w.app.conn().await, user, &w.stream)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_owner_publishes_moderates_and_watches() {
    let w = world().await;
    let a = may(&w, Some(w.owner)).await;
    assert_eq!(a, Access::Publish);
    assert!(a.may_publish() && a.may_moderate() && a.may_watch());
}

#[tokio::test]
async fn a_moderator_moderates_and_watches_without_a_pass() {
    let w = world().await;
    builders::moderator(&w.app, w.channel.id, w.viewer).await;
    let a = may(&w, Some(w.viewer)).await;
    assert_eq!(a, Access::Moderate);
    assert!(a.may_watch() && a.may_moderate() && !a.may_publish());
}

#[tokio::test]
async fn a_moderator_of_another_channel_is_a_stranger_here() {
    let w = world().await;
    let other = builders::channel(&w.app, w.viewer, "elsewhere").await;
    let (_, mo) = builders::user(&w.app, "mo@example.com", "Mo").await;
    builders::moderator(&w.app, other.id, mo).await;
    assert_eq!(
        may(&w, Some(mo)).await,
        Access::Denied(Denial::PassRequired)
    );
    // Owning another channel gives nothing here either.
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::PassRequired)
    );
}

#[tokio::test]
async fn an_active_grant_for_the_stream_watches_until_it_ends() {
    let w = world().await;
    grant(
        &w.app,
        w.viewer,
        w.channel.id,
        Some(w.stream.id),
        "-1 minute",
        "1 hour",
    )
    .await;
    match may(&w, Some(w.viewer)).await {
        Access::Watch { until: Some(until) } => {
            let left = until - chrono::Utc::now();
            assert!(
                left > chrono::Duration::minutes(59) && left <= chrono::Duration::hours(1),
                "{left}"
            );
        }
        other => panic!("expected watch, got {other:?}"),
    }
}

#[tokio::test]
async fn an_active_grant_for_the_channel_covers_its_streams() {
    let w = world().await;
    grant(&w.app, w.viewer, w.channel.id, None, "-1 minute", "1 day").await;
    assert!(matches!(
        may(&w, Some(w.viewer)).await,
        Access::Watch { until: Some(_) }
    ));
}

#[tokio::test]
async fn a_grant_for_another_stream_does_not_cover_this_one() {
    let w = world().await;
    grant(
        &w.app,
        w.viewer,
        w.channel.id,
        Some(w.other_stream.id),
        "-1 minute",
        "1 hour",
    )
    .await;
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::PassRequired)
    );
}

#[tokio::test]
async fn a_grant_not_yet_started_gives_nothing_yet() {
    let w = world().await;
    grant(&w.app, w.viewer, w.channel.id, None, "1 minute", "1 hour").await;
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::PassRequired)
    );
}

#[tokio::test]
async fn an_expired_grant_gives_nothing() {
    let w = world().await;
    grant(
        &w.app,
        w.viewer,
        w.channel.id,
        None,
        "-2 hours",
        "-1 second",
    )
    .await;
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::PassEnded)
    );
}

#[tokio::test]
async fn a_grant_is_expired_exactly_at_expires_at() {
    let w = world().await;
    let mut conn = w.app.conn().await;
    let (viewer, channel, stream) = (w.viewer, w.channel.id, w.stream.clone());
    // Inside one transaction now() is fixed: a grant ending at now() has ended.
    let access = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            use diesel::sql_types::BigInt;
            use diesel_async::RunQueryDsl;
            diesel::sql_query(
                "INSERT INTO access_grants (user_id, channel_id, source, starts_at, expires_at) \
                 VALUES ($1, $2, 'comp', now() - interval '1 hour', now())",
            )
            .bind::<BigInt, _>(viewer.0)
            .bind::<BigInt, _>(channel.0)
            .execute(conn)
            .await?;
            access::may(conn, Some(viewer), &stream).await
        })
        .await
        .unwrap();
    assert_eq!(access, Access::Denied(Denial::PassEnded));
}

#[tokio::test]
async fn a_revoked_grant_gives_nothing() {
    let w = world().await;
    let g = grant(&w.app, w.viewer, w.channel.id, None, "-1 minute", "1 day").await;
    assert!(may(&w, Some(w.viewer)).await.may_watch());
    revoke(&w.app, g).await;
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::PassEnded)
    );
}

#[tokio::test]
async fn a_banned_user_with_an_active_grant_is_denied() {
    let w = world().await;
    grant(&w.app, w.viewer, w.channel.id, None, "-1 minute", "1 day").await;
    ban(&w.app, w.channel.id, w.viewer).await;
    assert_eq!(
        may(&w, Some(w.viewer)).await,
        Access::Denied(Denial::Banned)
    );
}

#[tokio::test]
async fn a_public_stream_is_watched_by_anyone_signed_in_but_not_by_the_banned() {
    let w = world().await;
    let public = builders::stream(&w.app, &w.channel, AccessKind::Public).await;
    let (_, someone) = builders::user(&w.app, "someone@example.com", "Someone").await;
    let a = access::may(&mut *w.app.conn().await, Some(someone), &public)
        .await
        .unwrap();
    assert_eq!(a, Access::Watch { until: None });
    ban(&w.app, w.channel.id, someone).await;
    let a = access::may(&mut *w.app.conn().await, Some(someone), &public)
        .await
        .unwrap();
    assert_eq!(a, Access::Denied(Denial::Banned));
}

#[tokio::test]
async fn anonymous_visitors_are_guests_on_public_streams_and_sign_in_for_pass_streams() {
    let w = world().await;
    let public = builders::stream(&w.app, &w.channel, AccessKind::Public).await;
    assert_eq!(may(&w, None).await, Access::Denied(Denial::SignInRequired));
    let a = access::may(&mut *w.app.conn().await, None, &public)
        .await
        .unwrap();
    assert_eq!(a, Access::Guest);
    assert!(a.may_watch() && !a.may_moderate() && a.denial().is_none());
}
