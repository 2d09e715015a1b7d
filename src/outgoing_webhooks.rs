//! Channels' outgoing webhooks: the events (`stream.started`, `stream.ended`,
//! `recording.ready`), how they are signed, and the worker that delivers them
//! with retries and backoff.
//!
//! - Events are queued by the domain code (`lifecycle.rs`, `recording.rs`) in
//!   the transaction that changes the stream or recording: one row per event
//!   per endpoint (`db::webhooks::enqueue`), so nothing is lost when a
//!   receiver, or this server, is down.
//! - The worker (one per app instance; any number can run) keeps up to
//!   `MAX_IN_FLIGHT` deliveries in flight, claiming more as each finishes:
//!   due rows, at most one in flight per endpoint across all instances (a
//!   slow receiver holds one slot, not the queue). It POSTs them (10 s
//!   timeout) and logs every attempt. 2xx is delivered; anything else is retried after
//!   `WEBHOOKS_BACKOFF_BASE_MS` × 1, 3, 12, 60, 360, 2160, 4320, until
//!   `WEBHOOKS_MAX_ATTEMPTS` attempts, then the delivery is failed.
//! - Signature (Stripe-style): `X-Stagepass-Signature: t=<unix>,v1=<hex
//!   HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>`.
//! - SSRF: unless `WEBHOOKS_ALLOW_PRIVATE_ADDRESSES`, a request goes only to
//!   public addresses — checked on the addresses actually connected to
//!   (our DNS resolver drops the others), at delivery time, not only when the
//!   URL is added. Redirects are not followed and no proxy is used.
//!
//! Payloads say what happened to the stream, never a secret or anything about
//! viewers; secrets and URLs (which may carry a receiver's token) never reach
//! a log line or an error message (errors are described without the URL, TLS
//! certificate errors in fixed words, and the host is scrubbed from the rest).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::Notify;
use url::Url;

use crate::config::OutgoingWebhooksConfig;
use crate::db::channels::Channel;
use crate::db::recordings::{Recording, Status};
use crate::db::schema::{channels, recordings, streams};
use crate::db::streams::Stream;
use crate::db::webhooks::{self, AttemptResult, Claimed, Recorded};
use crate::state::AppState;

/// What a channel's receivers hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    StreamStarted,
    StreamEnded,
    RecordingReady,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::StreamStarted => "stream.started",
            Event::StreamEnded => "stream.ended",
            Event::RecordingReady => "recording.ready",
        }
    }
}

/// The type of the "Send test event" request (not queued, not retried).
pub const TEST_EVENT: &str = "ping";
/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A claimed delivery is another instance's to retry after this long without
/// a report (longer than any attempt can take).
const LEASE: Duration = Duration::from_secs(60);
/// Deliveries one worker has in flight at most (each to another endpoint).
const MAX_IN_FLIGHT: usize = 32;
/// The worker looks at the queue at least this often, even without a NOTIFY.
const MAX_IDLE: Duration = Duration::from_secs(2);
/// How much of a receiver's answer (or of an error) the log keeps.
const MAX_ERROR_CHARS: usize = 300;
/// Retry n waits base × STEPS[n-1] (the last step repeats).
const BACKOFF_STEPS: [u32; 7] = [1, 3, 12, 60, 360, 2160, 4320];

/// How long to wait after `failed_attempts` failures before the next attempt.
pub fn backoff(base: Duration, failed_attempts: i32) -> Duration {
    let i = (failed_attempts.max(1) as usize - 1).min(BACKOFF_STEPS.len() - 1);
    base * BACKOFF_STEPS[i]
}

// ---------------------------------------------------------------------------
// Events, queued by the domain code inside its transaction.

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The stream's watch page, absolute.
fn watch_url(public_url: &Url, stream: &Stream) -> String {
    let base = public_url.as_str();
    let slash = if base.ends_with('/') { "" } else { "/" };
    format!("{base}{slash}s/{}", stream.id)
}

/// The event body without its `id` (each delivery gets its own event id).
pub fn payload(
    event: Event,
    public_url: &Url,
    channel: &Channel,
    stream: &Stream,
    recording: Option<&Recording>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "type": event.as_str(),
        "created_at": rfc3339(Utc::now()),
        "channel": { "handle": channel.handle, "title": channel.title },
        "stream": {
            "id": stream.id.0,
            "title": stream.title,
            "url": watch_url(public_url, stream),
            "started_at": stream.started_at.map(rfc3339),
            "ended_at": stream.ended_at.map(rfc3339),
        },
    });
    if let Some(r) = recording {
        body["recording"] = serde_json::json!({
            "id": r.id,
            "duration_ms": r.duration_ms,
            "size_bytes": r.size_bytes,
        });
    }
    body
}

