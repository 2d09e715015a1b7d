//! The test stand-in for LiveKit's Egress and Ingress services.
//!
//! Egress (recordings) and Ingress (OBS over RTMP/WHIP) are separate LiveKit
//! services that need GStreamer, headless Chrome and Redis: they cannot be
//! built here. So the apps under test talk to this thin HTTP proxy, started
//! once per run in front of the real `livekit-server`: it answers
//! `POST /twirp/livekit.Egress/*` and `POST /twirp/livekit.Ingress/*` itself,
//! in the real Twirp wire format (protobuf, or JSON when asked), writes a real
//! MP4 into s3s-fs (SigV4-signed) and sends correctly signed webhooks to every
//! app under test. Everything else (RoomService, …) is forwarded byte for byte
//! to the real server, WebSocket upgrades too (the app's built-in recorder
//! signals through its `LIVEKIT_URL`, as it would in production). Browsers and
//! SDK clients connect to the real server directly.
//!
//! The contract tests rely on:
//! - Egress: Start{RoomComposite,}Egress answers EGRESS_STARTING, then sends
//!   `egress_started` (EGRESS_ACTIVE) ~300 ms later. StopEgress answers
//!   EGRESS_ENDING and sends `egress_updated` (EGRESS_ENDING); ~300 ms later the
//!   MP4 is uploaded to the request's S3 output and `egress_ended` is sent with
//!   EGRESS_COMPLETE and one `file_results` entry (filename = filepath, location,
//!   size, duration in ns, started_at/ended_at in ns). Deleting a room (the real
//!   RoomService/DeleteRoom, forwarded) ends its running egresses the same way.
//! - Failure: an egress whose filepath or room name contains "FAIL", or whose
//!   room was passed to [`fail_egresses_in`], ends with EGRESS_FAILED and error
//!   "stand-in: simulated encoder failure" (a failed upload fails it too).
//! - Ingress: Create/List/Update/DeleteIngress keep ingresses in memory;
//!   [`ingress_goes_live`] / [`ingress_goes_offline`] send `ingress_started` /
//!   `ingress_ended`; [`ingress`] and [`egresses_in`] show the stand-in's view.

// Handlers answer Twirp errors as ready responses.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use livekit_api::access_token::{AccessToken, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use sha2::{Digest, Sha256};

use super::services::{LIVEKIT_KEY, LIVEKIT_SECRET};

/// What the stand-in reports when asked to fail an egress.
pub const SIMULATED_FAILURE: &str = "stand-in: simulated encoder failure";
/// The RTMP server URL every RTMP ingress shows.
pub const RTMP_URL: &str = "rtmp://127.0.0.1:1935/live";

struct Egress {
    info: proto::EgressInfo,
    file: Option<(String, proto::S3Upload)>,
}

struct Shared {
    upstream: String,
    whip_url: String,
    targets: Arc<Mutex<Vec<String>>>,
    egresses: Mutex<HashMap<String, Egress>>,
    ingresses: Mutex<HashMap<String, proto::IngressInfo>>,
    failing_rooms: Mutex<HashSet<String>>,
    client: reqwest::Client,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

fn shared() -> &'static Arc<Shared> {
    SHARED
        .get()
        .expect("the stand-in runs once the services are started (services::get)")
}

/// Starts the proxy in front of `upstream` (the real livekit-server) on its
/// own thread and runtime; answers its base URL.
pub fn start(upstream: String, targets: Arc<Mutex<Vec<String>>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let state = Arc::new(Shared {
        upstream,
        whip_url: format!("{url}/w"),
        targets,
        egresses: Mutex::default(),
        ingresses: Mutex::default(),
        failing_rooms: Mutex::default(),
        client: reqwest::Client::new(),
    });
    SHARED
        .set(state.clone())
        .unwrap_or_else(|_| panic!("the stand-in is started once per run"));
    std::thread::Builder::new()
        .name("livekit-standin".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().fallback(move |req: Request<Body>| {
                    let state = state.clone();
                    async move { handle(state, req).await }
                });
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        })
        .unwrap();
    url
}

