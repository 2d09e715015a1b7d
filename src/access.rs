//! THE access rule: who may watch, moderate or publish a stream. One place.
//!
//! `may(conn, user, stream)` answers from one SQL query evaluated at the
//! moment of the check — grant time bounds (`starts_at <= now() < expires_at`,
//! not revoked) and bans are compared with the database's `now()`, never by
//! filtering rows loaded earlier. Every token, chat post, SSE subscription,
//! recording playback and moderation action asks here first; nothing else in
//! the crate decides access. Callers load the stream first (404 before 403).
//!
//! - channel owner: publish + moderate + watch
//! - channel moderator: moderate + watch (no pass needed)
//! - anyone else signed in, not banned from the channel: watch with an active
//!   grant covering the stream (or the whole channel), or when the stream is public
//! - anonymous, on a public stream: watch as a guest (`Access::Guest`: a
//!   subscribe-only token, the chat to read but not to post); anything else:
//!   sign in first
//! - a suspended account: nothing at all, not even on its own channel
//!   (`Denial::Suspended`; the enforcer removes it from every room)
//!
//! A hidden channel (hidden by an instance admin, or its owner suspended)
//! exists only for its team: to everyone else its streams are answered as
//! missing ones (`Denial::Unavailable`, see `may_know_of`).
//!
//! Free previews (`preview`, `start_preview`): someone the rule denies a
//! live pass-only stream for want of a pass (or an account) may watch its
//! free preview once, when the owner set one; the enforcer keeps them in the
//! room until it ends (`present_but_denied`), and no longer.
//!
//! Replays (`may_replay`): the team always; a viewer only when `may` says
//! watch *and* an active grant covering the stream includes replays.
//!
//! Who may know a stream exists (`may_know_of`): an unannounced draft (a
//! draft without `scheduled_at`) is its team's business. To everyone else it
//! does not exist: every route answers it exactly as a missing stream (404),
//! so its id cannot be told apart from an unused one (so is a hidden
//! channel's stream). Handlers load streams
//! through `find_stream` / `find_stream_with_channel`, which apply this rule,
//! and never check drafts themselves. Both load the stream (and its channel)
//! with the rule's facts in one statement: the token endpoint's and the watch
//! page's one query after the session's.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::channels::{Channel, Role};
use crate::db::previews::{self, Previewer};
use crate::db::streams::{AccessKind, Status, Stream};
use crate::db::{ChannelId, StreamId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The channel's owner.
    Publish,
    /// A moderator of the channel.
    Moderate,
    /// A viewer, until `until`: the end of their grant, or of the grants that
    /// follow it without a gap (a pass bought again extends); `None` on a public stream.
    Watch {
        until: Option<DateTime<Utc>>,
    },
    /// A visitor without an account on a public stream: watches and reads
    /// the chat; signs in to post.
    Guest,
    Denied(Denial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    SignInRequired,
    PassRequired,
    /// They had a pass for this stream; it ended or was revoked.
    PassEnded,
    Banned,
    /// The account was suspended by the instance's admins.
    Suspended,
    /// The stream's channel is hidden: answered as a missing stream.
    Unavailable,
}

impl Denial {
    /// Why, in words for the viewer.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::SignInRequired => "Sign in to watch this stream.",
            Denial::PassRequired => "This stream is for access pass holders. Get a pass to watch.",
            Denial::PassEnded => "Your pass has ended. Renew it to keep watching.",
            Denial::Banned => "You have been banned from this channel.",
            Denial::Suspended => "Your account has been suspended.",
            Denial::Unavailable => "This stream is not available.",
        }
    }
}

impl Access {
    /// When this access ends: a viewer's pass end (`Watch`), None for the
    /// rest (a public stream, the team, a guest, a denial).
    pub fn until(self) -> Option<DateTime<Utc>> {
        match self {
            Access::Watch { until } => until,
            _ => None,
        }
    }

    pub fn may_watch(self) -> bool {
        !matches!(self, Access::Denied(_))
    }

    pub fn may_moderate(self) -> bool {
        matches!(self, Access::Publish | Access::Moderate)
    }

    pub fn may_publish(self) -> bool {
        matches!(self, Access::Publish)
    }

