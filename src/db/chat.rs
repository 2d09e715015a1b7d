//! Chat messages as a per-stream event log, and the streams' chat settings.
//!
//! Every event SSE clients see takes the next `streams.chat_seq` of its stream
//! under that row's lock, in the transaction that makes it (see migration
//! 000007): a message becoming visible (`seq`) and a visible message being
//! deleted (`deleted_seq`). Per stream the numbers are dense and commit in
//! order, so "every event after N" is exact and resuming from Last-Event-ID
//! loses nothing. Held-back messages have `seq` NULL until `release_due`
//! makes them visible. Each event is announced with `NOTIFY stagepass_chat`
//! (ids only) in the same transaction; `chat::bridge` listens.
//! Nothing here decides who may post: that is `access` and `chat::limits`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::bans::Kind as BanKind;
use super::channels::Role;
use super::schema::{chat_messages, streams};
use super::{ChannelId, StreamId, UserId};

/// The LISTEN/NOTIFY channel of chat events. Payloads (ids only):
/// `m:<stream>:<seq>` a message became visible; `d:<stream>:<seq>` the
/// deletion event `seq`; `h:<stream>:<id>` a message is held back;
/// `x:<stream>:<id>` a held message was deleted before anyone saw it;
/// `u:<channel>:<user>` who may chat changed (a trigger on bans, grants, team);
/// `s:<user>` suspended or restored; `c:<channel>` everyone in the channel
/// may have lost the right to read (hidden, or its owner suspended; a stream
/// turned to pass, made unannounced or deleted).
pub const NOTIFY_CHANNEL: &str = "stagepass_chat";

/// A stream's chat settings (columns of `streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = streams, check_for_backend(diesel::pg::Pg))]
pub struct Settings {
    #[diesel(column_name = chat_enabled)]
    pub enabled: bool,
    #[diesel(column_name = chat_slow_mode_seconds)]
    pub slow_mode_seconds: i32,
    #[diesel(column_name = chat_delay_seconds)]
    pub delay_seconds: i32,
    #[diesel(column_name = chat_max_length)]
    pub max_length: i32,
    /// Followers-only chat: None is off; otherwise how long a viewer must
    /// have followed the channel to post (0: any follower). The team is exempt.
    #[diesel(column_name = chat_followers_min_seconds)]
    pub followers_min_seconds: Option<i32>,
}

/// The follow ages followers-only chat may ask for (the column's check).
pub const FOLLOW_AGES: [i32; 5] = [0, 600, 3600, 86_400, 604_800];

pub async fn settings(conn: &mut AsyncPgConnection, stream: StreamId) -> QueryResult<Settings> {
    streams::table
        .find(stream)
        .select(Settings::as_select())
        .first(conn)
        .await
}

/// What the chat panel needs before its messages: the settings, the last
/// event number, and until when the user is timed out of the stream's
/// channel (None: not timed out, or nobody signed in).
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct PanelState {
    #[diesel(embed)]
    pub settings: Settings,
    /// The stream's last event: the panel's messages go up to it.
    #[diesel(sql_type = BigInt, column_name = chat_seq)]
    pub cursor: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub timed_out_until: Option<DateTime<Utc>>,
}

/// `PanelState`'s columns over `st` (the stream's row), `p.c` (its channel)
/// and `p.u` (the user; NULL or no account's id for nobody): a page's
/// statement selects them beside its own (the watch page's, see
/// `access::PageColumns`). The timeout is the latest end of the user's
/// active timeouts, by the bans' own rule of an active row (`bans::ACTIVE`,
/// as `bans::timed_out_until`).
pub static PANEL_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "st.chat_enabled, st.chat_slow_mode_seconds, st.chat_delay_seconds, st.chat_max_length, \
         st.chat_followers_min_seconds, st.chat_seq, \
         (SELECT max(bans.until) FROM bans WHERE bans.channel_id = p.c AND bans.user_id = p.u \
            AND bans.kind = '{}' AND {}) AS timed_out_until",
        BanKind::Timeout,
        super::bans::ACTIVE
    )
});