/// Sends `ingress_started` (ENDPOINT_PUBLISHING) for a known ingress, as
/// LiveKit's Ingress does when OBS starts publishing.
pub async fn ingress_goes_live(ingress_id: &str) {
    ingress_event(
        ingress_id,
        "ingress_started",
        proto::ingress_state::Status::EndpointPublishing,
    )
    .await
}

/// Sends `ingress_ended` (ENDPOINT_INACTIVE) for a known ingress (OBS stopped).
pub async fn ingress_goes_offline(ingress_id: &str) {
    ingress_event(
        ingress_id,
        "ingress_ended",
        proto::ingress_state::Status::EndpointInactive,
    )
    .await
}

/// The stand-in's view of an ingress; `None` once deleted (or never created).
pub fn ingress(ingress_id: &str) -> Option<proto::IngressInfo> {
    shared().ingresses.lock().unwrap().get(ingress_id).cloned()
}

/// The egresses the stand-in knows for a room, in no particular order.
pub fn egresses_in(room_name: &str) -> Vec<proto::EgressInfo> {
    shared()
        .egresses
        .lock()
        .unwrap()
        .values()
        .filter(|e| e.info.room_name == room_name)
        .map(|e| e.info.clone())
        .collect()
}

/// Every egress of `room_name` started from now on ends with EGRESS_FAILED.
pub fn fail_egresses_in(room_name: &str) {
    shared()
        .failing_rooms
        .lock()
        .unwrap()
        .insert(room_name.to_owned());
}

async fn ingress_event(ingress_id: &str, event: &str, status: proto::ingress_state::Status) {
    let state = shared();
    let info = {
        let mut all = state.ingresses.lock().unwrap();
        let info = all
            .get_mut(ingress_id)
            .unwrap_or_else(|| panic!("the stand-in knows no ingress {ingress_id}"));
        let now = now_ns();
        let st = info.state.get_or_insert_with(Default::default);
        st.status = status as i32;
        st.updated_at = now;
        if status == proto::ingress_state::Status::EndpointPublishing {
            st.started_at = now;
            st.ended_at = 0;
        } else {
            st.ended_at = now;
        }
        info.clone()
    };
    // Called from a test's runtime: a client of its own (reqwest pools are per runtime).
    send_webhook(&reqwest::Client::new(), &state.targets, event, |e| {
        e.ingress_info = Some(info)
    })
    .await;
}

async fn handle(state: Arc<Shared>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    let is_post = req.method() == Method::POST;
    for (prefix, egress) in [
        ("/twirp/livekit.Egress/", true),
        ("/twirp/livekit.Ingress/", false),
    ] {
        if let (true, Some(method)) = (is_post, path.strip_prefix(prefix)) {
            let method = method.to_owned();
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20)
                .await
                .unwrap_or_default();
            let rpc = Rpc::new(&parts.headers, body);
            if let Err(e) = rpc.authorize(egress) {
                return e;
            }
            return if egress {
                egress_rpc(&state, &method, rpc).await
            } else {
                ingress_rpc(&state, &method, rpc)
            };
        }
    }
    if req.headers().contains_key(header::UPGRADE) {
        return tunnel(&state, req).await;
    }
    forward(&state, req).await
}