    pub fn denial(self) -> Option<Denial> {
        match self {
            Access::Denied(d) => Some(d),
            _ => None,
        }
    }
}

/// The SQL of the rule's parts, shared by the single check (`may`) and the
/// set-wide one (`present_but_denied`) so that both say the same thing.
/// `$u` / `$c` / `$s` stand for user, channel and stream expressions; `$ban`
/// for the ban kind's text, written in (not bound: the fragments sit in
/// queries with different binds, one of them a statement prepared once).
mod sql {
    /// An active grant of user $u covering stream $s of channel $c, at this moment.
    pub const ACTIVE_GRANT: &str = "g.user_id = $u AND g.channel_id = $c \
        AND (g.stream_id IS NULL OR g.stream_id = $s) \
        AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at";
    /// A grant of $u covering $s that is not revoked, whenever it runs.
    pub const COVERING: &str = "g.user_id = $u AND g.channel_id = $c \
        AND (g.stream_id IS NULL OR g.stream_id = $s) AND g.revoked_at IS NULL";
    /// A grant of $u for $s that has ended or was revoked.
    pub const ENDED_GRANT: &str = "g.user_id = $u AND g.channel_id = $c \
        AND (g.stream_id IS NULL OR g.stream_id = $s) \
        AND (g.revoked_at IS NOT NULL OR g.expires_at <= now())";
    /// An active grant of $u covering $s whose pass includes replays.
    pub const REPLAY_GRANT: &str = "g.includes_replays AND g.user_id = $u AND g.channel_id = $c \
        AND (g.stream_id IS NULL OR g.stream_id = $s) \
        AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at";
    /// An active ban of $u from channel $c.
    pub const ACTIVE_BAN: &str = "b.channel_id = $c AND b.user_id = $u AND b.kind = $ban \
        AND b.lifted_at IS NULL AND (b.until IS NULL OR now() < b.until)";
    /// $u's account is suspended (`su` is the users row).
    pub const SUSPENDED: &str = "su.id = $u AND su.suspended_at IS NOT NULL";
    /// $u is on channel $c's team (owner or moderator).
    pub const TEAM: &str = "(EXISTS (SELECT 1 FROM channel_members m WHERE m.channel_id = $c AND m.user_id = $u) \
        OR EXISTS (SELECT 1 FROM channels o WHERE o.id = $c AND o.owner_id = $u))";

    pub fn with(fragment: &str, u: &str, c: &str, s: &str) -> String {
        let ban = format!("'{}'", crate::db::bans::Kind::Ban);
        fragment
            .replace("$u", u)
            .replace("$c", c)
            .replace("$s", s)
            .replace("$ban", &ban)
    }
}

#[derive(QueryableByName)]
struct Facts {
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<Role>,
    #[diesel(sql_type = Bool)]
    owner: bool,
    #[diesel(sql_type = Bool)]
    banned: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    grant_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    had_grant: bool,
    #[diesel(sql_type = Bool)]
    suspended: bool,
    #[diesel(sql_type = Bool)]
    hidden: bool,
}

/// Everything the rule needs about (user, channel, stream), in one round trip.
async fn facts(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    stream: Option<i64>,
) -> diesel::QueryResult<Facts> {
    FactsQuery {
        channel: channel.0,
        user: user.0,
        stream,
    }
    .get_result(conn)
    .await
}

/// A stream and what the rule needs about `user` and it, in one round trip
/// (the token path: one query instead of two).
#[derive(QueryableByName)]
struct StreamFacts {
    #[diesel(embed)]
    stream: Stream,
    #[diesel(embed)]
    facts: Facts,
}

/// The facts query as statements each connection prepares once. Every
/// token, watch page, chat post and open chat stream asks the rule, and
/// planning this query costs about three times as much as running it: diesel
/// never caches the statements of `sql_query`, so these types write their SQL
/// themselves (the same text every time, hence `HAS_STATIC_QUERY_ID`; one
/// type per text, as the statement cache is keyed by the type). The binds
/// come once each, as the columns of `p`; Postgres folds them back into the
/// conditions, so the plans use the same indexes as with literal values.
struct FactsQuery {
    channel: i64,
    user: i64,
    stream: Option<i64>,
}

/// `FactsQuery` about stream `stream`, loading the stream's row with it.
struct StreamFactsQuery {
    user: i64,
    stream: i64,
}

