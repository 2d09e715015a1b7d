//! A channel's outgoing webhooks page (owner only; moderators get 403 with
//! the reason): add an endpoint (URL + a secret the app generates, or the
//! owner's own), see its secret (masked; revealed and copied on request, a
//! POST: the page itself never carries a secret, and is `no-store`), send a test event,
//! delete it, and read its delivery log with every attempt. Validation and
//! sending are `outgoing_webhooks.rs`'s; this module renders and routes.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::view::Moment;
use super::{FieldErrors, FlashKind, Htmx, Layout, render, render_with, view};
use crate::db::channels::Channel;
use crate::db::webhooks::{self, Attempt, Delivery, DeliveryStatus, Endpoint};
use crate::db::{self};
use crate::error::AppResult;
use crate::outgoing_webhooks;
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedChannel, OwnedEndpoint, area};

/// Endpoints per channel.
pub const MAX_ENDPOINTS: usize = 10;
/// Deliveries the log shows per endpoint (newest first).
pub const LOG_LENGTH: i64 = 25;
/// "Send test event"s per channel per minute (each waits up to 10 s on the
/// receiver: this keeps an owner from keeping the server busy with them).
pub const TESTS_PER_MINUTE: i64 = 10;
const MIN_SECRET: usize = 16;
const MAX_SECRET: usize = 200;