/// A WebSocket (or any upgrade) to the real server: the request head is sent
/// as it came, the server's answer head comes back, and after a 101 the two
/// connections are joined byte for byte.
async fn tunnel(state: &Arc<Shared>, mut req: Request<Body>) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = state.upstream.trim_start_matches("http://").to_owned();
    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
        return (
            StatusCode::BAD_GATEWAY,
            "stand-in: livekit-server is not there",
        )
            .into_response();
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    for (name, value) in req.headers() {
        let value = if name == header::HOST {
            upstream.as_str()
        } else {
            value.to_str().unwrap_or_default()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if server.write_all(head.as_bytes()).await.is_err() {
        return (
            StatusCode::BAD_GATEWAY,
            "stand-in: livekit-server went away",
        )
            .into_response();
    }
    // The server's answer head (and whatever followed it in the same reads).
    let mut answer = Vec::new();
    let end = loop {
        let mut buf = [0u8; 4096];
        match server.read(&mut buf).await {
            Ok(0) | Err(_) => {
                return (StatusCode::BAD_GATEWAY, "stand-in: no answer").into_response();
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            response = response.header(name.trim(), value.trim());
        }
    }
    let rest = answer[end..].to_vec();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(client) = upgrade.await else { return };
            let mut client = hyper_util::rt::TokioIo::new(client);
            if client.write_all(&rest).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        return response.body(Body::empty()).unwrap();
    }
    response.body(Body::from(rest)).unwrap()
}

/// Byte-for-byte to the real server, and its answer back.
async fn forward(state: &Arc<Shared>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let url = format!(
        "{}{}",
        state.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut out = state
        .client
        .request(parts.method.clone(), url)
        .body(body.clone());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let answer = match out.send().await {
        Ok(answer) => answer,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("stand-in: livekit-server: {e}"),
            )
                .into_response();
        }
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONNECTION);
    let bytes = answer.bytes().await.unwrap_or_default();
    // Egress stops when its room is deleted, as the real one does.
    if status.is_success() && parts.uri.path() == "/twirp/livekit.RoomService/DeleteRoom" {
        let rpc = Rpc::new(&parts.headers, body);
        if let Ok(request) = rpc.decode::<proto::DeleteRoomRequest>() {
            let ids: Vec<String> = state
                .egresses
                .lock()
                .unwrap()
                .values()
                .filter(|e| e.info.room_name == request.room && is_running(&e.info))
                .map(|e| e.info.egress_id.clone())
                .collect();
            for id in ids {
                let _ = stop_egress(state, &id);
            }
        }
    }
    let mut response = (status, bytes).into_response();
    response.headers_mut().extend(headers);
    response
}

/// One Twirp call: its encoding (protobuf unless JSON was asked) and body.
struct Rpc {
    json: bool,
    auth: String,
    body: Bytes,
}

impl Rpc {
    fn new(headers: &HeaderMap, body: Bytes) -> Self {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Self { json, auth, body }
    }

    fn authorize(&self, egress: bool) -> Result<(), Response> {
        let Some(token) = self.auth.strip_prefix("Bearer ") else {
            return Err(twirp_error("unauthenticated", "missing bearer token"));
        };
        let claims = TokenVerifier::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
            .verify(token)
            .map_err(|e| twirp_error("unauthenticated", &format!("invalid token: {e}")))?;
        let granted = if egress {
            claims.video.room_record
        } else {
            claims.video.ingress_admin
        };
        if granted {
            Ok(())
        } else {
            Err(twirp_error("unauthenticated", "permissions denied"))
        }
    }

    fn decode<T: Message + Default + serde::de::DeserializeOwned>(&self) -> Result<T, Response> {
        if self.json {
            serde_json::from_slice(&self.body).map_err(|e| twirp_error("malformed", &e.to_string()))
        } else {
            T::decode(self.body.clone()).map_err(|e| twirp_error("malformed", &e.to_string()))
        }
    }

    fn answer<T: Message + serde::Serialize>(&self, message: &T) -> Response {
        if self.json {
            (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(message).unwrap(),
            )
                .into_response()
        } else {
            (
                [(header::CONTENT_TYPE, "application/protobuf")],
                message.encode_to_vec(),
            )
                .into_response()
        }
    }
}

fn twirp_error(code: &str, msg: &str) -> Response {
    let status = match code {
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "not_found" => StatusCode::NOT_FOUND,
        "malformed" | "invalid_argument" => StatusCode::BAD_REQUEST,
        "failed_precondition" => StatusCode::PRECONDITION_FAILED,
        "bad_route" => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "code": code, "msg": msg }).to_string(),
    )
        .into_response()
}

fn is_running(info: &proto::EgressInfo) -> bool {
    use proto::EgressStatus as S;
    info.status == S::EgressStarting as i32 || info.status == S::EgressActive as i32
}