/// Queues `stream.started` / `stream.ended` about `stream` for every endpoint
/// of its channel. Call it inside the transaction that changed the stream.
pub async fn stream_event(
    conn: &mut AsyncPgConnection,
    public_url: &Url,
    event: Event,
    stream: &Stream,
) -> QueryResult<usize> {
    let channel: Channel = channels::table
        .find(stream.channel_id)
        .select(Channel::as_select())
        .first(conn)
        .await?;
    let body = payload(event, public_url, &channel, stream, None);
    webhooks::enqueue(
        conn,
        channel.id,
        event.as_str(),
        &format!("stream:{}", stream.id),
        &body,
    )
    .await
}

/// Queues `recording.ready` for a recording that is complete (nothing for
/// one that is not). Call it inside the transaction that completed it.
pub async fn recording_ready(
    conn: &mut AsyncPgConnection,
    public_url: &Url,
    recording: i64,
) -> QueryResult<usize> {
    let found: Option<(Recording, Stream, Channel)> = recordings::table
        .inner_join(streams::table.inner_join(channels::table))
        .filter(recordings::id.eq(recording))
        .filter(recordings::status.eq(Status::Complete))
        .select((
            Recording::as_select(),
            Stream::as_select(),
            Channel::as_select(),
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((recording, stream, channel)) = found else {
        return Ok(0);
    };
    let event = Event::RecordingReady;
    let body = payload(event, public_url, &channel, &stream, Some(&recording));
    webhooks::enqueue(
        conn,
        channel.id,
        event.as_str(),
        &format!("recording:{}", recording.id),
        &body,
    )
    .await
}

// ---------------------------------------------------------------------------
// Secrets and signatures.

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new signing secret: 32 random bytes, hex, with a recognisable prefix.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", to_hex(&bytes))
}

/// The `X-Stagepass-Signature` value for `body` sent at unix time `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", to_hex(&mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------
// Where requests may go.

/// Whether a webhook may go to `ip`. IPv4: everything but loopback, private,
/// link-local, shared (CGNAT), multicast, unspecified, documentation,
/// benchmarking and reserved addresses. IPv6: an allowlist — global unicast
/// (2000::/3) only, minus documentation (2001:db8::/32, 3fff::/20), 6to4
/// (2002::/16) and the IETF protocol block (2001::/23: Teredo, ORCHID,
/// benchmarking…); an IPv4-mapped or well-known NAT64 (64:ff9b::/96)
/// address is judged by the IPv4 address inside. Anything else (::/96
/// IPv4-compatible, fec0::/10, fc00::/7, 64:ff9b:1::/48, 100::/64, …) is out.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || o0 >= 240
                || (o0 == 100 && (o1 & 0xc0) == 64)
                || (o0 == 198 && (o1 & 0xfe) == 18)
                || (o0 == 192 && o1 == 0 && o2 == 0)
                || (o0 == 192 && o1 == 88 && o2 == 99))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address inside.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                return is_public(IpAddr::V4(v4));
            }
            (s[0] & 0xe000) == 0x2000
                && !(s[0] == 0x2002
                    || (s[0] == 0x2001 && s[1] < 0x0200)
                    || (s[0] == 0x2001 && s[1] == 0x0db8)
                    || (s[0] & 0xfff0) == 0x3ff0)
        }
    }
}