/// `StreamFactsQuery` with the stream's channel and a page's columns `X`
/// (`NoColumns` for none).
struct StreamChannelFactsQuery<X> {
    user: i64,
    stream: i64,
    columns: std::marker::PhantomData<fn() -> X>,
}

/// A stream, its channel, the rule's facts and a page's columns, from
/// `StreamChannelFactsQuery`.
struct StreamChannelFacts<X> {
    stream: Stream,
    channel: ChannelColumns,
    facts: Facts,
    columns: X,
}

impl<X: diesel::QueryableByName<diesel::pg::Pg>> diesel::QueryableByName<diesel::pg::Pg>
    for StreamChannelFacts<X>
{
    fn build<'a>(
        row: &impl diesel::row::NamedRow<'a, diesel::pg::Pg>,
    ) -> diesel::deserialize::Result<Self> {
        Ok(StreamChannelFacts {
            stream: Stream::build(row)?,
            channel: ChannelColumns::build(row)?,
            facts: Facts::build(row)?,
            columns: X::build(row)?,
        })
    }
}

/// What a page reads with the stream, its channel and the rule's facts, in
/// the same statement (`find_stream_with`): columns written over `st` (the
/// stream's row), `ch` (its channel), `p.c` (the channel's id) and `p.u`
/// (the user asking; no account's id for nobody), each named as the
/// implementing row reads it. The rule itself stays here.
pub trait PageColumns: diesel::QueryableByName<diesel::pg::Pg> + Send + 'static {
    /// The statement: `access::statement_with(columns)`, built once and kept
    /// in a static of the implementing type. (Not of a generic impl: a
    /// `static` inside one is shared by all its instantiations, while each
    /// is cached as a statement of its own.)
    fn statement() -> &'static StreamStatement;
}

/// The text of a statement for `find_stream_with`, around its two binds.
pub struct StreamStatement([String; 3]);

/// No columns besides the stream, its channel and the facts.
pub struct NoColumns;

impl diesel::QueryableByName<diesel::pg::Pg> for NoColumns {
    fn build<'a>(
        _: &impl diesel::row::NamedRow<'a, diesel::pg::Pg>,
    ) -> diesel::deserialize::Result<Self> {
        Ok(NoColumns)
    }
}

impl PageColumns for NoColumns {
    fn statement() -> &'static StreamStatement {
        static STATEMENT: std::sync::LazyLock<StreamStatement> =
            std::sync::LazyLock::new(|| statement_with(""));
        &STATEMENT
    }
}

/// `Channel` under the names `CHANNEL_COLUMNS` gives it.
#[derive(QueryableByName)]
struct ChannelColumns {
    #[diesel(sql_type = BigInt, column_name = ch_id)]
    id: ChannelId,
    #[diesel(sql_type = Text, column_name = ch_handle)]
    handle: String,
    #[diesel(sql_type = Text, column_name = ch_title)]
    title: String,
    #[diesel(sql_type = Text, column_name = ch_description)]
    description: String,
    #[diesel(sql_type = BigInt, column_name = ch_owner_id)]
    owner_id: UserId,
    #[diesel(sql_type = Timestamptz, column_name = ch_created_at)]
    created_at: DateTime<Utc>,
}

impl From<ChannelColumns> for Channel {
    fn from(c: ChannelColumns) -> Self {
        Channel {
            id: c.id,
            handle: c.handle,
            title: c.title,
            description: c.description,
            owner_id: c.owner_id,
            created_at: c.created_at,
        }
    }
}

