//! The real services are really there: the app talks to the run's
//! livekit-server, and s3s-fs checks request signatures.

use livekit_api::services::room::CreateRoomOptions;

use crate::util::TestApp;

#[tokio::test]
async fn the_app_talks_to_the_real_livekit_server() {
    let app = TestApp::spawn().await;
    let name = format!("harness-{}", uuid::Uuid::new_v4().simple());
    let room = app
        .state
        .livekit
        .rooms
        .create_room(&name, CreateRoomOptions::default())
        .await
        .unwrap();
    assert_eq!(room.name, name);
    let rooms = app
        .state
        .livekit
        .rooms
        .list_rooms(vec![name.clone()])
        .await
        .unwrap();
    assert_eq!(rooms.len(), 1);
    app.state.livekit.rooms.delete_room(&name).await.unwrap();
    assert!(
        app.state
            .livekit
            .rooms
            .list_rooms(vec![name])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn s3s_fs_is_up_and_refuses_unsigned_requests() {
    let app = TestApp::spawn().await;
    let response = reqwest::get(format!("{}/stagepass/anything.mp4", app.services.s3_url))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
}