/// `PanelState` of `stream` for `user`, in one round trip.
pub async fn panel_state(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    user: Option<UserId>,
) -> QueryResult<PanelState> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {} FROM streams st \
             CROSS JOIN LATERAL (SELECT st.channel_id AS c, $2::int8 AS u) p WHERE st.id = $1",
            *PANEL_COLUMNS
        )
    });
    super::Prepared(
        diesel::sql_query(&*SQL)
            .bind::<BigInt, _>(stream)
            .bind::<Nullable<BigInt>, _>(user),
    )
    .get_result(conn)
    .await
}

/// The settings, locking the stream row until the transaction ends: posts to
/// one stream are serialized, so limits cannot be raced and seqs stay in order.
pub async fn lock_settings(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> QueryResult<Settings> {
    streams::table
        .find(stream)
        .select(Settings::as_select())
        .for_no_key_update()
        .first(conn)
        .await
}

pub async fn update_settings(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    s: &Settings,
) -> QueryResult<()> {
    diesel::update(streams::table.find(stream))
        .set((
            streams::chat_enabled.eq(s.enabled),
            streams::chat_slow_mode_seconds.eq(s.slow_mode_seconds),
            streams::chat_delay_seconds.eq(s.delay_seconds),
            streams::chat_max_length.eq(s.max_length),
            streams::chat_followers_min_seconds.eq(s.followers_min_seconds),
            streams::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The stream's next event number (takes the stream row's lock).
pub async fn next_seq(conn: &mut AsyncPgConnection, stream: StreamId) -> QueryResult<i64> {
    diesel::update(streams::table.find(stream))
        .set(streams::chat_seq.eq(streams::chat_seq + 1))
        .returning(streams::chat_seq)
        .get_result(conn)
        .await
}

/// Queues `payload` on the chat channel; delivered when the transaction commits.
pub async fn notify(conn: &mut AsyncPgConnection, payload: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(NOTIFY_CHANNEL)
        .bind::<Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// A message with what it is shown with: its author's name and team role.
#[derive(Debug, Clone, QueryableByName)]
pub struct Message {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub stream_id: StreamId,
    /// Its event number once visible; None while held back.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub seq: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub deleted_seq: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub author_id: UserId,
    #[diesel(sql_type = Text)]
    pub author_name: String,
    /// `owner` or `moderator` when the author is on the channel's team now.
    #[diesel(sql_type = Nullable<Text>)]
    pub author_role: Option<Role>,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub visible_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    pub deleted: bool,
}

impl Message {
    /// Posted with a hold-back delay (whether or not it is visible yet).
    pub fn was_held(&self) -> bool {
        self.visible_at > self.created_at
    }
}

/// The messages' columns with their author's name and role on the team (the
/// roles' texts written in: the same SQL for every call).
fn select_messages() -> String {
    format!(
        "SELECT m.id, m.stream_id, m.seq, m.deleted_seq, m.author_id, \
       u.display_name AS author_name, \
       CASE WHEN c.owner_id = m.author_id OR cm.role = '{owner}' THEN '{owner}' \
            WHEN cm.role = '{moderator}' THEN '{moderator}' END AS author_role, \
       m.body, m.created_at, m.visible_at, m.deleted_at IS NOT NULL AS deleted \
     FROM chat_messages m \
     JOIN users u ON u.id = m.author_id \
     JOIN streams s ON s.id = m.stream_id \
     JOIN channels c ON c.id = s.channel_id \
     LEFT JOIN channel_members cm ON cm.channel_id = s.channel_id AND cm.user_id = m.author_id ",
        owner = Role::Owner,
        moderator = Role::Moderator,
    )
}

/// The newest `limit` visible messages (oldest first) up to event `cursor`
/// (read before, with `PanelState`): the panel shows them and its
/// SSE connection asks for everything after that number.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    cursor: i64,
    limit: i64,
) -> QueryResult<Vec<Message>> {
    // Read after the cursor, without a transaction: every event up to the
    // cursor has committed (a seq is taken inside the posting transaction),
    // and whatever commits later is after the cursor, which the event stream
    // resumes from. So nothing is shown twice or lost.
    let mut messages: Vec<Message> = super::Prepared(
        diesel::sql_query(&*RECENT_SQL)
            .bind::<BigInt, _>(stream.0)
            .bind::<BigInt, _>(cursor)
            .bind::<BigInt, _>(limit),
    )
    .load(conn)
    .await?;
    messages.reverse();
    Ok(messages)
}

static RECENT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{select} WHERE m.stream_id = $1 AND m.seq IS NOT NULL AND m.seq <= $2 \
         AND m.deleted_at IS NULL ORDER BY m.seq DESC LIMIT $3",
        select = select_messages(),
    )
});

