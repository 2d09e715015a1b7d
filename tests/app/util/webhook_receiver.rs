//! A receiver of the channels' outgoing webhooks, served by the test on a
//! free port: it keeps every request and answers the scripted statuses in
//! turn, then 200. Plus `plant`, which queues deliveries as past events would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use stagepass::db::DbPool;

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn event(&self) -> String {
        self.header("x-stagepass-event")
    }

    /// Checks `X-Stagepass-Signature` the way the README tells receivers to.
    pub fn assert_signed_with(&self, secret: &str) {
        let header = self.header("x-stagepass-signature");
        let mut t = None;
        let mut v1 = None;
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => t = Some(value.to_owned()),
                Some(("v1", value)) => v1 = Some(value.to_owned()),
                _ => {}
            }
        }
        let (t, v1) = (t.expect("t="), v1.expect("v1="));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&self.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected, "the signature matches the secret");
        let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
        assert!((0..300).contains(&age), "a fresh timestamp: {age} s old");
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (AxumStatus, &'static str) {
    r.received.lock().unwrap().push(Received { headers, body });
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    let status = AxumStatus::from_u16(status).unwrap();
    (
        status,
        if status.is_success() {
            "ok"
        } else {
            "receiver is having a bad day"
        },
    )
}

impl Receiver {
    /// Serves on a free port; answers the URL events should go to.
    pub async fn start(script: &[u16]) -> (Receiver, String) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for the first request of `event` (deliveries are asynchronous).
    pub async fn wait_for(&self, event: &str) -> Received {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.all().into_iter().find(|r| r.event() == event) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} arrived: {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Queues `n` deliveries for `endpoint` directly (as past events would
/// have), due `due_in` from now (an SQL interval).
pub async fn plant(db: &DbPool, endpoint: i64, n: usize, due_in: &str) {
    for i in 0..n {
        diesel::sql_query(
            "INSERT INTO webhook_deliveries (endpoint_id, event, subject, payload, next_attempt_at) \
             VALUES ($1, 'stream.ended', $2, '{}', now() + $3::interval)",
        )
        .bind::<BigInt, _>(endpoint)
        .bind::<Text, _>(format!("stream:planted-{}-{i}", uuid::Uuid::new_v4()))
        .bind::<Text, _>(due_in)
        .execute(&mut *db.get().await.unwrap())
        .await
        .unwrap();
    }
}