/// The facts' columns over `p(c, u, s)`, and the grant chain joined after
/// `p`: the two halves every facts query shares.
static FACTS_SQL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let (u, c, st) = ("p.u", "p.c", "p.s");
    // `had_grant` only matters without an active grant (pass ended, or never
    // had one), and no index serves it: CASE leaves it unevaluated otherwise.
    let columns = format!(
        "(SELECT m.role FROM channel_members m WHERE m.channel_id = p.c AND m.user_id = p.u) AS role, \
         EXISTS (SELECT 1 FROM channels o WHERE o.id = p.c AND o.owner_id = p.u) AS owner, \
         EXISTS (SELECT 1 FROM bans b WHERE {ban}) AS banned, \
         chain.until AS grant_until, \
         CASE WHEN chain.until IS NULL \
              THEN EXISTS (SELECT 1 FROM access_grants g WHERE {ended}) ELSE false END AS had_grant, \
         EXISTS (SELECT 1 FROM users su WHERE {suspended}) AS suspended, \
         EXISTS (SELECT 1 FROM channels c WHERE c.id = p.c AND NOT {visible}) AS hidden",
        suspended = sql::with(sql::SUSPENDED, u, c, st),
        ban = sql::with(sql::ACTIVE_BAN, u, c, st),
        ended = sql::with(sql::ENDED_GRANT, u, c, st),
        visible = crate::db::channels::VISIBLE,
    );
    // OFFSET 0 keeps the chain a subquery of its own, evaluated once.
    let chain = format!(
        " CROSS JOIN LATERAL (WITH RECURSIVE chain(until) AS ( \
             SELECT max(g.expires_at) FROM access_grants g WHERE {active} \
             UNION SELECT g.expires_at FROM access_grants g JOIN chain \
               ON {covering} AND g.starts_at <= chain.until AND g.expires_at > chain.until) \
           SELECT max(until) AS until FROM chain OFFSET 0) chain",
        active = sql::with(sql::ACTIVE_GRANT, u, c, st),
        covering = sql::with(sql::COVERING, u, c, st),
    );
    (columns, chain)
});

/// `FactsQuery`'s text, in the pieces around its three binds (c, u, s).
static GIVEN_SQL: std::sync::LazyLock<[String; 4]> = std::sync::LazyLock::new(|| {
    let (columns, chain) = &*FACTS_SQL;
    [
        format!("SELECT {columns} FROM (SELECT "),
        "::int8 AS c, ".to_owned(),
        "::int8 AS u, ".to_owned(),
        format!("::int8 AS s) p{chain}"),
    ]
});

/// The columns of `Stream`, named: never `st.*`, which would change the
/// result of a statement connections keep prepared when a migration adds a
/// column (Postgres refuses to run it then), and could shadow a fact's name.
/// A test holds this list to `Stream`'s own selection.
const STREAM_COLUMNS: &str = "st.id, st.channel_id, st.title, st.description, st.access, \
     st.status, st.scheduled_at, st.started_at, st.ended_at, st.room_name, st.record_on_live, \
     st.peak_viewers, st.created_at, st.preview_seconds";

/// `StreamFactsQuery`'s text around its two binds (u, the stream): the
/// stream's row, with `p` taken from it.
static STREAM_SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
    let (columns, chain) = &*FACTS_SQL;
    [
        format!(
            "SELECT {STREAM_COLUMNS}, {columns} FROM streams st \
             CROSS JOIN LATERAL (SELECT st.channel_id AS c, "
        ),
        format!("::int8 AS u, st.id AS s) p{chain} WHERE st.id = "),
        String::new(),
    ]
});

/// The columns of `Channel`, renamed `ch_*` beside the stream's (both have an
/// `id`, a `title`…). A test holds this list to `Channel`'s own selection.
const CHANNEL_COLUMNS: &str = "ch.id AS ch_id, ch.handle AS ch_handle, ch.title AS ch_title, \
     ch.description AS ch_description, ch.owner_id AS ch_owner_id, ch.created_at AS ch_created_at";

/// `StreamChannelFactsQuery`'s text: `STREAM_SQL` with the stream's channel
/// and a page's `columns` (`PageColumns`; empty for none).
pub fn statement_with(columns: &str) -> StreamStatement {
    let (facts, chain) = &*FACTS_SQL;
    let columns = if columns.is_empty() {
        String::new()
    } else {
        format!("{columns}, ")
    };
    StreamStatement([
        format!(
            "SELECT {STREAM_COLUMNS}, {CHANNEL_COLUMNS}, {columns}{facts} FROM streams st \
             JOIN channels ch ON ch.id = st.channel_id \
             CROSS JOIN LATERAL (SELECT st.channel_id AS c, "
        ),
        format!("::int8 AS u, st.id AS s) p{chain} WHERE st.id = "),
        String::new(),
    ])
}

