//! Checkout over HTTP: the buy button, the return page that waits for the
//! payment, and the dev provider's confirmation page. Stripe's webhook,
//! which completes a paid order, is `webhooks::stripe`.
//!
//! Nothing here grants access. Buying starts a checkout (`payments`); the
//! grant comes from `db::orders::complete_order`, reached from a verified
//! webhook (`webhooks::stripe`), the dev confirmation, or at once for a free pass. The return page
//! only reads the order. Orders are their buyer's: anyone else gets 404. A
//! pass for a stream the buyer may not know of (an unannounced draft, see
//! `access::may_know_of`) is a 404 as a missing pass is.
//!
//! The buy form may carry `stream_id`, the stream the buyer came from; it
//! travels through the checkout as `?stream=` and is checked against the
//! pass's channel each time it is read, so the buyer lands back on it.
//!
//! Starting purchases is limited per account (`CHECKOUT_MAX_PER_ACCOUNT`):
//! each is an order row and a call to Stripe, whose rate limit is shared by
//! the whole site.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use super::{FlashKind, Htmx, Layout, render};
use crate::access::{self, Denial};
use crate::auth::{self, CurrentUser};
use crate::db::channels::{self, Channel};
use crate::db::orders::{self, Order, Status};
use crate::db::passes::{self, Pass};
use crate::db::{OrderId, PassId, StreamId, UserId};
use crate::error::{AppError, AppResult};
use crate::limits::{self, Action};
use crate::payments::{self, Destination, ProviderKind, PurchaseError, Started};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::Ids;

/// Where a purchase of `pass` leads: the stream it covers or the buyer came
/// from (checked to be of the pass's channel), else the channel page.
struct Route {
    stream: Option<StreamId>,
    watch: String,
    pass_page: String,
}

async fn route(
    conn: &mut AsyncPgConnection,
    user: UserId,
    pass: &Pass,
    channel: &Channel,
    came_from: Option<&str>,
) -> AppResult<Route> {
    let stream = match pass.stream_id {
        Some(own) => Some(own),
        // A stream the buyer may not know of (an unannounced draft) is no
        // stream at all here, as a missing one.
        None => match came_from.and_then(|raw| raw.trim().parse::<StreamId>().ok()) {
            Some(id) => access::find_stream(conn, Some(user), id)
                .await?
                .filter(|(s, _)| s.channel_id == pass.channel_id)
                .map(|(s, _)| s.id),
            None => None,
        },
    };
    Ok(match stream {
        Some(s) => Route {
            stream: Some(s),
            watch: format!("/s/{s}"),
            pass_page: format!("/s/{s}/pass"),
        },
        None => Route {
            stream: None,
            watch: format!("/c/{}", channel.handle),
            pass_page: format!("/c/{}/passes", channel.handle),
        },
    })
}

#[derive(Deserialize, Default)]
pub struct BuyForm {
    /// The stream the buyer came from (optional).
    pub stream_id: Option<String>,
}