async fn egress_rpc(state: &Arc<Shared>, method: &str, rpc: Rpc) -> Response {
    match method {
        "StartRoomCompositeEgress" => {
            let request: proto::RoomCompositeEgressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            #[allow(deprecated)]
            let file = request
                .file_outputs
                .first()
                .cloned()
                .or(match request.output {
                    Some(proto::room_composite_egress_request::Output::File(f)) => Some(f),
                    _ => None,
                });
            let file = file.and_then(|f| match f.output {
                Some(proto::encoded_file_output::Output::S3(s3)) => Some((f.filepath, s3)),
                _ => None,
            });
            rpc.answer(&start_egress(state, request.room_name, file))
        }
        "StartEgress" => {
            let request: proto::StartEgressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            let s3_of = |s: &Option<proto::StorageConfig>| match s
                .as_ref()
                .and_then(|s| s.provider.clone())
            {
                Some(proto::storage_config::Provider::S3(s3)) => Some(s3),
                _ => None,
            };
            let file = request.outputs.iter().find_map(|o| match &o.config {
                Some(proto::output::Config::File(f)) => Some((
                    f.filepath.clone(),
                    s3_of(&o.storage).or_else(|| s3_of(&request.storage))?,
                )),
                _ => None,
            });
            rpc.answer(&start_egress(state, request.room_name, file))
        }
        "StopEgress" => {
            let request: proto::StopEgressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            match stop_egress(state, &request.egress_id) {
                Ok(info) => rpc.answer(&info),
                Err(e) => e,
            }
        }
        "ListEgress" => {
            let request: proto::ListEgressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            let items = state
                .egresses
                .lock()
                .unwrap()
                .values()
                .map(|e| e.info.clone())
                .filter(|i| request.room_name.is_empty() || i.room_name == request.room_name)
                .filter(|i| request.egress_id.is_empty() || i.egress_id == request.egress_id)
                .filter(|i| !request.active || is_running(i))
                .collect();
            rpc.answer(&proto::ListEgressResponse {
                items,
                ..Default::default()
            })
        }
        other => twirp_error(
            "bad_route",
            &format!("the stand-in does not implement Egress/{other}"),
        ),
    }
}

fn start_egress(
    state: &Arc<Shared>,
    room_name: String,
    file: Option<(String, proto::S3Upload)>,
) -> proto::EgressInfo {
    let now = now_ns();
    let info = proto::EgressInfo {
        egress_id: format!("EG_{}", random_id(12)),
        room_name,
        status: proto::EgressStatus::EgressStarting as i32,
        started_at: now,
        updated_at: now,
        ..Default::default()
    };
    state.egresses.lock().unwrap().insert(
        info.egress_id.clone(),
        Egress {
            info: info.clone(),
            file,
        },
    );
    let (state2, id) = (state.clone(), info.egress_id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let active = {
            let mut all = state2.egresses.lock().unwrap();
            let Some(e) = all.get_mut(&id) else { return };
            if e.info.status != proto::EgressStatus::EgressStarting as i32 {
                return; // stopped before it was active
            }
            e.info.status = proto::EgressStatus::EgressActive as i32;
            e.info.updated_at = now_ns();
            e.info.clone()
        };
        send_webhook(&state2.client, &state2.targets, "egress_started", |e| {
            e.egress_info = Some(active)
        })
        .await;
    });
    info
}