/// A statement of fixed text, prepared once per connection: the static query
/// id is what makes diesel cache it (one type per text: the cache is keyed by
/// the type).
macro_rules! static_statement {
    ($ty:ty) => {
        impl diesel::query_builder::QueryId for $ty {
            type QueryId = $ty;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl diesel::query_builder::Query for $ty {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
}

static_statement!(FactsQuery);
static_statement!(StreamFactsQuery);

// One type per page's columns, so one statement each in the cache.
impl<X: PageColumns> diesel::query_builder::QueryId for StreamChannelFactsQuery<X> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<X> diesel::query_builder::Query for StreamChannelFactsQuery<X> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FactsQuery {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        let [head, after_c, after_u, tail] = &*GIVEN_SQL;
        out.push_sql(head);
        out.push_bind_param::<BigInt, _>(&self.channel)?;
        out.push_sql(after_c);
        out.push_bind_param::<BigInt, _>(&self.user)?;
        out.push_sql(after_u);
        out.push_bind_param::<Nullable<BigInt>, _>(&self.stream)?;
        out.push_sql(tail);
        Ok(())
    }
}

/// The text of a stream query around its two binds: the user, the stream.
fn walk_user_stream<'b>(
    [head, after_u, tail]: &'b [String; 3],
    user: &'b i64,
    stream: &'b i64,
    mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
) -> diesel::QueryResult<()> {
    out.push_sql(head);
    out.push_bind_param::<BigInt, _>(user)?;
    out.push_sql(after_u);
    out.push_bind_param::<BigInt, _>(stream)?;
    out.push_sql(tail);
    Ok(())
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for StreamFactsQuery {
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        walk_user_stream(&STREAM_SQL, &self.user, &self.stream, out)
    }
}

impl<X: PageColumns> diesel::query_builder::QueryFragment<diesel::pg::Pg>
    for StreamChannelFactsQuery<X>
{
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        walk_user_stream(&X::statement().0, &self.user, &self.stream, out)
    }
}

/// May `user` watch, moderate or publish `stream`?
pub async fn may(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    stream: &Stream,
) -> diesel::QueryResult<Access> {
    let f = facts(
        conn,
        user.unwrap_or(NOBODY),
        stream.channel_id,
        Some(stream.id.0),
    )
    .await?;
    Ok(decide_for(user, &f, stream.access))
}

/// The user id the facts are asked about for an anonymous visitor: no
/// account has it (ids start at 1), so only the channel's facts count.
const NOBODY: UserId = UserId(0);

/// A draft nobody announced (no scheduled time): only its team knows of it.
pub fn unannounced(stream: &Stream) -> bool {
    stream.status == Status::Draft && stream.scheduled_at.is_none()
}

/// May someone with `access` to `stream` know that it exists? Everyone may,
/// but an unannounced draft only exists for its team: for anyone else it is
/// answered exactly as a missing stream.
pub fn may_know_of(stream: &Stream, access: Access) -> bool {
    access != Access::Denied(Denial::Unavailable) && (!unannounced(stream) || access.may_moderate())
}

/// Stream `id` as `user` may know of it, with what the rule says about them:
/// None when there is no such stream, or when it is an unannounced draft of a
/// team they are not on (`may_know_of`) — the caller answers both alike (404).
pub async fn find_stream(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    id: StreamId,
) -> diesel::QueryResult<Option<(Stream, Access)>> {
    // The stream and the rule's facts in one round trip.
    let found: Option<StreamFacts> = StreamFactsQuery {
        user: user.unwrap_or(NOBODY).0,
        stream: id.0,
    }
    .get_result(conn)
    .await
    .optional()?;
    let Some(StreamFacts { stream, facts }) = found else {
        return Ok(None);
    };
    let access = decide_for(user, &facts, stream.access);
    Ok(may_know_of(&stream, access).then_some((stream, access)))
}

/// `find_stream`, with the stream's channel.
pub async fn find_stream_with_channel(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    id: StreamId,
) -> diesel::QueryResult<Option<(Stream, Channel, Access)>> {
    Ok(find_stream_with::<NoColumns>(conn, user, id)
        .await?
        .map(|(stream, channel, access, NoColumns)| (stream, channel, access)))
}

