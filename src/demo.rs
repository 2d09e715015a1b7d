//! `stagepass demo`: loads demo data for `make run` and prints how to sign in.
//! A creator with a channel and a scheduled stream (a new one when every
//! earlier one has ended), a viewer with an active
//! channel pass who follows the channel (so the bell rings when it goes
//! live), and a moderator. Safe to run again: existing rows are kept,
//! passwords reset to the demo password, and the viewer's grant renewed.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::auth::password;
use crate::config::Config;
use crate::db::channels::Role;
use crate::db::schema::{
    access_grants, access_passes, channel_members, channels, follows, streams,
};
use crate::db::streams::{AccessKind, Status};
use crate::db::{ChannelId, UserId, users};

pub const DEMO_PASSWORD: &str = "stagepass-demo";

pub struct DemoAccount {
    pub role: &'static str,
    pub email: &'static str,
    pub name: &'static str,
}

pub const ACCOUNTS: [DemoAccount; 3] = [
    DemoAccount {
        role: "creator",
        email: "creator@example.com",
        name: "Casey Creator",
    },
    DemoAccount {
        role: "viewer",
        email: "viewer@example.com",
        name: "Val Viewer",
    },
    DemoAccount {
        role: "moderator",
        email: "moderator@example.com",
        name: "Mo Moderator",
    },
];

pub const CHANNEL_HANDLE: &str = "casey-live";

async fn ensure_user(
    conn: &mut AsyncPgConnection,
    account: &DemoAccount,
    hash: &str,
) -> anyhow::Result<UserId> {
    Ok(match users::find_by_email(conn, account.email).await? {
        Some(user) => {
            users::update(
                conn,
                user.id,
                users::UserChanges {
                    password_hash: Some(hash),
                    ..Default::default()
                },
            )
            .await?
            .id
        }
        None => {
            users::insert(
                conn,
                &users::NewUser {
                    email: account.email,
                    display_name: account.name,
                    password_hash: hash,
                },
            )
            .await?
            .id
        }
    })
}

pub async fn load(conn: &mut AsyncPgConnection) -> anyhow::Result<&'static [DemoAccount]> {
    let hash = password::hash(DEMO_PASSWORD.to_owned()).await?;
    let creator = ensure_user(conn, &ACCOUNTS[0], &hash).await?;
    let viewer = ensure_user(conn, &ACCOUNTS[1], &hash).await?;
    let moderator = ensure_user(conn, &ACCOUNTS[2], &hash).await?;

    let channel: ChannelId = match channels::table
        .filter(channels::handle.eq(CHANNEL_HANDLE))
        .select(channels::id)
        .first::<i64>(conn)
        .await
        .optional()?
    {
        Some(id) => ChannelId(id),
        None => ChannelId(
            diesel::insert_into(channels::table)
                .values((
                    channels::handle.eq(CHANNEL_HANDLE),
                    channels::title.eq("Casey Live"),
                    channels::description.eq("Weekly live sessions, Q&A and behind-the-scenes."),
                    channels::owner_id.eq(creator.0),
                ))
                .returning(channels::id)
                .get_result(conn)
                .await?,
        ),
    };
    diesel::insert_into(channel_members::table)
        .values(&vec![
            (
                channel_members::channel_id.eq(channel.0),
                channel_members::user_id.eq(creator.0),
                channel_members::role.eq(Role::Owner),
            ),
            (
                channel_members::channel_id.eq(channel.0),
                channel_members::user_id.eq(moderator.0),
                channel_members::role.eq(Role::Moderator),
            ),
        ])
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    diesel::insert_into(follows::table)
        .values((
            follows::user_id.eq(viewer.0),
            follows::channel_id.eq(channel.0),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;

    // A stream the creator can go live with: after an earlier `make run`
    // ended the first, the next run schedules another.
    let has_stream: i64 = streams::table
        .filter(streams::channel_id.eq(channel.0))
        .filter(streams::status.ne(Status::Ended))
        .count()
        .get_result(conn)
        .await?;
    if has_stream == 0 {
        diesel::insert_into(streams::table)
            .values((
                streams::channel_id.eq(channel.0),
                streams::title.eq("Friday Night Session"),
                streams::description
                    .eq("Live music and your questions. Bring a friend with a pass!"),
                streams::access.eq(AccessKind::Pass),
                streams::status.eq(Status::Draft),
                streams::scheduled_at.eq(Utc::now() + Duration::days(2)),
            ))
            .execute(conn)
            .await?;
    }

    let pass: i64 = match access_passes::table
        .filter(access_passes::channel_id.eq(channel.0))
        .filter(access_passes::scope.eq(crate::db::passes::Scope::Channel))
        .select(access_passes::id)
        .first::<i64>(conn)
        .await
        .optional()?
    {
        Some(id) => id,
        None => {
            diesel::insert_into(access_passes::table)
                .values((
                    access_passes::channel_id.eq(channel.0),
                    access_passes::name.eq("Channel pass — 30 days"),
                    access_passes::price_cents.eq(900_i64),
                    access_passes::currency.eq("USD"),
                    access_passes::scope.eq(crate::db::passes::Scope::Channel),
                    access_passes::duration_seconds.eq(30 * 24 * 3600),
                    access_passes::includes_replays.eq(true),
                ))
                .returning(access_passes::id)
                .get_result(conn)
                .await?
        }
    };

    // The viewer's grant: active now, evaluated in SQL like every access check.
    let active: i64 = access_grants::table
        .filter(access_grants::user_id.eq(viewer.0))
        .filter(access_grants::channel_id.eq(channel.0))
        .filter(access_grants::revoked_at.is_null())
        .filter(access_grants::starts_at.le(diesel::dsl::now))
        .filter(access_grants::expires_at.gt(diesel::dsl::now))
        .count()
        .get_result(conn)
        .await?;
    if active == 0 {
        let now = Utc::now();
        diesel::insert_into(access_grants::table)
            .values((
                access_grants::user_id.eq(viewer.0),
                access_grants::channel_id.eq(channel.0),
                access_grants::pass_id.eq(pass),
                access_grants::source.eq(crate::db::grants::Source::Comp),
                access_grants::includes_replays.eq(true),
                access_grants::starts_at.eq(now),
                access_grants::expires_at.eq(now + Duration::days(30)),
            ))
            .execute(conn)
            .await?;
    }
    Ok(&ACCOUNTS)
}

pub fn describe(accounts: &[DemoAccount], config: &Config) -> String {
    let mut out = format!(
        "Demo data loaded. Sign in at {}signin with:\n",
        config.public_url
    );
    for a in accounts {
        out.push_str(&format!(
            "  {:<10} {:<24} password: {DEMO_PASSWORD}\n",
            a.role, a.email
        ));
    }
    out.push_str(&format!("The creator's channel is /c/{CHANNEL_HANDLE}; the viewer holds an active 30-day channel pass."));
    out
}
