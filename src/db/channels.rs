//! Channels and their team (channel_members).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{channel_members, channels, users};
use super::{ChannelId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = channels, check_for_backend(diesel::pg::Pg))]
pub struct Channel {
    pub id: ChannelId,
    pub handle: String,
    pub title: String,
    pub description: String,
    pub owner_id: UserId,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = channels)]
pub struct NewChannel<'a> {
    pub handle: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub owner_id: UserId,
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = channels)]
pub struct ChannelChanges<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
}

super::text_enum! {
    /// A team role. The owner also has a row with role `owner`.
    pub enum Role {
        Owner = "owner",
        Moderator = "moderator",
    }
}

/// A member of a channel's team, for the team page.
#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: UserId,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub since: DateTime<Utc>,
}

/// SQL: channel `c` is shown to the public: no admin hid it, and its owner
/// is not suspended (the access rule's `hidden` fact is its negation).
pub const VISIBLE: &str = "(c.hidden_at IS NULL AND NOT EXISTS (\
     SELECT 1 FROM users hu WHERE hu.id = c.owner_id AND hu.suspended_at IS NOT NULL))";

/// Whether channel `id` is hidden from the public (see `VISIBLE`).
pub async fn is_hidden(conn: &mut AsyncPgConnection, id: ChannelId) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Hidden {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        hidden: bool,
    }
    let row: Hidden = diesel::sql_query(format!(
        "SELECT NOT {VISIBLE} AS hidden FROM channels c WHERE c.id = $1"
    ))
    .bind::<diesel::sql_types::BigInt, _>(id.0)
    .get_result(conn)
    .await?;
    Ok(row.hidden)
}