/// `find_stream_with_channel`, with a page's columns `X` read in the same
/// round trip (whatever the rule says: the caller shows them or not).
pub async fn find_stream_with<X: PageColumns>(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    id: StreamId,
) -> diesel::QueryResult<Option<(Stream, Channel, Access, X)>> {
    let found: Option<StreamChannelFacts<X>> = StreamChannelFactsQuery::<X> {
        user: user.unwrap_or(NOBODY).0,
        stream: id.0,
        columns: std::marker::PhantomData,
    }
    .get_result(conn)
    .await
    .optional()?;
    let Some(StreamChannelFacts {
        stream,
        channel,
        facts,
        columns,
    }) = found
    else {
        return Ok(None);
    };
    let access = decide_for(user, &facts, stream.access);
    let channel = Channel::from(channel);
    Ok(may_know_of(&stream, access).then_some((stream, channel, access, columns)))
}

/// `decide`, or for an anonymous visitor (`user` None): a guest on a public
/// stream, otherwise sign in first, unless the channel is hidden (then the
/// stream does not exist for them).
fn decide_for(user: Option<UserId>, f: &Facts, kind: AccessKind) -> Access {
    match user {
        Some(_) => decide(f, kind),
        None if f.hidden => Access::Denied(Denial::Unavailable),
        None if kind == AccessKind::Public => Access::Guest,
        None => Access::Denied(Denial::SignInRequired),
    }
}

fn decide(f: &Facts, kind: AccessKind) -> Access {
    if f.suspended {
        return Access::Denied(Denial::Suspended);
    }
    let team = f.owner || f.role.is_some();
    if f.hidden && !team {
        return Access::Denied(Denial::Unavailable);
    }
    if f.owner || f.role == Some(Role::Owner) {
        return Access::Publish;
    }
    if f.role == Some(Role::Moderator) {
        return Access::Moderate;
    }
    if f.banned {
        return Access::Denied(Denial::Banned);
    }
    if let Some(until) = f.grant_until {
        return Access::Watch { until: Some(until) };
    }
    match kind {
        AccessKind::Public => Access::Watch { until: None },
        AccessKind::Pass if f.had_grant => Access::Denied(Denial::PassEnded),
        AccessKind::Pass => Access::Denied(Denial::PassRequired),
    }
}

/// The user's role in a channel's team, for pages that manage the channel itself
/// (team, passes, new streams). `None`: not on the team.
pub async fn channel_role(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
) -> diesel::QueryResult<Option<Role>> {
    let f = facts(conn, user, channel, None).await?;
    Ok(if f.suspended {
        None
    } else if f.owner {
        Some(Role::Owner)
    } else {
        f.role
    })
}

/// Whether `user` is banned from `channel` right now (the same ban as in
/// `may`), for actions that have no stream to ask about, like buying a
/// channel-wide pass.
pub async fn banned_from(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
) -> diesel::QueryResult<bool> {
    let f = facts(conn, user, channel, None).await?;
    Ok(f.banned)
}

/// Someone in a live room who may no longer be there.
#[derive(Debug, diesel::QueryableByName)]
pub struct Intruder {
    #[diesel(sql_type = BigInt)]
    pub stream_id: i64,
    #[diesel(sql_type = Text)]
    pub room_name: String,
    #[diesel(sql_type = Text)]
    pub identity: String,
}

/// SQL: stream `s`'s channel shows to the public (`channels::VISIBLE`, about `c`).
static HIDDEN_CHANNEL_VISIBLE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "EXISTS (SELECT 1 FROM channels c WHERE c.id = s.channel_id AND {})",
        crate::db::channels::VISIBLE
    )
});

/// SQL: presence `p` in stream `s` has a free preview running.
const PREVIEWING: &str = "EXISTS (SELECT 1 FROM previews pv WHERE pv.stream_id = s.id \
     AND pv.identity = p.identity AND now() < pv.ends_at)";

