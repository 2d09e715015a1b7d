//! Every route in one table, with its layers. Read top to bottom: this is the
//! whole HTTP surface of stagepass.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use axum::{Router, middleware};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::auth::{csrf, session_store::PgSessionStore};
use crate::state::AppState;
use crate::telemetry;
use crate::web::{
    account, admin, auth, channels, chat, checkout, errors, grants, health, home, live, moderation,
    passes, recordings, studio, watch, webhooks,
};

pub const SESSION_COOKIE: &str = "stagepass_session";

pub fn app(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(home::show))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/account", get(account::show))
        .route("/account/profile", post(account::update_profile))
        .route("/account/password", post(account::change_password))
        // Channels and their team.
        .route("/c/{handle}", get(channels::show))
        .route("/studio/channels/new", get(channels::new))
        .route("/studio/channels", post(channels::create))
        .route(
            "/studio/channels/{handle}/team",
            get(channels::team).post(channels::add_moderator),
        )
        .route(
            "/studio/channels/{handle}/team/{user_id}/remove",
            post(channels::remove_moderator),
        )
        // The studio: the owner's streams.
        .route("/studio", get(studio::dashboard))
        .route("/studio/channels/{handle}/streams/new", get(studio::new))
        .route("/studio/channels/{handle}/streams", post(studio::create))
        .route(
            "/studio/streams/{id}",
            get(studio::show).post(studio::update),
        )
        .route("/studio/streams/{id}/delete", post(studio::delete))
        // Going live, broadcasting, ending.
        .route("/studio/streams/{id}/live", post(live::go_live))
        .route("/studio/streams/{id}/end", post(live::end))
        .route("/studio/streams/{id}/broadcast", get(live::broadcast))
        .route("/studio/streams/{id}/token", post(live::host_token))
        .route("/studio/streams/{id}/stats", get(live::stats))
        // Recording and replays.
        .route("/studio/streams/{id}/recording", get(recordings::panel))
        .route(
            "/studio/streams/{id}/recording/start",
            post(recordings::start),
        )
        .route(
            "/studio/streams/{id}/recording/stop",
            post(recordings::stop),
        )
        .route(
            "/studio/streams/{id}/recording/settings",
            post(recordings::settings),
        )
        .route(
            "/studio/streams/{id}/recording/retention",
            post(recordings::retention),
        )
        .route("/studio/recordings/{id}/delete", post(recordings::delete))
        .route("/s/{id}/replays", get(recordings::replays))
        // OBS ingress (the stream key is shown on the studio page only).
        .route(
            "/studio/streams/{id}/ingress",
            post(crate::web::ingress::create),
        )
        .route(
            "/studio/streams/{id}/ingress/reset",
            post(crate::web::ingress::reset),
        )
        .route(
            "/studio/streams/{id}/ingress/delete",
            post(crate::web::ingress::delete),
        )
        // Watching.
        .route("/s/{id}", get(watch::show))
        .route("/s/{id}/token", post(watch::token))
        .route("/s/{id}/status", get(watch::status))
        .route("/s/{id}/time-left", get(watch::time_left))
        .route("/s/{id}/live-stats", get(watch::live_stats_fragment))
        // Passes: the owner's, the pages viewers buy from, the viewer's own.
        .route(
            "/studio/channels/{handle}/passes",
            get(passes::list).post(passes::create),
        )
        .route(
            "/studio/passes/{id}",
            get(passes::edit).post(passes::update),
        )
        .route("/studio/passes/{id}/archive", post(passes::archive))
        .route("/s/{id}/pass", get(passes::for_stream))
        .route("/c/{handle}/passes", get(passes::for_channel))
        .route("/passes", get(passes::mine))
        // Checkout.
        .route("/passes/{id}/buy", post(checkout::buy))
        .route("/checkout/dev/{order}", get(checkout::dev_page))
        .route("/checkout/dev/{order}/confirm", post(checkout::dev_confirm))
        .route("/checkout/{order}/return", get(checkout::returned))
        // Grants and redeem codes.
        .route(
            "/studio/channels/{handle}/grants",
            get(grants::list).post(grants::comp),
        )
        .route("/studio/grants/{id}/extend", post(grants::extend))
        .route("/studio/grants/{id}/revoke", post(grants::revoke))
        .route(
            "/studio/passes/{id}/codes",
            get(grants::codes::list).post(grants::codes::create),
        )
        .route("/studio/passes/{id}/codes.csv", get(grants::codes::export))
        .route("/redeem", post(grants::redeem))
        // Chat.
        .route("/s/{id}/chat", get(chat::panel).post(chat::post))
        .route("/s/{id}/chat/events", get(chat::events))
        .route("/s/{id}/chat/{message}/delete", post(chat::delete))
        .route("/studio/streams/{id}/chat-settings", post(chat::settings))
        // Moderation.
        .route("/studio/streams/{id}/moderate", get(moderation::show))
        .route(
            "/studio/streams/{id}/participants",
            get(moderation::participants),
        )
        .route(
            "/studio/streams/{id}/participants/{identity}/mute",
            post(moderation::mute),
        )
        .route(
            "/studio/streams/{id}/participants/{identity}/remove",
            post(moderation::remove),
        )
        .route("/studio/channels/{handle}/bans", post(moderation::ban))
        .route(
            "/studio/channels/{handle}/bans/{ban}/lift",
            post(moderation::lift_ban),
        )
        .route(
            "/studio/channels/{handle}/timeouts",
            post(moderation::timeout),
        )
        .route("/studio/channels/{handle}/audit", get(moderation::audit))
        .route("/moderation", get(moderation::dashboard))
        // Creator analytics (the team; money for the owner only) and their CSV.
        .route(
            "/studio/streams/{id}/analytics",
            get(crate::web::analytics::stream_page),
        )
        .route(
            "/studio/streams/{id}/analytics.csv",
            get(crate::web::analytics::stream_csv),
        )
        .route(
            "/studio/channels/{handle}/analytics",
            get(crate::web::analytics::channel_page),
        )
        .route(
            "/studio/channels/{handle}/analytics.csv",
            get(crate::web::analytics::channel_csv),
        )
        // Notifications (the bell) and channels' outgoing webhooks.
        .route("/notifications", get(crate::web::notifications::list))
        .route("/notifications/bell", get(crate::web::notifications::bell))
        .route(
            "/notifications/read-all",
            post(crate::web::notifications::mark_all_read),
        )
        .route(
            "/notifications/{id}/open",
            post(crate::web::notifications::open),
        )
        .route(
            "/notifications/{id}/read",
            post(crate::web::notifications::mark_read),
        )
        .route(
            "/studio/channels/{handle}/webhooks",
            get(crate::web::channel_webhooks::list).post(crate::web::channel_webhooks::create),
        )
        .route(
            "/studio/channels/{handle}/webhooks/{id}/delete",
            post(crate::web::channel_webhooks::delete),
        )
        .route(
            "/studio/channels/{handle}/webhooks/{id}/test",
            post(crate::web::channel_webhooks::send_test),
        )
        .route(
            "/studio/channels/{handle}/webhooks/{id}/secret",
            post(crate::web::channel_webhooks::reveal_secret),
        )
        // Discover (the home page above), follow, thumbnails, channel settings.
        .route("/following", get(crate::web::follow::following))
        .route("/c/{handle}/follow", post(crate::web::follow::follow))
        .route("/c/{handle}/unfollow", post(crate::web::follow::unfollow))
        .route("/c/{handle}/avatar", get(crate::web::settings::avatar))
        .route("/s/{id}/thumbnail", get(crate::web::images::thumbnail))
        .route(
            "/studio/streams/{id}/thumbnail",
            post(crate::web::images::upload_thumbnail).layer(axum::extract::DefaultBodyLimit::max(
                crate::web::uploads::UPLOAD_BODY_LIMIT,
            )),
        )
        .route(
            "/studio/streams/{id}/thumbnail/delete",
            post(crate::web::images::remove_thumbnail),
        )
        .route(
            "/studio/channels/{handle}/settings",
            get(crate::web::settings::show).post(crate::web::settings::update),
        )
        .route(
            "/studio/channels/{handle}/avatar",
            post(crate::web::settings::upload_avatar).layer(axum::extract::DefaultBodyLimit::max(
                crate::web::uploads::UPLOAD_BODY_LIMIT,
            )),
        )
        .route(
            "/studio/channels/{handle}/avatar/delete",
            post(crate::web::settings::remove_avatar),
        )
        // Creator applications (CREATORS=approval) and the operator's console
        // (instance admins only: web/admin.rs).
        .route(
            "/creators/apply",
            get(crate::web::creators::apply_page).post(crate::web::creators::apply),
        )
        .route("/admin", get(admin::dashboard))
        .route("/admin/applications", get(admin::applications))
        .route("/admin/applications/{id}/approve", post(admin::approve))
        .route("/admin/applications/{id}/reject", post(admin::reject))
        .route("/admin/users", get(admin::users))
        .route("/admin/users/{id}/suspend", post(admin::suspend))
        .route("/admin/users/{id}/restore", post(admin::restore))
        .route("/admin/channels", get(admin::channels))
        .route("/admin/channels/{id}/hide", post(admin::hide))
        .route("/admin/channels/{id}/restore", post(admin::show_channel))
        .route("/admin/audit", get(admin::audit))
        // Stripe's webhooks (signed; exempt from CSRF).
        .route("/webhooks/stripe", post(webhooks::stripe))
        // LiveKit's webhooks (signed; exempt from CSRF, see auth/csrf.rs).
        .route("/webhooks/livekit", post(webhooks::livekit))
        .fallback(errors::not_found)
        // Inner to outer: CSRF check, error pages, sessions.
        .layer(middleware::from_fn_with_state(state.clone(), csrf::verify))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            errors::render,
        ))
        .layer(session_layer(&state))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            errors::last_resort,
        ));

    let operator = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/favicon.ico", get(crate::web::assets::favicon))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));

    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(operator)
        .nest_service("/static", ServeDir::new(&state.config.static_dir))
        .merge(pages)
        .layer(middleware::from_fn(telemetry::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30))),
        )
        // Security headers on every response: no framing, no MIME sniffing, no full URLs in Referer.
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, content_security_policy(&state)))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ))
        .with_state(state)
}