/// The stream's last event number.
pub async fn cursor(conn: &mut AsyncPgConnection, stream: StreamId) -> QueryResult<i64> {
    streams::table
        .find(stream)
        .select(streams::chat_seq)
        .first(conn)
        .await
}

/// Messages still held back (oldest first), for the team's review list.
pub async fn held(conn: &mut AsyncPgConnection, stream: StreamId) -> QueryResult<Vec<Message>> {
    diesel::sql_query(format!(
        "{select} WHERE m.stream_id = $1 AND m.seq IS NULL AND m.deleted_at IS NULL \
         ORDER BY m.visible_at, m.id LIMIT 200",
        select = select_messages(),
    ))
    .bind::<BigInt, _>(stream.0)
    .load(conn)
    .await
}

/// The message whose visibility is event `seq`.
pub async fn by_seq(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    seq: i64,
) -> QueryResult<Option<Message>> {
    diesel::sql_query(format!(
        "{select} WHERE m.stream_id = $1 AND m.seq = $2",
        select = select_messages(),
    ))
    .bind::<BigInt, _>(stream.0)
    .bind::<BigInt, _>(seq)
    .get_result(conn)
    .await
    .optional()
}

/// The message whose deletion is event `seq`.
pub async fn by_deleted_seq(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    seq: i64,
) -> QueryResult<Option<Message>> {
    diesel::sql_query(format!(
        "{select} WHERE m.stream_id = $1 AND m.deleted_seq = $2",
        select = select_messages(),
    ))
    .bind::<BigInt, _>(stream.0)
    .bind::<BigInt, _>(seq)
    .get_result(conn)
    .await
    .optional()
}

/// One event of the log, as a client that has every event up to some N needs it.
#[derive(Debug, Clone)]
pub enum Event {
    /// Event `seq`: this message became visible.
    Message(Message),
    /// Event `seq`: the message shown as `message_seq` was deleted.
    Deleted { seq: i64, message_seq: i64 },
    /// Event `seq` exists but there is nothing to show for it (the message it
    /// made visible was deleted since, and the client never had it).
    Skip { seq: i64 },
}

impl Event {
    pub fn seq(&self) -> i64 {
        match self {
            Event::Message(m) => m.seq.unwrap_or_default(),
            Event::Deleted { seq, .. } | Event::Skip { seq } => *seq,
        }
    }
}

/// Most events a resuming client is sent; one that missed more gets the newest.
pub const RESUME_LIMIT: i64 = 1000;