/// Everyone present in a live room whom the rule denies right now — the same
/// rule as `may`, over all present viewers at once (for the enforcer): users
/// it denies (in a hidden channel: everyone but its team), and guests in a
/// stream that is not public (unless their free preview runs) or whose
/// channel is hidden.
pub async fn present_but_denied(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Vec<Intruder>> {
    let (u, c, st) = ("p.user_id", "s.channel_id", "s.id");
    diesel::sql_query(format!(
        "SELECT DISTINCT s.id AS stream_id, s.room_name, p.identity FROM presence p \
         JOIN streams s ON s.id = p.stream_id AND s.status = $1 \
         WHERE p.left_at IS NULL \
           AND ((p.user_id IS NOT NULL \
                 AND (EXISTS (SELECT 1 FROM users su WHERE {suspended}) \
                      OR (NOT {team} \
                          AND (EXISTS (SELECT 1 FROM bans b WHERE {ban}) \
                               OR NOT {visible} \
                               OR (s.access = $2 AND NOT EXISTS (SELECT 1 FROM access_grants g WHERE {active}) \
                                   AND NOT {previewing}))))) \
                OR (p.user_id IS NULL AND p.identity LIKE 'guest-%' \
                    AND ((s.access = $2 AND NOT {previewing}) OR NOT {visible})))",
        previewing = PREVIEWING,
        visible = HIDDEN_CHANNEL_VISIBLE.as_str(),
        suspended = sql::with(sql::SUSPENDED, u, c, st),
        team = sql::with(sql::TEAM, u, c, st),
        ban = sql::with(sql::ACTIVE_BAN, u, c, st),
        active = sql::with(sql::ACTIVE_GRANT, u, c, st),
    ))
    .bind::<Text, _>(Status::Live)
    .bind::<Text, _>(AccessKind::Pass)
    .load(conn)
    .await
}

/// Seconds until the next moment a present viewer's grant or free preview
/// ends (None: nobody's does), measured by the database clock.
pub async fn next_expiry_in(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<f64>> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
        seconds: Option<f64>,
    }
    let (u, c, st) = ("p.user_id", "s.channel_id", "s.id");
    // The next grant of a present viewer to end, or the next free preview.
    let next: Next = diesel::sql_query(format!(
        "SELECT extract(epoch FROM least( \
           (SELECT min(g.expires_at) FROM presence p \
              JOIN streams s ON s.id = p.stream_id AND s.status = $1 AND s.access = $2 \
              JOIN access_grants g ON {active} \
             WHERE p.left_at IS NULL AND p.user_id IS NOT NULL), \
           (SELECT min(pv.ends_at) FROM presence p \
              JOIN streams s ON s.id = p.stream_id AND s.status = $1 AND s.access = $2 \
              JOIN previews pv ON pv.stream_id = s.id AND pv.identity = p.identity AND now() < pv.ends_at \
             WHERE p.left_at IS NULL)) - now())::float8 AS seconds",
        active = sql::with(sql::ACTIVE_GRANT, u, c, st),
    ))
    .bind::<Text, _>(Status::Live)
    .bind::<Text, _>(AccessKind::Pass)
    .get_result(conn)
    .await?;
    Ok(next.seconds)
}

/// A free preview of a pass-only stream, for someone the rule denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preview {
    /// Not for them: the stream has no preview or is not live, or the rule's
    /// no is not about a pass (banned, suspended).
    None,
    /// Theirs to start: this many seconds.
    Available { seconds: i32 },
    /// Theirs runs until then.
    Running { until: DateTime<Utc> },
    /// Theirs is over (once per stream).
    Used,
}

/// The preview `stream` offers to someone `access` describes: its length,
/// or None.
pub fn preview_offered(stream: &Stream, access: Access) -> Option<i32> {
    let wants_a_pass = matches!(
        access,
        Access::Denied(Denial::PassRequired | Denial::PassEnded | Denial::SignInRequired)
    );
    (wants_a_pass && stream.access == AccessKind::Pass && stream.status == Status::Live)
        .then_some(stream.preview_seconds)
        .flatten()
}

/// Where `who`, whom the rule gave `access`, stands with `stream`'s preview.
pub async fn preview(
    conn: &mut AsyncPgConnection,
    stream: &Stream,
    access: Access,
    who: &Previewer,
) -> diesel::QueryResult<Preview> {
    let Some(seconds) = preview_offered(stream, access) else {
        return Ok(Preview::None);
    };
    Ok(match previews::find(conn, stream.id, who).await? {
        None => Preview::Available { seconds },
        Some(found) if found.running => Preview::Running {
            until: found.ends_at,
        },
        Some(_) => Preview::Used,
    })
}

