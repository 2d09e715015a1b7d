//! "My passes": the viewer's grants (active, upcoming, ended) and purchases.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::span_label;
use crate::auth::CurrentUser;
use crate::db;
use crate::db::grants::Source;
use crate::db::orders::{self, Purchase, Status as OrderStatus};
use crate::db::passes::{self, HeldGrant, Standing, money_label};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::view::{Moment, utc};
use crate::web::{Layout, render_with};

// ---------------------------------------------------------------------------
// My passes.

/// One of the viewer's grants, in words.
pub struct GrantRow {
    pub id: db::GrantId,
    pub name: String,
    pub covers: String,
    pub replays: bool,
    pub source: &'static str,
    /// Where to watch: the stream, or the channel's page.
    pub watch_href: String,
    pub watch_label: String,
    /// "2 days 3 hours left", "Starts in 3 hours", "Ended …", "Revoked …".
    pub when: String,
    pub starts: Moment,
    pub expires: Moment,
    pub revoked: Option<Moment>,
    pub revoked_reason: Option<String>,
}

impl GrantRow {
    fn new(g: HeldGrant) -> Self {
        let to_go = g.seconds_to_go.unwrap_or(0.0).max(0.0) as i64;
        let when = match g.standing() {
            Standing::Active => format!("{} left", span_label(to_go)),
            Standing::Upcoming => format!("Starts in {}", span_label(to_go)),
            Standing::Expired => format!("Ended {}", utc(&g.expires_at)),
            Standing::Revoked => format!(
                "Revoked {}",
                g.revoked_at.as_ref().map(utc).unwrap_or_default()
            ),
        };
        let (covers, watch_href, watch_label) = match (g.stream_id, &g.stream_title) {
            (Some(id), title) => {
                let title = title.clone().unwrap_or_default();
                (
                    format!("{title} on {}", g.channel_title),
                    format!("/s/{id}"),
                    "Watch".to_owned(),
                )
            }
            (None, _) => (
                format!("Every stream of {}", g.channel_title),
                format!("/c/{}", g.channel_handle),
                format!("Go to {}", g.channel_title),
            ),
        };
        let source = match g.source {
            Source::Purchase => "Bought",
            Source::Code => "Redeemed with a code",
            Source::Comp => "Given by the channel",
        };
        GrantRow {
            id: g.id,
            name: g.pass_name.clone().unwrap_or_else(|| {
                match g.source {
                    Source::Comp => "Complimentary access",
                    Source::Purchase | Source::Code => "Access",
                }
                .to_owned()
            }),
            covers,
            replays: g.includes_replays,
            source,
            watch_href,
            watch_label,
            when,
            starts: Moment::new(g.starts_at),
            expires: Moment::new(g.expires_at),
            revoked: g.revoked_at.map(Moment::new),
            revoked_reason: g.revoked_reason,
        }
    }
}

pub struct PurchaseRow {
    pub id: db::OrderId,
    pub pass_name: String,
    pub channel_title: String,
    pub amount: String,
    pub status: &'static str,
    pub status_key: &'static str,
    pub at: Moment,
}

impl PurchaseRow {
    fn new(p: Purchase) -> Self {
        let order = p.order;
        let status = match order.status {
            OrderStatus::Pending => "Awaiting payment",
            OrderStatus::Paid => "Paid",
            OrderStatus::Failed => "Failed",
            OrderStatus::Refunded => "Refunded",
            OrderStatus::Canceled => "Canceled",
        };
        PurchaseRow {
            id: order.id,
            amount: money_label(order.amount_cents, &order.currency),
            pass_name: p.pass.name,
            channel_title: p.channel.title,
            status,
            status_key: order.status.as_str(),
            at: Moment::new(order.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/passes/mine.html")]
pub struct MinePage {
    pub layout: Layout,
    pub active: Vec<GrantRow>,
    pub upcoming: Vec<GrantRow>,
    pub ended: Vec<GrantRow>,
    pub purchases: Vec<PurchaseRow>,
}

pub async fn mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (mut active, mut upcoming, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    // Sorted into the lists by the standing the database gave each grant.
    for g in passes::held_by(&mut conn, user.id).await? {
        match g.standing() {
            Standing::Active => active.push(GrantRow::new(g)),
            Standing::Upcoming => upcoming.push(GrantRow::new(g)),
            Standing::Expired | Standing::Revoked => ended.push(GrantRow::new(g)),
        }
    }
    let purchases = orders::for_user(&mut conn, user.id)
        .await?
        .into_iter()
        .map(PurchaseRow::new)
        .collect();
    render_with(
        StatusCode::OK,
        &MinePage {
            layout,
            active,
            upcoming,
            ended,
            purchases,
        },
    )
}