/// Every event after `after`, in order (at most the newest `RESUME_LIMIT`).
pub async fn events_after(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    after: i64,
) -> QueryResult<Vec<Event>> {
    let rows: Vec<Message> = diesel::sql_query(format!(
        "{select} WHERE m.stream_id = $1 AND (m.seq > $2 OR m.deleted_seq > $2) \
         ORDER BY greatest(m.seq, m.deleted_seq) DESC LIMIT $3",
        select = select_messages(),
    ))
    .bind::<BigInt, _>(stream.0)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(RESUME_LIMIT)
    .load(conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for m in rows {
        let (Some(seq), deleted_seq) = (m.seq, m.deleted_seq) else {
            continue;
        };
        if seq > after {
            // New to the client: show it, unless it is gone already.
            if let Some(d) = deleted_seq {
                events.push(Event::Skip { seq: d });
                events.push(Event::Skip { seq });
            } else {
                events.push(Event::Message(m));
            }
        } else if let Some(d) = deleted_seq {
            events.push(Event::Deleted {
                seq: d,
                message_seq: seq,
            });
        }
    }
    events.sort_by_key(Event::seq);
    Ok(events)
}

#[derive(Insertable)]
#[diesel(table_name = chat_messages)]
pub struct NewMessage<'a> {
    pub stream_id: StreamId,
    pub author_id: UserId,
    pub body: &'a str,
    pub seq: Option<i64>,
}

/// Inserts a message: visible now with `seq`, or (seq None) held back for
/// `delay_seconds`. Answers its id.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewMessage<'_>,
    delay_seconds: i32,
) -> QueryResult<i64> {
    diesel::insert_into(chat_messages::table)
        .values((
            new,
            chat_messages::visible_at.eq(diesel::dsl::sql::<Timestamptz>(
                "now() + make_interval(secs => ",
            )
            .bind::<Integer, _>(delay_seconds)
            .sql(")")),
        ))
        .returning(chat_messages::id)
        .get_result(conn)
        .await
}

/// What the limits need to know about a user's recent chat, measured in SQL.
#[derive(Debug, QueryableByName)]
pub struct Recent {
    /// The end of an active chat timeout in the channel.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub timeout_until: Option<DateTime<Utc>>,
    /// Seconds until slow mode lets them post again (<= 0: it does now).
    #[diesel(sql_type = Nullable<Double>)]
    pub slow_mode_wait: Option<f64>,
    /// Their messages in this stream within the rate window.
    #[diesel(sql_type = BigInt)]
    pub in_window: i64,
    /// `body` equals one of their last few messages within the duplicate window.
    #[diesel(sql_type = Bool)]
    pub duplicate: bool,
    /// Seconds since they followed the stream's channel (None: they do not).
    #[diesel(sql_type = Nullable<Double>)]
    pub followed_seconds: Option<f64>,
}

pub struct RecentQuery<'a> {
    pub stream: StreamId,
    pub channel: ChannelId,
    pub user: UserId,
    pub body: &'a str,
    pub slow_mode_seconds: i32,
    pub rate_window_seconds: i32,
    pub duplicate_window_seconds: i32,
    pub duplicate_of_last: i64,
}

pub async fn recent_activity(
    conn: &mut AsyncPgConnection,
    q: &RecentQuery<'_>,
) -> QueryResult<Recent> {
    diesel::sql_query(
        "SELECT \
           (SELECT max(b.until) FROM bans b WHERE b.channel_id = $1 AND b.user_id = $2 \
              AND b.kind = $9 AND b.lifted_at IS NULL AND now() < b.until) AS timeout_until, \
           (SELECT extract(epoch FROM max(m.created_at) + make_interval(secs => $4) - now())::float8 \
              FROM chat_messages m WHERE m.stream_id = $3 AND m.author_id = $2) AS slow_mode_wait, \
           (SELECT count(*) FROM chat_messages m WHERE m.stream_id = $3 AND m.author_id = $2 \
              AND m.created_at > now() - make_interval(secs => $5)) AS in_window, \
           EXISTS (SELECT 1 FROM (SELECT m.body FROM chat_messages m \
                     WHERE m.stream_id = $3 AND m.author_id = $2 \
                       AND m.created_at > now() - make_interval(secs => $6) \
                     ORDER BY m.created_at DESC LIMIT $7) r \
                   WHERE lower(r.body) = lower($8)) AS duplicate, \
           (SELECT extract(epoch FROM now() - f.created_at)::float8 FROM follows f \
              WHERE f.channel_id = $1 AND f.user_id = $2) AS followed_seconds",
    )
    .bind::<BigInt, _>(q.channel.0)
    .bind::<BigInt, _>(q.user.0)
    .bind::<BigInt, _>(q.stream.0)
    .bind::<Integer, _>(q.slow_mode_seconds)
    .bind::<Integer, _>(q.rate_window_seconds)
    .bind::<Integer, _>(q.duplicate_window_seconds)
    .bind::<BigInt, _>(q.duplicate_of_last)
    .bind::<Text, _>(q.body)
    .bind::<Text, _>(BanKind::Timeout)
    .get_result(conn)
    .await
}

