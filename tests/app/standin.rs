//! The harness's stand-in for Egress and Ingress (util/standin.rs): room
//! calls still reach the real livekit-server through it; egress writes a real
//! MP4 into s3s-fs and sends signed webhooks; a bad token is refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::services::egress::{EgressClient, EgressOutput, RoomCompositeOptions};
use livekit_api::services::ingress::{CreateIngressOptions, IngressClient};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol as proto;

use crate::util::services::{self, LIVEKIT_KEY, LIVEKIT_SECRET, S3_BUCKET, S3_KEY, S3_SECRET};
use crate::util::standin;

/// A webhook target of our own: every event the stand-in (and LiveKit) sends,
/// verified with livekit-api's receiver exactly as the app does.
struct Hooks {
    events: Arc<Mutex<Vec<proto::WebhookEvent>>>,
    url: String,
}

impl Hooks {
    async fn listen() -> Hooks {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let app = axum::Router::new().route(
            "/webhooks/livekit",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let receiver = WebhookReceiver::new(TokenVerifier::with_api_key(
                        LIVEKIT_KEY,
                        LIVEKIT_SECRET,
                    ));
                    match receiver.receive(&body, auth) {
                        Ok(event) => {
                            sink.lock().unwrap().push(event);
                            axum::http::StatusCode::OK
                        }
                        Err(_) => axum::http::StatusCode::UNAUTHORIZED,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        services::get()
            .await
            .webhook_targets
            .lock()
            .unwrap()
            .push(url.clone());
        Hooks { events, url }
    }

    /// Waits for the verified event `kind` about egress `id`.
    async fn egress_event(&self, kind: &str, id: &str) -> proto::EgressInfo {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.events.lock().unwrap().iter().find_map(|e| {
                e.egress_info
                    .as_ref()
                    .filter(|i| e.event == kind && i.egress_id == id)
                    .cloned()
            });
            if let Some(info) = found {
                return info;
            }
            assert!(Instant::now() < deadline, "no {kind} webhook for {id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if let Some(services) = services_now() {
            services
                .webhook_targets
                .lock()
                .unwrap()
                .retain(|u| u != &self.url);
        }
    }
}

fn services_now() -> Option<&'static services::Services> {
    futures_util::FutureExt::now_or_never(services::get())
}

fn s3_output(filepath: &str, s3_url: &str) -> EgressOutput {
    EgressOutput::File(proto::EncodedFileOutput {
        file_type: proto::EncodedFileType::Mp4 as i32,
        filepath: filepath.to_owned(),
        output: Some(proto::encoded_file_output::Output::S3(proto::S3Upload {
            access_key: S3_KEY.to_owned(),
            secret: S3_SECRET.to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: s3_url.to_owned(),
            bucket: S3_BUCKET.to_owned(),
            force_path_style: true,
            ..Default::default()
        })),
        ..Default::default()
    })
}

fn unique(what: &str) -> String {
    format!("standin-{what}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn room_calls_reach_the_real_server_through_the_proxy() {
    let services = services::get().await;
    assert_ne!(services.livekit_url, services.livekit_direct_url);
    let room = unique("room");
    let through_proxy =
        RoomClient::with_api_key(&services.livekit_url, LIVEKIT_KEY, LIVEKIT_SECRET);
    through_proxy
        .create_room(&room, CreateRoomOptions::default())
        .await
        .expect("CreateRoom through the stand-in");
    let direct =
        RoomClient::with_api_key(&services.livekit_direct_url, LIVEKIT_KEY, LIVEKIT_SECRET);
    let rooms = direct.list_rooms(vec![room.clone()]).await.unwrap();
    assert_eq!(
        rooms.len(),
        1,
        "the real server has the room made through the proxy"
    );
    through_proxy.delete_room(&room).await.unwrap();
    assert!(direct.list_rooms(vec![room]).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_egress_writes_an_mp4_to_s3_and_sends_signed_webhooks() {
    let services = services::get().await;
    let hooks = Hooks::listen().await;
    let egress = EgressClient::with_api_key(&services.livekit_url, LIVEKIT_KEY, LIVEKIT_SECRET);
    let room = unique("rec");
    let key = format!("recordings/{room}/1.mp4");
    let started = egress
        .start_room_composite_egress(
            &room,
            vec![s3_output(&key, &services.s3_url)],
            RoomCompositeOptions::default(),
        )
        .await
        .expect("StartRoomCompositeEgress");
    assert!(started.egress_id.starts_with("EG_"));
    assert_eq!(started.room_name, room);
    assert_eq!(started.status, proto::EgressStatus::EgressStarting as i32);

    let active = hooks
        .egress_event("egress_started", &started.egress_id)
        .await;
    assert_eq!(active.status, proto::EgressStatus::EgressActive as i32);
    let listed = egress
        .list_egress(livekit_api::services::egress::EgressListOptions {
            filter: livekit_api::services::egress::EgressListFilter::Room(room.clone()),
            active: true,
            page_token: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    let stopping = egress.stop_egress(&started.egress_id).await.unwrap();
    assert_eq!(stopping.status, proto::EgressStatus::EgressEnding as i32);
    let ended = hooks.egress_event("egress_ended", &started.egress_id).await;
    assert_eq!(
        ended.status,
        proto::EgressStatus::EgressComplete as i32,
        "{}",
        ended.error
    );
    let file = &ended.file_results[0];
    assert_eq!(file.filename, key);
    assert!(file.duration > 0 && file.size > 0);

    // s3s-fs keeps objects as files under its root.
    let object = services::target_dir()
        .join(format!("s3-{}", std::process::id()))
        .join(S3_BUCKET)
        .join(&key);
    let bytes = std::fs::read(&object).expect("the MP4 object exists in s3s-fs");
    assert_eq!(&bytes[4..8], b"ftyp");
    assert_eq!(bytes.len() as i64, file.size);

    // A second stop is refused, as by the real service.
    assert!(egress.stop_egress(&started.egress_id).await.is_err());
}

#[tokio::test]
async fn an_egress_asked_to_fail_ends_failed_with_a_reason() {
    let services = services::get().await;
    let hooks = Hooks::listen().await;
    let egress = EgressClient::with_api_key(&services.livekit_url, LIVEKIT_KEY, LIVEKIT_SECRET);
    let room = unique("rec");
    let started = egress
        .start_room_composite_egress(
            &room,
            vec![s3_output("recordings/FAIL.mp4", &services.s3_url)],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    egress.stop_egress(&started.egress_id).await.unwrap();
    let ended = hooks.egress_event("egress_ended", &started.egress_id).await;
    assert_eq!(ended.status, proto::EgressStatus::EgressFailed as i32);
    assert_eq!(ended.error, standin::SIMULATED_FAILURE);

    // Or by room, for tests that cannot choose the file path.
    let room = unique("rec");
    standin::fail_egresses_in(&room);
    let started = egress
        .start_room_composite_egress(
            &room,
            vec![s3_output("recordings/fine.mp4", &services.s3_url)],
            RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    egress.stop_egress(&started.egress_id).await.unwrap();
    let ended = hooks.egress_event("egress_ended", &started.egress_id).await;
    assert_eq!(ended.error, standin::SIMULATED_FAILURE);
    let known = standin::egresses_in(&room);
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].status, proto::EgressStatus::EgressFailed as i32);
}

#[tokio::test]
async fn ingress_round_trip() {
    let services = services::get().await;
    let ingress = IngressClient::with_api_key(&services.livekit_url, LIVEKIT_KEY, LIVEKIT_SECRET);
    let info = ingress
        .create_ingress(
            proto::IngressInput::RtmpInput,
            CreateIngressOptions {
                name: "obs".into(),
                room_name: unique("in"),
                participant_identity: "obs".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(info.ingress_id.starts_with("IN_"));
    assert_eq!(info.url, standin::RTMP_URL);
    assert_eq!(info.stream_key.len(), 16);
    assert!(standin::ingress(&info.ingress_id).is_some());
    let deleted = ingress.delete_ingress(&info.ingress_id).await.unwrap();
    assert_eq!(deleted.ingress_id, info.ingress_id);
    assert!(standin::ingress(&info.ingress_id).is_none());
    let again = ingress.delete_ingress(&info.ingress_id).await.unwrap_err();
    assert!(again.to_string().contains("not_found"), "{again}");
}

#[tokio::test]
async fn a_token_without_the_grant_is_refused() {
    let services = services::get().await;
    let client = reqwest::Client::new();
    let url = format!("{}/twirp/livekit.Egress/ListEgress", services.livekit_url);
    let no_token = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let body: serde_json::Value = no_token.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");

    let wrong_secret =
        AccessToken::with_api_key(LIVEKIT_KEY, "not-the-secret-0123456789abcdefghijklmn")
            .with_grants(VideoGrants {
                room_record: true,
                ..Default::default()
            })
            .to_jwt()
            .unwrap();
    let no_grant = AccessToken::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    for token in [wrong_secret, no_grant] {
        let answer = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    let ok = AccessToken::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
        .with_grants(VideoGrants {
            room_record: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    let answer = client
        .post(&url)
        .bearer_auth(ok)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