const PRIVATE_REFUSED: &str = "refused: the host has no public address (private, loopback and \
     link-local addresses are not allowed; the operator can allow them with WEBHOOKS_ALLOW_PRIVATE_ADDRESSES)";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(&'static str);

/// Resolves names like the system does, then keeps only the addresses a
/// webhook may go to: the check is on the very addresses connected to, so a
/// name that changes its answer between checks (DNS rebinding) gains nothing.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let refused =
                || Box::new(Refused(PRIVATE_REFUSED)) as Box<dyn std::error::Error + Send + Sync>;
            let found: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs
                    .filter(|a| allow_private || is_public(a.ip()))
                    .collect(),
                // A name that does not resolve says the same as one that
                // resolves privately: no probing the network's DNS.
                Err(_) if !allow_private => return Err(refused()),
                Err(e) => return Err(Box::new(e)),
            };
            if found.is_empty() {
                return Err(refused());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries go out with: our resolver, no redirects, no
/// proxy, the timeouts above.
pub fn client(config: &OutgoingWebhooksConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: config.allow_private_addresses,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .user_agent(concat!("stagepass-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

const NO_PUBLIC_ADDRESS: &str = "We could not find a public address for that host. Check the \
     address: webhooks go to public addresses only, not to private networks or this server.";

/// Checks a URL an owner typed; answers it normalised, or what is wrong in
/// words for the form. Unless private addresses are allowed, the host must
/// resolve to a public address now (delivery checks again, every time).
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Enter the URL that should receive the events.".into());
    }
    if raw.chars().count() > 2000 {
        return Err("Use at most 2,000 characters.".into());
    }
    let bad =
        || "Enter an http:// or https:// URL, like https://example.com/hooks/stagepass.".to_owned();
    let mut url = Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Leave user names and passwords out of the URL: receivers check the signature made with the secret instead.".into());
    }
    url.set_fragment(None);
    if url.as_str().len() > 2000 {
        return Err("Use at most 2,000 characters.".into());
    }
    if allow_private {
        return Ok(url);
    }
    let public = match url.host() {
        Some(url::Host::Ipv4(a)) => is_public(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => is_public(IpAddr::V6(a)),
        Some(url::Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, 0));
            match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.into_iter().any(|a| is_public(a.ip())),
                _ => false,
            }
        }
        None => return Err(bad()),
    };
    // One message whether the name is unknown or private: which one it is
    // would tell an owner about the network this server is on.
    if !public {
        return Err(NO_PUBLIC_ADDRESS.into());
    }
    Ok(url)
}

// ---------------------------------------------------------------------------
// Sending.

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong (None: delivered), without the URL or any secret.
    pub error: Option<String>,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

fn clip(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.chars().count() > MAX_ERROR_CHARS {
        format!(
            "{}…",
            clean.chars().take(MAX_ERROR_CHARS).collect::<String>()
        )
    } else {
        clean
    }
}

/// A reqwest error in words, without the URL or its host: the innermost
/// cause says most, but TLS certificate errors name hosts, so they get fixed
/// words, and the host is scrubbed from anything else.
fn describe(e: reqwest::Error, host: &str) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s without an answer", TIMEOUT.as_secs());
    }
    let e = e.without_url();
    let what = if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let causes: Vec<String> =
        std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source())
            .map(ToString::to_string)
            .collect();
    clip(&format!("{what}: {}", cause_words(&causes, host)))
}

/// What to say about an error whose causes (outermost first) read `causes`.
fn cause_words(causes: &[String], host: &str) -> String {
    if let Some(refused) = causes.iter().find(|c| c.as_str() == PRIVATE_REFUSED) {
        return refused.clone();
    }
    if causes
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("certificate"))
    {
        return "the receiver's TLS certificate was not accepted (expired, self-signed, or \
                not issued for this host name)"
            .to_owned();
    }
    let innermost = causes.last().map(String::as_str).unwrap_or_default();
    if host.is_empty() {
        return innermost.to_owned();
    }
    let mut said = innermost.to_owned();
    while let Some(at) = said.to_ascii_lowercase().find(&host.to_ascii_lowercase()) {
        said.replace_range(at..at + host.len(), "[host]");
    }
    said
}

/// Reads at most a little of a receiver's answer, for the log.
async fn snippet(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 4 * MAX_ERROR_CHARS {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    clip(&String::from_utf8_lossy(&bytes))
}

/// POSTs one signed event to `url`. Never fails: what happened is in `Sent`.
pub async fn send(
    client: &reqwest::Client,
    allow_private: bool,
    url: &str,
    secret: &str,
    event: &str,
    event_id: &str,
    body: String,
) -> Sent {
    let started_at = Utc::now();
    let clock = Instant::now();
    let done = |status: Option<u16>, error: Option<String>| Sent {
        started_at,
        duration_ms: clock.elapsed().as_millis().min(i32::MAX as u128) as i32,
        status,
        error,
    };
    let Ok(url) = Url::parse(url) else {
        return done(None, Some("the endpoint's URL is not valid".into()));
    };
    // Names go through the guarded resolver; addresses typed as such don't
    // resolve, so they are checked here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        _ => None,
    };
    if let Some(ip) = literal
        && !allow_private
        && !is_public(ip)
    {
        return done(None, Some(PRIVATE_REFUSED.into()));
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let t = started_at.timestamp();
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Stagepass-Event", event)
        .header("X-Stagepass-Delivery", event_id)
        .header(
            "X-Stagepass-Signature",
            signature(secret, t, body.as_bytes()),
        )
        .body(body);
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                done(Some(status.as_u16()), None)
            } else {
                let said = snippet(response).await;
                let mut error = format!("the receiver answered {status}");
                if !said.is_empty() {
                    error = clip(&format!("{error}: {said}"));
                }
                done(Some(status.as_u16()), Some(error))
            }
        }
        Err(e) => done(None, Some(describe(e, &host))),
    }
}