fn session_layer(state: &AppState) -> SessionManagerLayer<PgSessionStore> {
    let idle = time::Duration::try_from(state.config.session_idle_timeout)
        .unwrap_or(time::Duration::days(7));
    SessionManagerLayer::new(PgSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.secure_cookies())
        .with_expiry(Expiry::OnInactivity(idle))
}

/// The Content-Security-Policy: scripts only from us (htmx, livekit-client and
/// our modules are all served from /static), media over LiveKit's URL only.
/// Buying through Stripe is a form post answered with a redirect to Stripe
/// Checkout, which browsers hold to `form-action`: so Checkout is allowed there.
fn content_security_policy(state: &AppState) -> HeaderValue {
    let livekit = state
        .config
        .livekit
        .public_url
        .origin()
        .ascii_serialization();
    // Replays play from presigned S3 URLs: the bucket's endpoint is a media source.
    let s3 = state
        .config
        .s3
        .endpoint
        .as_ref()
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_else(|| " https://*.amazonaws.com".to_owned());
    let form_action = match state.config.payments {
        crate::config::PaymentsConfig::Stripe(_) => "'self' https://checkout.stripe.com",
        crate::config::PaymentsConfig::Dev => "'self'",
    };
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:{s3}; connect-src 'self' {livekit}; frame-ancestors 'none'; \
         base-uri 'self'; form-action {form_action}; object-src 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}