/// A message marked deleted by `mark_deleted`.
#[derive(Debug, Clone)]
pub struct Removed {
    pub author_id: UserId,
    pub body: String,
    /// None: it was still held back, nobody but the team saw it.
    pub seq: Option<i64>,
}

/// Marks message `id` of `stream` deleted by `by`; None when there is no such
/// message or it was deleted already. Locks the message row.
pub async fn mark_deleted(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    id: i64,
    by: UserId,
) -> QueryResult<Option<Removed>> {
    diesel::update(
        chat_messages::table
            .find(id)
            .filter(chat_messages::stream_id.eq(stream))
            .filter(chat_messages::deleted_at.is_null()),
    )
    .set((
        chat_messages::deleted_at.eq(diesel::dsl::now),
        chat_messages::deleted_by.eq(by),
    ))
    .returning((
        chat_messages::author_id,
        chat_messages::body,
        chat_messages::seq,
    ))
    .get_result::<(UserId, String, Option<i64>)>(conn)
    .await
    .optional()
    .map(|r| {
        r.map(|(author_id, body, seq)| Removed {
            author_id,
            body,
            seq,
        })
    })
}

pub async fn set_deleted_seq(conn: &mut AsyncPgConnection, id: i64, seq: i64) -> QueryResult<()> {
    diesel::update(chat_messages::table.find(id))
        .set(chat_messages::deleted_seq.eq(seq))
        .execute(conn)
        .await?;
    Ok(())
}

/// Message `id` of `stream`: whether it exists and whether it is deleted.
pub async fn state_of(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    id: i64,
) -> QueryResult<Option<bool>> {
    chat_messages::table
        .find(id)
        .filter(chat_messages::stream_id.eq(stream))
        .select(chat_messages::deleted_at.is_not_null())
        .first(conn)
        .await
        .optional()
}

/// Makes one held message whose time has come visible: its seq, and the
/// notification. Answers None when none is due. Rows another instance is
/// releasing right now are skipped, so instances never release one twice.
pub async fn release_one_due(conn: &mut AsyncPgConnection) -> QueryResult<Option<(StreamId, i64)>> {
    conn.transaction(async |conn| {
        let due: Option<(i64, StreamId)> = chat_messages::table
            .filter(chat_messages::seq.is_null())
            .filter(chat_messages::deleted_at.is_null())
            .filter(chat_messages::visible_at.le(diesel::dsl::now))
            .order((chat_messages::visible_at, chat_messages::id))
            .select((chat_messages::id, chat_messages::stream_id))
            .limit(1)
            .for_update()
            .skip_locked()
            .first(conn)
            .await
            .optional()?;
        let Some((id, stream)) = due else {
            return Ok(None);
        };
        let seq = next_seq(conn, stream).await?;
        diesel::update(chat_messages::table.find(id))
            .set(chat_messages::seq.eq(seq))
            .execute(conn)
            .await?;
        notify(conn, &format!("m:{stream}:{seq}")).await?;
        Ok(Some((stream, seq)))
    })
    .await
}

/// Seconds until the next held message is due (by the database's clock).
pub async fn next_release_in(conn: &mut AsyncPgConnection) -> QueryResult<Option<f64>> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<Double>)]
        seconds: Option<f64>,
    }
    let next: Next = diesel::sql_query(
        "SELECT extract(epoch FROM min(visible_at) - now())::float8 AS seconds \
         FROM chat_messages WHERE seq IS NULL AND deleted_at IS NULL",
    )
    .get_result(conn)
    .await?;
    Ok(next.seconds)
}