/// "Send test event": one signed `ping` to the endpoint, now, not queued and
/// not retried; the answer is shown to the owner.
pub async fn send_test(state: &AppState, endpoint: &webhooks::Endpoint, channel: &Channel) -> Sent {
    let event_id = format!("test-{}", uuid::Uuid::new_v4());
    let body = serde_json::json!({
        "id": event_id,
        "type": TEST_EVENT,
        "created_at": rfc3339(Utc::now()),
        "channel": { "handle": channel.handle, "title": channel.title },
    })
    .to_string();
    let config = &state.config.webhooks;
    match client(config) {
        Ok(client) => {
            send(
                &client,
                config.allow_private_addresses,
                &endpoint.url,
                &endpoint.secret,
                TEST_EVENT,
                &event_id,
                body,
            )
            .await
        }
        Err(e) => Sent {
            started_at: Utc::now(),
            duration_ms: 0,
            status: None,
            error: Some(clip(&format!(
                "could not prepare the request: {}",
                e.without_url()
            ))),
        },
    }
}

// ---------------------------------------------------------------------------
// The delivery worker.

/// Runs forever: LISTENs for queued events and delivers whatever is due.
pub async fn run(state: AppState) {
    let client = match client(&state.config.webhooks) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e.without_url(), "outgoing webhooks: cannot build the HTTP client; deliveries stay queued");
            return;
        }
    };
    let wake = Arc::new(Notify::new());
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _listener = AbortOnDrop(tokio::spawn(listen(state.clone(), wake.clone())));
    // Dropped with the worker: the deliveries in flight end with it (their
    // leases run out and another instance, or the next start, retries them).
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let mut sleep = MAX_IDLE;
        if in_flight.len() < MAX_IN_FLIGHT {
            match claim_more(&state, &client, &mut in_flight).await {
                Ok(Some(s)) => sleep = s,
                Ok(None) => continue,
                Err(e) => {
                    metrics::counter!("webhook_worker_failures_total").increment(1);
                    tracing::warn!(error = %e, "outgoing webhooks: claiming");
                }
            }
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    metrics::counter!("webhook_worker_failures_total").increment(1);
                    tracing::error!(error = %e, "outgoing webhooks: a delivery task failed");
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Claims due deliveries for the free slots and starts sending them. Answers
/// None when it claimed some (look again at once), else how long to sleep
/// until the next one is due.
async fn claim_more(
    state: &AppState,
    client: &reqwest::Client,
    in_flight: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Option<Duration>> {
    let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len()) as i64;
    let mut conn = state.db.get().await?;
    let claimed = webhooks::claim_due(&mut conn, room, LEASE.as_secs_f64()).await?;
    if claimed.is_empty() {
        let next = webhooks::next_due_in(&mut conn).await?;
        return Ok(Some(match next {
            Some(s) if s <= 0.0 => Duration::from_millis(10),
            Some(s) => Duration::from_secs_f64(s).min(MAX_IDLE),
            None => MAX_IDLE,
        }));
    }
    for d in claimed {
        let (state, client) = (state.clone(), client.clone());
        in_flight.spawn(async move {
            if let Err(e) = deliver(&state, &client, d).await {
                metrics::counter!("webhook_worker_failures_total").increment(1);
                tracing::warn!(error = %e, "outgoing webhooks: recording an attempt");
            }
        });
    }
    Ok(None)
}

#[tracing::instrument(skip_all, fields(delivery = d.id, endpoint = d.endpoint_id, event = %d.event, attempt = d.attempts))]
async fn deliver(state: &AppState, client: &reqwest::Client, d: Claimed) -> anyhow::Result<()> {
    let config = &state.config.webhooks;
    let sent = send(
        client,
        config.allow_private_addresses,
        &d.url,
        &d.secret,
        &d.event,
        &d.event_id,
        d.body,
    )
    .await;
    let delivered = sent.delivered();
    let retry_in = (!delivered && d.attempts < config.max_attempts)
        .then(|| backoff(config.backoff_base, d.attempts).as_secs_f64());
    let result = AttemptResult {
        delivery: d.id,
        attempt: d.attempts,
        started_at: sent.started_at,
        duration_ms: sent.duration_ms,
        status_code: sent.status.map(i32::from),
        error: sent.error.as_deref(),
        delivered,
        retry_in,
    };
    let mut conn = state.db.get().await?;
    if webhooks::record_attempt(&mut conn, &result).await? == Recorded::Gone {
        metrics::counter!("webhook_attempts_total", "outcome" => "gone").increment(1);
        tracing::info!(
            status = sent.status,
            "webhook endpoint deleted while delivering; nothing to record"
        );
        return Ok(());
    }
    let outcome = match (delivered, retry_in) {
        (true, _) => "delivered",
        (false, Some(_)) => "retrying",
        (false, None) => "failed",
    };
    metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
    match outcome {
        "delivered" => tracing::info!(status = sent.status, "webhook delivered"),
        "retrying" => tracing::info!(
            status = sent.status,
            error = sent.error.as_deref(),
            retry_in_s = retry_in,
            "webhook attempt failed; will retry"
        ),
        _ => tracing::warn!(
            status = sent.status,
            error = sent.error.as_deref(),
            "webhook failed for good"
        ),
    }
    Ok(())
}

/// Holds a connection LISTENing for queued deliveries; reconnects on failure.
async fn listen(state: AppState, wake: Arc<Notify>) {
    loop {
        match AsyncPgConnection::establish(state.config.database_url.expose_secret()).await {
            Ok(mut conn) => {
                let listening = diesel::sql_query(format!("LISTEN {}", webhooks::NOTIFY_CHANNEL))
                    .execute(&mut conn)
                    .await;
                if let Err(e) = listening {
                    tracing::warn!(error = %e, "outgoing webhooks: LISTEN failed");
                } else {
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    while let Some(n) = stream.next().await {
                        match n {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "outgoing webhooks: notification stream failed");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "outgoing webhooks: cannot connect to LISTEN"),
        }
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_the_base() {
        let base = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [10, 30, 120, 600, 3600, 21600, 43200, 43200]);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_dot_body() {
        let sig = signature("whsec_test", 1700000000, b"{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            sig,
            format!("t=1700000000,v1={}", to_hex(&mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "192.88.99.1",
            // IPv6 outside global unicast, or special inside it.
            "::7f00:1",
            "::a00:1",
            "2002:7f00:1::1",
            "2002:5db8:d822::1",
            "fec0::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::5db8:d822",
            "100::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "2001:20::1",
            "3fff::1",
            "ff02::1",
            "4000::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "64:ff9b::5db8:d822",
            "::ffff:93.184.216.34",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_for_the_form() {
        assert!(check_url("ftp://example.com/x", true).await.is_err());
        assert!(check_url("not a url", true).await.is_err());
        assert!(
            check_url("https://user:pw@example.com/", true)
                .await
                .is_err()
        );
        assert!(
            check_url(&format!("https://example.com/{}", "a".repeat(2000)), true)
                .await
                .is_err()
        );
        assert!(check_url("http://127.0.0.1:9/hook", false).await.is_err());
        assert!(check_url("http://[::1]/hook", false).await.is_err());
        assert_eq!(
            check_url(" http://127.0.0.1:9/hook#x ", true)
                .await
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/hook"
        );
    }

    #[tokio::test]
    async fn unknown_and_private_hosts_get_the_same_answer() {
        let unknown = check_url("https://no-such-host.invalid/hook", false).await;
        let private = check_url("http://10.0.0.1/hook", false).await;
        let loopback = check_url("http://localhost:9/hook", false).await;
        assert_eq!(unknown, Err(NO_PUBLIC_ADDRESS.to_owned()));
        assert_eq!(private, unknown);
        assert_eq!(loopback, unknown);
    }

    #[test]
    fn errors_name_no_host() {
        let tls = [
            "error sending request".to_owned(),
            "client error (Connect)".to_owned(),
            "invalid peer certificate: certificate not valid for name \"hooks.example.com\"; \
             certificate is only valid for DnsName(\"other.example\")"
                .to_owned(),
        ];
        let said = cause_words(&tls, "hooks.example.com");
        assert!(said.contains("TLS certificate"), "{said}");
        assert!(!said.contains("example"), "{said}");
        let other = [
            "oops".to_owned(),
            "no route to Hooks.Example.com:443".to_owned(),
        ];
        assert_eq!(
            cause_words(&other, "hooks.example.com"),
            "no route to [host]:443"
        );
        let refused = ["dns error".to_owned(), PRIVATE_REFUSED.to_owned()];
        assert_eq!(cause_words(&refused, "x"), PRIVATE_REFUSED);
        let os = ["Connection refused (os error 111)".to_owned()];
        assert_eq!(cause_words(&os, "h"), os[0]);
    }

    #[test]
    fn secrets_are_long_and_random() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 64);
    }
}
