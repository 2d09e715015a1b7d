//! Our tower-sessions `SessionStore` on Postgres through diesel-async (there is
//! no maintained diesel store). Records are JSONB; the signed-in user's id is
//! also kept in its own column so that all of a user's sessions can be ended
//! at once (password change). Expired rows are never loaded and are deleted by
//! `ExpiredDeletion`, which `jobs.rs` runs periodically.
//!
//! Loading a session also loads its signed-in user, in the same query, and
//! hands it over in the record under `USER_ROW_KEY` (`auth::load_user` reads
//! it there): "who is asking" is one round trip, not two. That key lives only
//! in memory: saving strips it, so the row never holds a copy of the account.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

use crate::db::{self, DbPool, UserId};

/// Session key holding the signed-in user's id.
pub const USER_ID_KEY: &str = "user_id";
/// Record key of the signed-in user's row as loaded with the session; never stored.
pub const USER_ROW_KEY: &str = "_user";

#[derive(Clone)]
pub struct PgSessionStore {
    pool: DbPool,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSessionStore")
    }
}

impl PgSessionStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    async fn conn(&self) -> session_store::Result<db::DbConn> {
        self.pool.get().await.map_err(backend)
    }
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

/// The record as a row: its data encoded, the signed-in user picked out.
fn row(record: &Record) -> session_store::Result<db::sessions::Row> {
    let t = record.expiry_date;
    Ok(db::sessions::Row {
        id: record.id.to_string(),
        data: serde_json::to_value(
            record
                .data
                .iter()
                .filter(|(k, _)| k.as_str() != USER_ROW_KEY)
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .map_err(|e| session_store::Error::Encode(e.to_string()))?,
        expires_at: DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
            .unwrap_or_else(Utc::now),
        user_id: record
            .data
            .get(USER_ID_KEY)
            .and_then(serde_json::Value::as_i64)
            .map(UserId),
    })
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        let mut row = row(record)?;
        // 128-bit random ids practically never collide; if one does, draw again.
        while !db::sessions::insert_new(&mut conn, &row)
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
            row.id = record.id.to_string();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        db::sessions::upsert(&mut conn, &row(record)?)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut conn = self.conn().await?;
        let Some((data, expires_at, user)) =
            db::sessions::load_with_user(&mut conn, &id.to_string())
                .await
                .map_err(backend)?
        else {
            return Ok(None);
        };
        let mut data: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_value(data)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        data.remove(USER_ROW_KEY);
        if let Some(user) = user {
            let user = serde_json::to_value(user)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            data.insert(USER_ROW_KEY.to_owned(), user);
        }
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires_at.timestamp())
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        db::sessions::delete(&mut conn, &id.to_string())
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for PgSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let mut conn = self.conn().await?;
        let n = db::sessions::delete_expired(&mut conn)
            .await
            .map_err(backend)?;
        if n > 0 {
            tracing::debug!(deleted = n, "expired sessions deleted");
        }
        Ok(())
    }
}