/// A time with seconds (attempts are seconds apart).
pub fn precise(t: DateTime<Utc>) -> Moment {
    Moment {
        label: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

pub struct AttemptView {
    pub attempt: i32,
    pub started: Moment,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

impl AttemptView {
    fn new(a: Attempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            started: precise(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    pub event: String,
    pub subject: String,
    /// pending, delivered or failed.
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt: Option<Moment>,
    pub delivered: Option<Moment>,
    pub created: Moment,
    pub log: Vec<AttemptView>,
}

impl DeliveryView {
    fn new(d: Delivery, attempts: &mut Vec<Attempt>) -> Self {
        let (mine, rest): (Vec<Attempt>, Vec<Attempt>) = std::mem::take(attempts)
            .into_iter()
            .partition(|a| a.delivery_id == d.id);
        *attempts = rest;
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event: d.event,
            subject: d.subject,
            next_attempt: (d.status == DeliveryStatus::Pending)
                .then_some(d.next_attempt_at)
                .flatten()
                .map(precise),
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered: d.delivered_at.map(precise),
            created: precise(d.created_at),
            log: mine.into_iter().map(AttemptView::new).collect(),
        }
    }

    pub fn status_label(&self) -> &'static str {
        match self.status {
            DeliveryStatus::Delivered => "Delivered",
            DeliveryStatus::Failed => "Failed",
            DeliveryStatus::Pending if self.attempts == 0 => "Queued",
            DeliveryStatus::Pending => "Retrying",
        }
    }

    /// The badge's look: like an active pass, a revoked one, or an upcoming one.
    pub fn badge(&self) -> &'static str {
        match self.status {
            DeliveryStatus::Delivered => "active",
            DeliveryStatus::Failed => "revoked",
            DeliveryStatus::Pending => "upcoming",
        }
    }
}

pub struct EndpointView {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub created: Moment,
    pub deliveries: Vec<DeliveryView>,
}

impl EndpointView {
    /// The secret with all but its last four characters hidden.
    pub fn masked_secret(&self) -> String {
        let n = self.secret.chars().count();
        let tail: String = self.secret.chars().skip(n.saturating_sub(4)).collect();
        format!("{}{tail}", "•".repeat(n.saturating_sub(4).clamp(8, 24)))
    }
}

/// The add form as typed.
#[derive(Default)]
pub struct WebhookFields {
    pub url: String,
    /// "generate" (default) or "own".
    pub secret_choice: String,
}

#[derive(Template)]
#[template(path = "pages/webhooks/channel.html", blocks = ["form"])]
pub struct WebhooksPage {
    pub layout: Layout,
    pub channel: Channel,
    pub endpoints: Vec<EndpointView>,
    pub form: WebhookFields,
    pub errors: FieldErrors,
    pub allow_private: bool,
    /// The endpoint whose secret is shown ("Reveal" without JavaScript); the
    /// page carries no secret otherwise.
    pub revealed: Option<i64>,
}

impl WebhooksPage {
    pub fn full(&self) -> bool {
        self.endpoints.len() >= MAX_ENDPOINTS
    }

    pub fn max_endpoints(&self) -> usize {
        MAX_ENDPOINTS
    }

    async fn load(state: &AppState, layout: Layout, channel: Channel) -> AppResult<Self> {
        let mut conn = state.db.get().await?;
        let mut endpoints = Vec::new();
        for e in webhooks::for_channel(&mut conn, channel.id).await? {
            endpoints.push(endpoint_view(&mut conn, e).await?);
        }
        Ok(WebhooksPage {
            layout,
            channel,
            endpoints,
            form: WebhookFields {
                url: String::new(),
                secret_choice: "generate".into(),
            },
            errors: FieldErrors::default(),
            allow_private: state.config.webhooks.allow_private_addresses,
            revealed: None,
        })
    }
}

async fn endpoint_view(
    conn: &mut diesel_async::AsyncPgConnection,
    e: Endpoint,
) -> AppResult<EndpointView> {
    let deliveries = webhooks::recent_deliveries(conn, e.id, LOG_LENGTH).await?;
    let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
    let mut attempts = webhooks::attempts_of(conn, &ids).await?;
    Ok(EndpointView {
        id: e.id,
        url: e.url,
        secret: e.secret,
        created: Moment::new(e.created_at),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView::new(d, &mut attempts))
            .collect(),
    })
}

pub async fn list(
    State(state): State<AppState>,
    OwnedChannel { channel, .. }: OwnedChannel<area::Webhooks>,
    layout: Layout,
) -> AppResult<Response> {
    Ok(view::no_store(render(
        &WebhooksPage::load(&state, layout, channel).await?,
    )?))
}

/// An endpoint's secret, revealed.
#[derive(Template)]
#[template(path = "partials/webhooks/secret.html")]
pub struct SecretFragment {
    pub e: Endpoint,
}

/// "Reveal and copy": the secret, fetched only when asked for (a CSRF-checked
/// POST), for htmx alone or as the page with it shown.
pub async fn reveal_secret(
    State(state): State<AppState>,
    OwnedEndpoint {
        channel, endpoint, ..
    }: OwnedEndpoint,
    htmx: Htmx,
    layout: Layout,
) -> AppResult<Response> {
    if htmx.fragment {
        return Ok(view::no_store(render(&SecretFragment { e: endpoint })?));
    }
    let mut page = WebhooksPage::load(&state, layout, channel).await?;
    page.revealed = Some(endpoint.id);
    Ok(view::no_store(render(&page)?))
}

#[derive(Deserialize, Default)]
pub struct AddForm {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub secret_choice: String,
    #[serde(default)]
    pub secret: String,
}

/// The secret to sign with: a new one, or the owner's (checked).
fn check_secret(form: &AddForm, errors: &mut FieldErrors) -> Option<String> {
    if form.secret_choice != "own" {
        return Some(outgoing_webhooks::generate_secret());
    }
    let secret = form.secret.trim();
    let n = secret.chars().count();
    if n == 0 {
        errors.add(
            "secret",
            "Enter your secret, or let stagepass generate one.",
        );
    } else if n < MIN_SECRET {
        errors.add(
            "secret",
            format!("Use at least {MIN_SECRET} characters: a short secret is easy to guess."),
        );
    } else if n > MAX_SECRET {
        errors.add("secret", format!("Use at most {MAX_SECRET} characters."));
    } else if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        errors.add(
            "secret",
            "Use letters, digits and symbols only (no spaces or accented letters).",
        );
    } else {
        return Some(secret.to_owned());
    }
    None
}