pub async fn buy(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    Ids(id): Ids<PassId>,
    Form(form): Form<BuyForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let pass = passes::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound)?;
    // A pass for a stream the buyer may not know of (an unannounced draft)
    // is answered as a missing pass.
    let stream = match pass.stream_id {
        Some(stream_id) => Some(
            access::find_stream(&mut conn, Some(user.id), stream_id)
                .await?
                .ok_or(AppError::NotFound)?
                .0,
        ),
        None => None,
    };
    let channel = channels::find(&mut conn, pass.channel_id)
        .await?
        .ok_or(AppError::NotFound)?;
    // A hidden channel sells nothing: its passes are answered as missing ones.
    if channels::is_hidden(&mut conn, channel.id).await? {
        return Err(AppError::NotFound);
    }
    if pass.is_archived() {
        return Err(AppError::forbidden(
            "This pass is no longer on sale. Passes already bought stay valid; see the channel's other passes.",
        ));
    }
    // A first look; completing the order checks the window again, by the database's clock.
    if pass.grant_window(Utc::now()).is_none() {
        return Err(AppError::forbidden(
            "This pass's time window is over, so it can no longer be bought.",
        ));
    }
    if access::banned_from(&mut conn, user.id, pass.channel_id).await? {
        return Err(AppError::forbidden(Denial::Banned.reason()));
    }
    // A pass for one stream that has ended is worth something only with replays.
    if let Some(stream) = &stream {
        let ended = stream.status == crate::db::streams::Status::Ended;
        if ended && !pass.includes_replays {
            return Err(AppError::forbidden(
                "This stream has ended, and this pass does not include its replay.",
            ));
        }
    }
    // Free passes don't stack: one at a time.
    if pass.price_cents == 0
        && crate::db::grants::holds_active_from_pass(&mut conn, user.id, pass.id).await?
    {
        return Err(AppError::forbidden(
            "You already have this free pass. You can take it again once it has ended.",
        ));
    }
    // Counted once the purchase may go ahead: each is an order and a call
    // to the payment provider.
    let limit = state.config.limits.checkouts_per_account;
    if let Err(refused) =
        limits::take(&mut conn, Action::Checkout, &user.id.to_string(), limit).await?
    {
        return Err(AppError::TooManyRequests(format!(
            "You started {} purchases in a short time, the most one account may. Wait {} before trying again.",
            limit.max,
            refused.wait()
        )));
    }
    let route = route(
        &mut conn,
        user.id,
        &pass,
        &channel,
        form.stream_id.as_deref(),
    )
    .await?;
    drop(conn);

    let destination = Destination {
        stream: route.stream,
        pass_page: route.pass_page.clone(),
    };
    let started = payments::start_purchase(
        &state.db,
        state.payments.as_ref(),
        &state.config.public_url,
        user.id,
        &pass,
        &destination,
    )
    .await;
    match started {
        Ok(Started::Redirect { to, .. }) => Ok(reply.redirect(&to)),
        Ok(Started::Free { grant, .. }) => {
            let (kind, message) = match grant {
                Some(_) => (
                    FlashKind::Success,
                    format!("{} is yours. Enjoy!", pass.name),
                ),
                None => (
                    FlashKind::Error,
                    format!("{} could not be added: its time window is over.", pass.name),
                ),
            };
            reply.redirect_with(kind, message, &route.watch).await
        }
        Err(PurchaseError::Provider { order, error }) => {
            tracing::warn!(order_id = %order, %error, "checkout could not start");
            reply
                .redirect_with(
                    FlashKind::Error,
                    "We couldn't start the payment: the payment service did not accept it. \
                 You have not been charged. Please try again in a minute.",
                    &route.pass_page,
                )
                .await
        }
        Err(PurchaseError::Database(e)) => Err(e.into()),
        Err(PurchaseError::Pool(e)) => Err(e.into()),
    }
}

