//! Creator applications (`CREATORS=approval`): a signed-in user asks to
//! create channels; an instance admin approves or rejects with a reason.
//! At most one application of a user is pending (a partial unique index).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::UserId;
use super::schema::{creator_applications, users};

super::text_enum! {
    /// Where an application stands.
    pub enum Status {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = creator_applications, check_for_backend(diesel::pg::Pg))]
pub struct Application {
    pub id: i64,
    pub user_id: UserId,
    pub channel_name: String,
    pub about: String,
    pub status: Status,
    pub reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An application with its applicant, for the admins' queue.
#[derive(Debug, Clone, Queryable)]
pub struct Pending {
    pub application: Application,
    pub email: String,
    pub display_name: String,
}

/// Files an application. Err(unique violation) when one is already pending.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel_name: &str,
    about: &str,
) -> QueryResult<Application> {
    diesel::insert_into(creator_applications::table)
        .values((
            creator_applications::user_id.eq(user),
            creator_applications::channel_name.eq(channel_name),
            creator_applications::about.eq(about),
        ))
        .returning(Application::as_returning())
        .get_result(conn)
        .await
}

/// The user's newest application, if any.
pub async fn latest_of(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Option<Application>> {
    creator_applications::table
        .filter(creator_applications::user_id.eq(user))
        .order(creator_applications::id.desc())
        .select(Application::as_select())
        .first(conn)
        .await
        .optional()
}

/// Pending applications, oldest first (the queue).
pub async fn pending(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Pending>> {
    creator_applications::table
        .inner_join(users::table.on(users::id.eq(creator_applications::user_id)))
        .filter(creator_applications::status.eq(Status::Pending))
        .order(creator_applications::id)
        .limit(limit)
        .select((Application::as_select(), users::email, users::display_name))
        .load(conn)
        .await
}

/// Application `id` with its applicant, whatever its status.
pub async fn with_applicant(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Pending>> {
    creator_applications::table
        .inner_join(users::table.on(users::id.eq(creator_applications::user_id)))
        .filter(creator_applications::id.eq(id))
        .select((Application::as_select(), users::email, users::display_name))
        .first(conn)
        .await
        .optional()
}

/// Decides a pending application: approved, or rejected with `reason`.
/// Answers it, or None when it is not pending (decided already, or unknown).
pub async fn decide(
    conn: &mut AsyncPgConnection,
    id: i64,
    admin: UserId,
    status: Status,
    reason: Option<&str>,
) -> QueryResult<Option<Application>> {
    diesel::update(
        creator_applications::table
            .filter(creator_applications::id.eq(id))
            .filter(creator_applications::status.eq(Status::Pending)),
    )
    .set((
        creator_applications::status.eq(status),
        creator_applications::reason.eq(reason),
        creator_applications::decided_by.eq(admin),
        creator_applications::decided_at.eq(diesel::dsl::now),
    ))
    .returning(Application::as_returning())
    .get_result(conn)
    .await
    .optional()
}