pub async fn create(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Webhooks>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<AddForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let allow_private = state.config.webhooks.allow_private_addresses;
    let url = match outgoing_webhooks::check_url(&form.url, allow_private).await {
        Ok(url) => Some(url),
        Err(message) => {
            errors.add("url", message);
            None
        }
    };
    let secret = check_secret(&form, &mut errors);
    let mut conn = state.db.get().await?;
    if webhooks::for_channel(&mut conn, channel.id).await?.len() >= MAX_ENDPOINTS {
        errors.add(
            "",
            format!("A channel can have at most {MAX_ENDPOINTS} webhooks. Delete one first."),
        );
    }
    if let (Some(url), Some(secret), true) = (url, secret, errors.is_empty()) {
        let endpoint = webhooks::create(&mut conn, channel.id, url.as_str(), &secret).await?;
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "webhook.added",
            Some(&endpoint.id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        tracing::info!(endpoint = endpoint.id, channel = %channel.id, "webhook endpoint added");
        return reply
            .redirect_with(
                FlashKind::Success,
                "Webhook added. Copy its signing secret into your receiver to check signatures.",
                &format!(
                    "/studio/channels/{}/webhooks#webhook-{}",
                    channel.handle, endpoint.id
                ),
            )
            .await;
    }
    drop(conn);
    let mut page = WebhooksPage::load(&state, layout, channel).await?;
    page.form = WebhookFields {
        url: form.url.trim().to_owned(),
        secret_choice: if form.secret_choice == "own" {
            "own"
        } else {
            "generate"
        }
        .to_owned(),
    };
    page.errors = errors;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_form())
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedEndpoint {
        user,
        channel,
        endpoint,
    }: OwnedEndpoint,
    reply: Reply,
) -> AppResult<Response> {
    let id = endpoint.id;
    let mut conn = state.db.get().await?;
    if !webhooks::delete(&mut conn, channel.id, id).await? {
        return Err(crate::error::AppError::NotFound);
    }
    db::audit::record(
        &mut conn,
        Some(user.id),
        Some(channel.id),
        "webhook.deleted",
        Some(&id.to_string()),
        serde_json::json!({}),
    )
    .await?;
    reply
        .redirect_with(
            FlashKind::Success,
            "Webhook deleted: it receives no more events, and its delivery log is gone.",
            &format!("/studio/channels/{}/webhooks", channel.handle),
        )
        .await
}

/// The outcome of "Send test event", shown under the endpoint.
#[derive(Template)]
#[template(path = "partials/webhooks/test_result.html")]
pub struct TestResult {
    pub endpoint_id: i64,
    pub delivered: bool,
    pub message: String,
}

pub async fn send_test(
    State(state): State<AppState>,
    OwnedEndpoint {
        user,
        channel,
        endpoint,
    }: OwnedEndpoint,
    reply: Reply,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let allowed = webhooks::allow_test_event(
        &mut conn,
        user.id,
        channel.id,
        endpoint.id,
        TESTS_PER_MINUTE,
    )
    .await?;
    drop(conn);
    if !allowed {
        let message = format!(
            "This channel sent {TESTS_PER_MINUTE} test events in the last minute, the most it may. Wait a minute and try again."
        );
        if reply.htmx.fragment {
            let fragment = TestResult {
                endpoint_id: endpoint.id,
                delivered: false,
                message,
            };
            return render_with(StatusCode::TOO_MANY_REQUESTS, &fragment);
        }
        return reply
            .redirect_with(
                FlashKind::Error,
                message,
                &format!(
                    "/studio/channels/{}/webhooks#webhook-{}",
                    channel.handle, endpoint.id
                ),
            )
            .await;
    }
    let sent = outgoing_webhooks::send_test(&state, &endpoint, &channel).await;
    let message = match (&sent.error, sent.status) {
        (None, Some(status)) => format!(
            "Test event delivered: your receiver answered {status} in {} ms.",
            sent.duration_ms
        ),
        (None, None) => "Test event delivered.".to_owned(),
        (Some(e), _) => format!("The test event was not delivered: {e}."),
    };
    if reply.htmx.fragment {
        return render(&TestResult {
            endpoint_id: endpoint.id,
            delivered: sent.delivered(),
            message,
        });
    }
    let kind = if sent.delivered() {
        FlashKind::Success
    } else {
        FlashKind::Error
    };
    reply
        .redirect_with(
            kind,
            message,
            &format!(
                "/studio/channels/{}/webhooks#webhook-{}",
                channel.handle, endpoint.id
            ),
        )
        .await
}