/// Order `id` if `user` placed it (404 otherwise, as if it did not exist).
async fn own_order(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: OrderId,
) -> AppResult<(Order, Pass, Channel)> {
    let order = orders::find(conn, id)
        .await?
        .filter(|o| o.user_id == user)
        .ok_or(AppError::NotFound)?;
    let pass = passes::find(conn, order.pass_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let channel = channels::find(conn, pass.channel_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((order, pass, channel))
}

/// The order's amount, as the buyer was asked to pay it (not the pass's price today).
fn amount_label(order: &Order, pass: &Pass) -> String {
    Pass {
        price_cents: order.amount_cents,
        currency: order.currency.clone(),
        ..pass.clone()
    }
    .price_label()
}

#[derive(Deserialize, Default)]
pub struct ReturnQuery {
    pub stream: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/checkout/return.html", blocks = ["status"])]
pub struct ReturnPage {
    pub layout: Layout,
    pub order_id: OrderId,
    pub status: Status,
    pub pass_name: String,
    pub amount: String,
    /// This page's own URL (it polls itself).
    pub poll_url: String,
    pub pass_page: String,
    pub watch: String,
}

/// Where Stripe sends the buyer back to. It grants nothing: it waits for the
/// webhook to mark the order paid (polling every 2 s), then sends them on.
pub async fn returned(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    htmx: Htmx,
    layout: Layout,
    Ids(id): Ids<OrderId>,
    Query(q): Query<ReturnQuery>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (order, pass, channel) = own_order(&mut conn, user.id, id).await?;
    let route = route(&mut conn, user.id, &pass, &channel, q.stream.as_deref()).await?;
    drop(conn);
    if order.status == Status::Paid {
        return Ok(auth::redirect(htmx.request, &route.watch));
    }
    let poll_url = match route.stream {
        Some(s) => format!("/checkout/{}/return?stream={s}", order.id),
        None => format!("/checkout/{}/return", order.id),
    };
    let page = ReturnPage {
        layout,
        order_id: order.id,
        status: order.status,
        amount: amount_label(&order, &pass),
        pass_name: pass.name,
        poll_url,
        pass_page: route.pass_page,
        watch: route.watch,
    };
    if htmx.fragment {
        render(&page.as_status())
    } else {
        render(&page)
    }
}

#[derive(Template)]
#[template(path = "pages/checkout/dev.html")]
pub struct DevPage {
    pub layout: Layout,
    pub order_id: OrderId,
    pub pass_name: String,
    pub amount: String,
    pub stream: Option<StreamId>,
    pub pass_page: String,
}

/// The dev provider's order `id` of `user`; 404 unless the app runs the dev
/// provider (a dev order left from before a switch to Stripe stays unpaid).
async fn own_dev_order(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: OrderId,
) -> AppResult<(Order, Pass, Channel)> {
    let found = own_order(conn, user, id).await?;
    if state.payments.kind() != ProviderKind::Dev || found.0.provider != ProviderKind::Dev {
        return Err(AppError::NotFound);
    }
    Ok(found)
}

pub async fn dev_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    htmx: Htmx,
    layout: Layout,
    Ids(id): Ids<OrderId>,
    Query(q): Query<ReturnQuery>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (order, pass, channel) = own_dev_order(&state, &mut conn, user.id, id).await?;
    let route = route(&mut conn, user.id, &pass, &channel, q.stream.as_deref()).await?;
    if order.status == Status::Paid {
        return Ok(auth::redirect(htmx.request, &route.watch));
    }
    if !matches!(order.status, Status::Pending | Status::Failed) {
        return Err(AppError::forbidden(
            "This order can no longer be paid. Start again from the pass page.",
        ));
    }
    render(&DevPage {
        layout,
        order_id: order.id,
        amount: amount_label(&order, &pass),
        pass_name: pass.name,
        stream: route.stream,
        pass_page: route.pass_page,
    })
}

#[derive(Deserialize, Default)]
pub struct ConfirmForm {
    pub stream: Option<String>,
}

/// Completes a dev order like a paid Stripe session: one transaction marks it
/// paid and creates the grant; confirming again changes nothing.
pub async fn dev_confirm(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    Ids(id): Ids<OrderId>,
    Form(form): Form<ConfirmForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (order, pass, channel) = own_dev_order(&state, &mut conn, user.id, id).await?;
    let route = route(&mut conn, user.id, &pass, &channel, form.stream.as_deref()).await?;
    let grant = orders::complete_order(&mut conn, order.id, None).await?;
    let paid = orders::find(&mut conn, order.id)
        .await?
        .is_some_and(|o| o.status == Status::Paid);
    if !paid {
        return reply
            .redirect_with(
                FlashKind::Error,
                "This order can no longer be paid. Start again from the pass page.",
                &route.pass_page,
            )
            .await;
    }
    if grant.is_some() {
        payments::count(ProviderKind::Dev, "paid");
        reply
            .flash(
                FlashKind::Success,
                format!("{} is yours. Enjoy!", pass.name),
            )
            .await?;
    }
    Ok(reply.redirect(&route.watch))
}
