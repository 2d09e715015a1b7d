//! Every migration goes down and up again cleanly.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::util::TestApp;

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
}

async fn tables(app: &TestApp) -> Vec<String> {
    let rows: Vec<Table> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' ORDER BY 1",
    )
    .load(&mut app.conn().await)
    .await
    .unwrap();
    rows.into_iter().map(|t| t.table_name).collect()
}

#[tokio::test]
async fn migrations_go_down_and_up_cleanly() {
    let app = TestApp::spawn().await;
    let before = tables(&app).await;
    for expected in [
        "users",
        "sessions",
        "channels",
        "channel_members",
        "streams",
        "access_passes",
        "access_grants",
        "orders",
        "redeem_codes",
        "chat_messages",
        "bans",
        "recordings",
        "presence",
        "livekit_events",
        "audit_log",
    ] {
        assert!(
            before.iter().any(|t| t == expected),
            "missing table {expected} in {before:?}"
        );
    }

    let reverted = stagepass::db::revert_all(app.db()).await.unwrap();
    assert!(reverted >= 1);
    assert!(
        tables(&app).await.is_empty(),
        "down migrations leave nothing behind"
    );

    let applied = stagepass::db::migrate(app.db()).await.unwrap();
    assert_eq!(applied.len(), reverted);
    assert_eq!(tables(&app).await, before);
}