/// Starts `who`'s preview of `stream` (or finds the one they had): Running
/// or Used, or None when none is offered to them. Answers whether it started now.
pub async fn start_preview(
    conn: &mut AsyncPgConnection,
    stream: &Stream,
    access: Access,
    who: &Previewer,
) -> diesel::QueryResult<(Preview, bool)> {
    let Some(seconds) = preview_offered(stream, access) else {
        return Ok((Preview::None, false));
    };
    let (found, started) = previews::start(conn, stream.id, who, seconds).await?;
    Ok((
        if found.running {
            Preview::Running {
                until: found.ends_at,
            }
        } else {
            Preview::Used
        },
        started,
    ))
}

/// May `user` play the recordings of `stream`?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayAccess {
    Allowed,
    /// Why not, in words for the viewer.
    Denied(&'static str),
}

/// The replay rule: `may` says watch (or more), and for viewers an active
/// grant covering the stream includes replays — the same SQL fragments as
/// `may`, evaluated now.
pub async fn may_replay(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    stream: &Stream,
) -> diesel::QueryResult<ReplayAccess> {
    let access = may(conn, user, stream).await?;
    replay_given(conn, user, stream, access).await
}

/// `may_replay` when `access` (what `may` said about `user` and `stream`)
/// is already known, as after `find_stream`.
pub async fn replay_given(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    stream: &Stream,
    access: Access,
) -> diesel::QueryResult<ReplayAccess> {
    if let Access::Denied(d) = access {
        return Ok(ReplayAccess::Denied(match d {
            Denial::SignInRequired => "Sign in to watch the replays.",
            Denial::PassRequired | Denial::PassEnded => {
                "Replays are for holders of a pass that includes replays."
            }
            d @ (Denial::Banned | Denial::Suspended | Denial::Unavailable) => d.reason(),
        }));
    }
    if access.may_moderate() {
        return Ok(ReplayAccess::Allowed);
    }
    let Some(user) = user else {
        return Ok(ReplayAccess::Denied(Denial::SignInRequired.reason()));
    };
    #[derive(QueryableByName)]
    struct Replays {
        #[diesel(sql_type = Bool)]
        included: bool,
    }
    let r: Replays = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM access_grants g WHERE {replay}) AS included",
        replay = sql::with(sql::REPLAY_GRANT, "$2", "$1", "$3"),
    ))
    .bind::<BigInt, _>(stream.channel_id.0)
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(stream.id.0)
    .get_result(conn)
    .await?;
    Ok(if r.included {
        ReplayAccess::Allowed
    } else {
        ReplayAccess::Denied(
            "Your pass does not include replays. Get a pass with replays to watch them.",
        )
    })
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use crate::db::channels::Channel;
    use crate::db::schema::{channels, streams};
    use crate::db::streams::Stream;

    /// The column names of a DSL selection from `table`, in order.
    fn selected(
        query: &impl diesel::query_builder::QueryFragment<diesel::pg::Pg>,
        table: &str,
    ) -> Vec<String> {
        let sql = diesel::debug_query::<diesel::pg::Pg, _>(query).to_string();
        let qualifier = format!("\"{table}\".");
        sql.trim_start_matches("SELECT ")
            .split(" FROM ")
            .next()
            .unwrap()
            .split(", ")
            .map(|c| {
                c.trim_start_matches(qualifier.as_str())
                    .trim_matches('"')
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_stream_facts_statement_selects_exactly_the_columns_of_stream() {
        let ours: Vec<String> = super::STREAM_COLUMNS
            .split(',')
            .map(|c| c.trim().trim_start_matches("st.").to_owned())
            .collect();
        assert_eq!(
            ours,
            selected(&streams::table.select(Stream::as_select()), "streams")
        );
    }

    #[test]
    fn the_stream_channel_statement_selects_exactly_the_columns_of_channel() {
        let ours: Vec<String> = super::CHANNEL_COLUMNS
            .split(',')
            .map(|c| {
                let (column, alias) = c.trim().split_once(" AS ").unwrap();
                let column = column.trim_start_matches("ch.");
                assert_eq!(alias, format!("ch_{column}"));
                column.to_owned()
            })
            .collect();
        assert_eq!(
            ours,
            selected(&channels::table.select(Channel::as_select()), "channels")
        );
    }
}