/// Hides a channel from the public with `reason` (Some), or shows it again
/// (None). Answers whether anything changed.
pub async fn set_hidden(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
    reason: Option<&str>,
) -> QueryResult<bool> {
    let target = channels::table.find(id);
    let n = match reason {
        Some(reason) => {
            diesel::update(target.filter(channels::hidden_at.is_null()))
                .set((
                    channels::hidden_at.eq(diesel::dsl::now),
                    channels::hidden_reason.eq(reason),
                ))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(target.filter(channels::hidden_at.is_not_null()))
                .set((
                    channels::hidden_at.eq(None::<DateTime<Utc>>),
                    channels::hidden_reason.eq(None::<String>),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(n > 0)
}

/// Why an admin hid the channel (None: they did not).
pub async fn hidden_reason(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
) -> QueryResult<Option<String>> {
    let row: Option<(Option<DateTime<Utc>>, Option<String>)> = channels::table
        .find(id)
        .select((channels::hidden_at, channels::hidden_reason))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        Some((Some(_), reason)) => Some(reason.unwrap_or_default()),
        _ => None,
    })
}

/// A channel as the admins' channel list shows it.
#[derive(Debug, Clone, Queryable)]
pub struct ChannelRow {
    pub id: ChannelId,
    pub handle: String,
    pub title: String,
    pub owner_email: String,
    pub owner_suspended: bool,
    pub hidden_reason: Option<String>,
    pub hidden: bool,
    pub created_at: DateTime<Utc>,
}

/// Channels whose handle or title contains `q` (any case; all when empty),
/// newest first, at most `limit`.
pub async fn search_all(
    conn: &mut AsyncPgConnection,
    q: &str,
    limit: i64,
) -> QueryResult<Vec<ChannelRow>> {
    let mut query = channels::table.inner_join(users::table).into_boxed();
    let q = q.trim();
    if !q.is_empty() {
        let pattern = super::contains_pattern(q);
        query = query.filter(
            channels::handle
                .ilike(pattern.clone())
                .or(channels::title.ilike(pattern)),
        );
    }
    query
        .order(channels::id.desc())
        .limit(limit)
        .select(channel_row())
        .load(conn)
        .await
}

/// Channel `id` as the admins' list shows it.
pub async fn admin_row(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
) -> QueryResult<Option<ChannelRow>> {
    channels::table
        .inner_join(users::table)
        .filter(channels::id.eq(id))
        .select(channel_row())
        .first(conn)
        .await
        .optional()
}

/// The columns of a `ChannelRow`, from channels joined to their owners.
#[allow(clippy::type_complexity)]
fn channel_row() -> (
    channels::id,
    channels::handle,
    channels::title,
    users::email,
    diesel::dsl::IsNotNull<users::suspended_at>,
    channels::hidden_reason,
    diesel::dsl::IsNotNull<channels::hidden_at>,
    channels::created_at,
) {
    (
        channels::id,
        channels::handle,
        channels::title,
        users::email,
        users::suspended_at.is_not_null(),
        channels::hidden_reason,
        channels::hidden_at.is_not_null(),
        channels::created_at,
    )
}

/// The channels `owner` owns (a suspension ends their live streams).
pub async fn owned_by(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<Vec<ChannelId>> {
    channels::table
        .filter(channels::owner_id.eq(owner))
        .select(channels::id)
        .load(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: ChannelId) -> QueryResult<Option<Channel>> {
    channels::table
        .find(id)
        .select(Channel::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_handle(
    conn: &mut AsyncPgConnection,
    handle: &str,
) -> QueryResult<Option<Channel>> {
    channels::table
        .filter(channels::handle.eq(handle.trim().to_lowercase()))
        .select(Channel::as_select())
        .first(conn)
        .await
        .optional()
}

/// Creates a channel and its owner's membership in one transaction.
pub async fn create(conn: &mut AsyncPgConnection, new: NewChannel<'_>) -> QueryResult<Channel> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        let channel: Channel = diesel::insert_into(channels::table)
            .values(&new)
            .returning(Channel::as_returning())
            .get_result(conn)
            .await?;
        diesel::insert_into(channel_members::table)
            .values((
                channel_members::channel_id.eq(channel.id),
                channel_members::user_id.eq(channel.owner_id),
                channel_members::role.eq(Role::Owner),
            ))
            .execute(conn)
            .await?;
        Ok(channel)
    })
    .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
    changes: ChannelChanges<'_>,
) -> QueryResult<Channel> {
    diesel::update(channels::table.find(id))
        .set(changes)
        .returning(Channel::as_returning())
        .get_result(conn)
        .await
}

/// Channels the user belongs to, with their role, owners' first.
pub async fn for_member(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<(Channel, Role)>> {
    channels::table
        .inner_join(channel_members::table)
        .filter(channel_members::user_id.eq(user))
        .order((channel_members::role.desc(), channels::title.asc()))
        .select((Channel::as_select(), channel_members::role))
        .load(conn)
        .await
}

pub async fn role_of(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
) -> QueryResult<Option<Role>> {
    channel_members::table
        .filter(channel_members::channel_id.eq(channel))
        .filter(channel_members::user_id.eq(user))
        .select(channel_members::role)
        .first(conn)
        .await
        .optional()
}

pub async fn members(conn: &mut AsyncPgConnection, channel: ChannelId) -> QueryResult<Vec<Member>> {
    channel_members::table
        .inner_join(users::table)
        .filter(channel_members::channel_id.eq(channel))
        .order((channel_members::role.desc(), users::display_name.asc()))
        .select((
            users::id,
            users::display_name,
            users::email,
            channel_members::role,
            channel_members::created_at,
        ))
        .load(conn)
        .await
}

/// Adds a moderator; answers false when the user was already on the team.
pub async fn add_moderator(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
) -> QueryResult<bool> {
    let n = diesel::insert_into(channel_members::table)
        .values((
            channel_members::channel_id.eq(channel),
            channel_members::user_id.eq(user),
            channel_members::role.eq(Role::Moderator),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Removes a moderator (never the owner); answers whether a row went.
pub async fn remove_moderator(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
) -> QueryResult<bool> {
    let n = diesel::delete(
        channel_members::table
            .filter(channel_members::channel_id.eq(channel))
            .filter(channel_members::user_id.eq(user))
            .filter(channel_members::role.eq(Role::Moderator)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------
// Settings: avatar and links (channel_links), edited on the settings page.

/// A link on the channel page (website, socials), in the owner's order.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::channel_links, check_for_backend(diesel::pg::Pg))]
pub struct ChannelLink {
    pub position: i32,
    pub label: String,
    pub url: String,
}

pub async fn links(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<ChannelLink>> {
    use super::schema::channel_links;
    channel_links::table
        .filter(channel_links::channel_id.eq(channel))
        .order(channel_links::position.asc())
        .select(ChannelLink::as_select())
        .load(conn)
        .await
}

/// Saves the settings form: title, description and the links (replacing
/// the old ones), in one transaction.
pub async fn save_settings(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
    title: &str,
    description: &str,
    links: &[(String, String)],
) -> QueryResult<Channel> {
    use super::schema::channel_links;
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        let channel = diesel::update(channels::table.find(id))
            .set((
                channels::title.eq(title),
                channels::description.eq(description),
                channels::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Channel::as_returning())
            .get_result(conn)
            .await?;
        diesel::delete(channel_links::table.filter(channel_links::channel_id.eq(id)))
            .execute(conn)
            .await?;
        let rows: Vec<_> = links
            .iter()
            .enumerate()
            .map(|(i, (label, url))| {
                (
                    channel_links::channel_id.eq(id),
                    channel_links::position.eq(i as i32),
                    channel_links::label.eq(label),
                    channel_links::url.eq(url),
                )
            })
            .collect();
        if !rows.is_empty() {
            diesel::insert_into(channel_links::table)
                .values(rows)
                .execute(conn)
                .await?;
        }
        Ok(channel)
    })
    .await
}

/// The S3 key of the channel's avatar; `None` when it uses the default.
pub async fn avatar_key(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
) -> QueryResult<Option<String>> {
    channels::table
        .find(id)
        .select(channels::avatar_key)
        .first(conn)
        .await
}

/// Sets (or with `None` clears) the avatar; answers the key it replaced.
pub async fn replace_avatar(
    conn: &mut AsyncPgConnection,
    id: ChannelId,
    key: Option<&str>,
) -> QueryResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Old {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        avatar_key: Option<String>,
    }
    let old: Old = diesel::sql_query(
        "UPDATE channels c SET avatar_key = $2, updated_at = now() \
         FROM (SELECT id, avatar_key FROM channels WHERE id = $1 FOR UPDATE) old \
         WHERE c.id = old.id RETURNING old.avatar_key",
    )
    .bind::<diesel::sql_types::BigInt, _>(id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(key)
    .get_result(conn)
    .await?;
    Ok(old.avatar_key)
}