fn stop_egress(state: &Arc<Shared>, egress_id: &str) -> Result<proto::EgressInfo, Response> {
    let (ending, file) = {
        let mut all = state.egresses.lock().unwrap();
        let Some(e) = all.get_mut(egress_id) else {
            return Err(twirp_error(
                "not_found",
                &format!("egress {egress_id} not found"),
            ));
        };
        if !is_running(&e.info) {
            let status = proto::EgressStatus::try_from(e.info.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?");
            return Err(twirp_error(
                "failed_precondition",
                &format!("egress with status {status} cannot be stopped"),
            ));
        }
        e.info.status = proto::EgressStatus::EgressEnding as i32;
        e.info.updated_at = now_ns();
        (e.info.clone(), e.file.clone())
    };
    let (state2, info) = (state.clone(), ending.clone());
    tokio::spawn(async move {
        let updated = info.clone();
        send_webhook(&state2.client, &state2.targets, "egress_updated", |e| {
            e.egress_info = Some(updated)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let failing = info.room_name.contains("FAIL")
            || file.as_ref().is_some_and(|(path, _)| path.contains("FAIL"))
            || state2
                .failing_rooms
                .lock()
                .unwrap()
                .contains(&info.room_name);
        let ended_at = now_ns();
        let outcome = if failing {
            Err(SIMULATED_FAILURE.to_owned())
        } else if let Some((path, s3)) = &file {
            upload_mp4(&state2.client, s3, path)
                .await
                .map(|location| {
                    Some(proto::FileInfo {
                        filename: path.clone(),
                        started_at: info.started_at,
                        ended_at,
                        duration: ended_at - info.started_at,
                        size: RECORDING_MP4.len() as i64,
                        location,
                    })
                })
                .map_err(|e| format!("stand-in: upload failed: {e}"))
        } else {
            Ok(None)
        };
        let ended = {
            let mut all = state2.egresses.lock().unwrap();
            let Some(e) = all.get_mut(&info.egress_id) else {
                return;
            };
            e.info.ended_at = ended_at;
            e.info.updated_at = ended_at;
            match outcome {
                Ok(file) => {
                    e.info.status = proto::EgressStatus::EgressComplete as i32;
                    e.info.file_results = file.into_iter().collect();
                }
                Err(error) => {
                    e.info.status = proto::EgressStatus::EgressFailed as i32;
                    e.info.error = error;
                }
            }
            e.info.clone()
        };
        send_webhook(&state2.client, &state2.targets, "egress_ended", |e| {
            e.egress_info = Some(ended)
        })
        .await;
    });
    Ok(ending)
}

fn ingress_rpc(state: &Arc<Shared>, method: &str, rpc: Rpc) -> Response {
    match method {
        "CreateIngress" => {
            let request: proto::CreateIngressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            let url = match proto::IngressInput::try_from(request.input_type) {
                Ok(proto::IngressInput::WhipInput) => state.whip_url.clone(),
                Ok(proto::IngressInput::UrlInput) => request.url.clone(),
                _ => RTMP_URL.to_owned(),
            };
            #[allow(deprecated)]
            let info = proto::IngressInfo {
                ingress_id: format!("IN_{}", random_id(12)),
                name: request.name,
                stream_key: random_id(16),
                url,
                input_type: request.input_type,
                bypass_transcoding: request.bypass_transcoding,
                enable_transcoding: request.enable_transcoding,
                audio: request.audio,
                video: request.video,
                room_name: request.room_name,
                participant_identity: request.participant_identity,
                participant_name: request.participant_name,
                participant_metadata: request.participant_metadata,
                reusable: request.input_type != proto::IngressInput::UrlInput as i32,
                state: Some(proto::IngressState {
                    status: proto::ingress_state::Status::EndpointInactive as i32,
                    ..Default::default()
                }),
                enabled: request.enabled,
            };
            state
                .ingresses
                .lock()
                .unwrap()
                .insert(info.ingress_id.clone(), info.clone());
            rpc.answer(&info)
        }
        "UpdateIngress" => {
            let request: proto::UpdateIngressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            let mut all = state.ingresses.lock().unwrap();
            let Some(info) = all.get_mut(&request.ingress_id) else {
                return twirp_error("not_found", "ingress does not exist");
            };
            let set = |field: &mut String, value: String| {
                if !value.is_empty() {
                    *field = value
                }
            };
            set(&mut info.name, request.name);
            set(&mut info.room_name, request.room_name);
            set(&mut info.participant_identity, request.participant_identity);
            set(&mut info.participant_name, request.participant_name);
            set(&mut info.participant_metadata, request.participant_metadata);
            if request.enable_transcoding.is_some() {
                info.enable_transcoding = request.enable_transcoding;
            }
            rpc.answer(&info.clone())
        }
        "ListIngress" => {
            let request: proto::ListIngressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            let items = state
                .ingresses
                .lock()
                .unwrap()
                .values()
                .filter(|i| request.room_name.is_empty() || i.room_name == request.room_name)
                .filter(|i| request.ingress_id.is_empty() || i.ingress_id == request.ingress_id)
                .cloned()
                .collect();
            rpc.answer(&proto::ListIngressResponse {
                items,
                ..Default::default()
            })
        }
        "DeleteIngress" => {
            let request: proto::DeleteIngressRequest = match rpc.decode() {
                Ok(r) => r,
                Err(e) => return e,
            };
            match state.ingresses.lock().unwrap().remove(&request.ingress_id) {
                Some(info) => rpc.answer(&info),
                None => twirp_error("not_found", "ingress does not exist"),
            }
        }
        other => twirp_error(
            "bad_route",
            &format!("the stand-in does not implement Ingress/{other}"),
        ),
    }
}

/// Signs and delivers a webhook to every app under test exactly as LiveKit
/// does: protojson body, `Authorization: <jwt>` whose `sha256` claim is the
/// base64 SHA-256 of the body.
async fn send_webhook(
    client: &reqwest::Client,
    targets: &Mutex<Vec<String>>,
    event: &str,
    fill: impl FnOnce(&mut proto::WebhookEvent),
) {
    let mut webhook = proto::WebhookEvent {
        event: event.to_owned(),
        id: format!("EV_{}", random_id(12)),
        created_at: chrono::Utc::now().timestamp(),
        ..Default::default()
    };
    fill(&mut webhook);
    let body = serde_json::to_string(&webhook).unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    let jwt = AccessToken::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&hash)
        .to_jwt()
        .unwrap();
    let targets = targets.lock().unwrap().clone();
    for base in targets {
        let _ = client
            .post(format!("{base}/webhooks/livekit"))
            .header(header::AUTHORIZATION, &jwt)
            .header(header::CONTENT_TYPE, "application/webhook+json")
            .body(body.clone())
            .send()
            .await;
    }
}

/// PUTs the recording with a SigV4-signed request (path style); answers its location.
async fn upload_mp4(
    client: &reqwest::Client,
    s3: &proto::S3Upload,
    key: &str,
) -> Result<String, String> {
    let endpoint = s3.endpoint.trim_end_matches('/');
    if endpoint.is_empty() {
        return Err("the stand-in uploads to an explicit S3 endpoint only".into());
    }
    let region = if s3.region.is_empty() {
        "us-east-1"
    } else {
        &s3.region
    };
    let path = format!(
        "/{}/{}",
        uri_encode(&s3.bucket),
        uri_encode(key.trim_start_matches('/'))
    );
    let url = format!("{endpoint}{path}");
    let host = url::Url::parse(&url).map_err(|e| e.to_string())?;
    let host = match host.port() {
        Some(p) => format!("{}:{p}", host.host_str().unwrap_or_default()),
        None => host.host_str().unwrap_or_default().to_owned(),
    };
    let payload_hash = hex(&Sha256::digest(RECORDING_MP4.as_slice()));
    let now = chrono::Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = now.format("%Y%m%d").to_string();
    let canonical = format!(
        "PUT\n{path}\n\ncontent-type:video/mp4\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-content-sha256;x-amz-date\n{payload_hash}"
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key_bytes = hmac(format!("AWS4{}", s3.secret).as_bytes(), day.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key_bytes = hmac(&key_bytes, part.as_bytes());
    }
    let signature = hex(&hmac(&key_bytes, to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature={signature}",
        s3.access_key
    );
    let answer = client
        .put(&url)
        .header("content-type", "video/mp4")
        .header("x-amz-content-sha256", &payload_hash)
        .header("x-amz-date", &amz_date)
        .header(header::AUTHORIZATION, authorization)
        .body(RECORDING_MP4.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        return Err(format!(
            "S3 answered {status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(url)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding of a path: everything but unreserved characters and `/`.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

fn random_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The "recording": a small, fixed, well-formed MP4 (ftyp, moov with one
/// 16x16 H.264 video track of one 40 ms sample, mdat).
pub static RECORDING_MP4: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(build_mp4);

fn mp4_box(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn full_box(kind: &[u8; 4], version_flags: u32, parts: &[&[u8]]) -> Vec<u8> {
    let vf = version_flags.to_be_bytes();
    let mut all: Vec<&[u8]> = vec![&vf];
    all.extend_from_slice(parts);
    mp4_box(kind, &all)
}

fn build_mp4() -> Vec<u8> {
    let be32 = |v: u32| v.to_be_bytes().to_vec();
    let be16 = |v: u16| v.to_be_bytes().to_vec();
    // A 16x16 baseline SPS/PPS and one IDR slice (the sample).
    let sps: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x1e, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03,
        0x00, 0xc8, 0x3c, 0x48, 0x99, 0x20,
    ];
    let pps: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
    let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
    let mut sample = be32(idr.len() as u32);
    sample.extend_from_slice(idr);

    let ftyp = mp4_box(b"ftyp", &[b"isom", &be32(0x200), b"isomiso2avc1mp41"]);
    let timescale = 1000u32;
    let duration = 40u32;
    let matrix: Vec<u8> = [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let mvhd = full_box(
        b"mvhd",
        0,
        &[
            &be32(0),
            &be32(0),
            &be32(timescale),
            &be32(duration),
            &be32(0x0001_0000),
            &be16(0x0100),
            &[0u8; 10],
            &matrix,
            &[0u8; 24],
            &be32(2),
        ],
    );
    let tkhd = full_box(
        b"tkhd",
        3,
        &[
            &be32(0),
            &be32(0),
            &be32(1),
            &be32(0),
            &be32(duration),
            &[0u8; 8],
            &be16(0),
            &be16(0),
            &be16(0),
            &be16(0),
            &matrix,
            &be32(16 << 16),
            &be32(16 << 16),
        ],
    );
    let mdhd = full_box(
        b"mdhd",
        0,
        &[
            &be32(0),
            &be32(0),
            &be32(timescale),
            &be32(duration),
            &be16(0x55c4),
            &be16(0),
        ],
    );
    let hdlr = full_box(
        b"hdlr",
        0,
        &[&be32(0), b"vide", &[0u8; 12], b"VideoHandler\0"],
    );
    let vmhd = full_box(b"vmhd", 1, &[&[0u8; 8]]);
    let url = full_box(b"url ", 1, &[]);
    let dref = full_box(b"dref", 0, &[&be32(1), &url]);
    let dinf = mp4_box(b"dinf", &[&dref]);
    let mut avcc_body = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc_body.extend(be16(sps.len() as u16));
    avcc_body.extend_from_slice(sps);
    avcc_body.push(1);
    avcc_body.extend(be16(pps.len() as u16));
    avcc_body.extend_from_slice(pps);
    let avcc = mp4_box(b"avcC", &[&avcc_body]);
    let avc1 = mp4_box(
        b"avc1",
        &[
            &[0u8; 6],
            &be16(1),
            &[0u8; 16],
            &be16(16),
            &be16(16),
            &be32(0x0048_0000),
            &be32(0x0048_0000),
            &be32(0),
            &be16(1),
            &[0u8; 32],
            &be16(0x0018),
            &be16(0xffff),
            &avcc,
        ],
    );
    let stsd = full_box(b"stsd", 0, &[&be32(1), &avc1]);
    let stts = full_box(b"stts", 0, &[&be32(1), &be32(1), &be32(duration)]);
    let stss = full_box(b"stss", 0, &[&be32(1), &be32(1)]);
    let stsc = full_box(b"stsc", 0, &[&be32(1), &be32(1), &be32(1), &be32(1)]);
    let stsz = full_box(
        b"stsz",
        0,
        &[&be32(0), &be32(1), &be32(sample.len() as u32)],
    );
    // The chunk offset depends on the moov's size: build once with 0, then patch.
    let build = |offset: u32| {
        let stco = full_box(b"stco", 0, &[&be32(1), &be32(offset)]);
        let stbl = mp4_box(b"stbl", &[&stsd, &stts, &stss, &stsc, &stsz, &stco]);
        let minf = mp4_box(b"minf", &[&vmhd, &dinf, &stbl]);
        let mdia = mp4_box(b"mdia", &[&mdhd, &hdlr, &minf]);
        let trak = mp4_box(b"trak", &[&tkhd, &mdia]);
        mp4_box(b"moov", &[&mvhd, &trak])
    };
    let moov_len = build(0).len();
    let moov = build((ftyp.len() + moov_len + 8) as u32);
    let mdat = mp4_box(b"mdat", &[&sample]);
    [ftyp, moov, mdat].concat()
}
