//! The pages viewers buy from: a stream's passes (/s/{id}/pass) and a
//! channel's (/c/{handle}/passes).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{buy_label, length_label};
use crate::access::{self, Access, Denial};
use crate::auth::MaybeUser;
use crate::db::channels::Channel;
use crate::db::passes::{self, OnSale, Pass, Scope};
use crate::db::streams::{Status, Stream};
use crate::db::{PassId, StreamId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::authz::{Ids, PublicChannel};
use crate::web::funnel::FunnelVisitor;
use crate::web::view::redeem_form::RedeemForm;
use crate::web::view::{Moment, StreamState};
use crate::web::{Layout, render_with};

// ---------------------------------------------------------------------------
// The pages viewers buy from.

/// A pass as a viewer sees it, with its buy form.
pub struct PassCard {
    pub id: PassId,
    pub name: String,
    /// "This stream", "Every stream of Ann Live", "One stream: Friday session".
    pub gives: String,
    /// The stream it covers, linked from the channel's passes page.
    pub stream_link: Option<StreamId>,
    pub replays: bool,
    pub length: String,
    pub price: String,
    pub buy_label: String,
    /// The buy form's `stream_id`: where the buyer lands after paying.
    pub stream_id: Option<StreamId>,
}

impl PassCard {
    /// On a stream's page: every pass leads back to this stream.
    pub(crate) fn for_stream(pass: &Pass, channel: &Channel, stream: StreamId) -> Self {
        let gives = match pass.scope {
            Scope::Stream => "This stream".to_owned(),
            Scope::Channel => format!("Every stream of {}", channel.title),
        };
        Self::new(pass, gives, None, Some(stream))
    }

    /// On the channel's page: stream passes say which stream.
    fn for_channel(on_sale: &OnSale, channel: &Channel) -> Self {
        let pass = &on_sale.pass;
        match (pass.stream_id, &on_sale.stream_title) {
            (Some(id), Some(title)) => {
                Self::new(pass, format!("One stream: {title}"), Some(id), Some(id))
            }
            _ => Self::new(
                pass,
                format!("Every stream of {}", channel.title),
                None,
                None,
            ),
        }
    }

    fn new(
        pass: &Pass,
        gives: String,
        stream_link: Option<StreamId>,
        stream_id: Option<StreamId>,
    ) -> Self {
        PassCard {
            id: pass.id,
            name: pass.name.clone(),
            gives,
            stream_link,
            replays: pass.includes_replays,
            length: length_label(pass),
            price: pass.price_label(),
            buy_label: buy_label(pass),
            stream_id,
        }
    }
}

/// Who is looking at a pass page, for its buttons.
pub struct Buyer {
    pub signed_in: bool,
    /// False for a viewer banned from the channel: nothing to sell them.
    pub may_buy: bool,
    /// This page, for signing in and coming back.
    pub here: String,
    /// Buy in a new tab (the watch page's paywall: the page itself goes on,
    /// and plays once the pass is there).
    pub new_tab: bool,
}

/// What the viewer may already do, said above the passes of a stream.
pub enum AccessNote {
    None,
    /// On the channel's team.
    Team,
    /// A public stream: everyone signed in watches.
    Public,
    /// Their grant covers the stream until then.
    Until(Moment),
    /// They had a pass for the stream; it ended or was revoked.
    Ended,
    Banned,
}

#[derive(Template)]
#[template(path = "pages/passes/for_stream.html")]
pub struct StreamPassesPage {
    pub layout: Layout,
    pub stream: Stream,
    pub channel: Channel,
    pub state: StreamState,
    pub scheduled: Option<Moment>,
    pub note: AccessNote,
    pub cards: Vec<PassCard>,
    /// Stream passes without replays were left out (the stream has ended).
    pub ended: bool,
    pub buyer: Buyer,
    pub redeem: RedeemForm,
}

pub async fn for_stream(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visitor: FunnelVisitor,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let user = user.map(|u| u.id);
    let (stream, channel, access) = access::find_stream_with_channel(&mut conn, user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let note = match access {
        Access::Publish | Access::Moderate => AccessNote::Team,
        Access::Watch { until: Some(t) } => AccessNote::Until(Moment::new(t)),
        Access::Watch { until: None } | Access::Guest => AccessNote::Public,
        Access::Denied(Denial::PassEnded) => AccessNote::Ended,
        Access::Denied(Denial::Banned) => AccessNote::Banned,
        Access::Denied(_) => AccessNote::None,
    };
    let ended = stream.status == Status::Ended;
    let cards = passes::on_sale_for_stream(&mut conn, channel.id, stream.id)
        .await?
        .iter()
        // After the stream, a pass for it alone is only worth its replay.
        .filter(|p| !ended || p.scope == Scope::Channel || p.includes_replays)
        .map(|p| PassCard::for_stream(p, &channel, stream.id))
        .collect();
    let redeem = RedeemForm::new(
        &layout.csrf_token,
        format!("/s/{}", stream.id),
        format!("/s/{}/pass", stream.id),
    );
    let page = StreamPassesPage {
        layout,
        state: StreamState::of(&stream),
        scheduled: stream.scheduled_at.map(Moment::new),
        buyer: Buyer {
            signed_in: user.is_some(),
            may_buy: !matches!(note, AccessNote::Banned),
            here: format!("/s/{}/pass", stream.id),
            new_tab: false,
        },
        redeem,
        note,
        cards,
        ended,
        stream,
        channel,
    };
    let noted = visitor.note(
        &state,
        user,
        crate::analytics::Step::PassPage,
        page.channel.id,
        Some(page.stream.id),
    );
    Ok(noted.apply(render_with(StatusCode::OK, &page)?))
}

#[derive(Template)]
#[template(path = "pages/passes/for_channel.html")]
pub struct ChannelPassesPage {
    pub layout: Layout,
    pub channel: Channel,
    pub cards: Vec<PassCard>,
    pub buyer: Buyer,
    pub redeem: RedeemForm,
}

pub async fn for_channel(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visitor: FunnelVisitor,
    layout: Layout,
    PublicChannel(channel): PublicChannel,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let cards = passes::on_sale_for_channel(&mut conn, channel.id)
        .await?
        .iter()
        .map(|p| PassCard::for_channel(p, &channel))
        .collect();
    let redeem = RedeemForm::new(
        &layout.csrf_token,
        format!("/c/{}", channel.handle),
        format!("/c/{}/passes", channel.handle),
    );
    let page = ChannelPassesPage {
        layout,
        cards,
        buyer: Buyer {
            signed_in: user.is_some(),
            // Bans are checked by the checkout; this page has no stream to ask about.
            may_buy: true,
            here: format!("/c/{}/passes", channel.handle),
            new_tab: false,
        },
        redeem,
        channel,
    };
    let noted = visitor.note(
        &state,
        user.map(|u| u.id),
        crate::analytics::Step::PassPage,
        page.channel.id,
        None,
    );
    Ok(noted.apply(render_with(StatusCode::OK, &page)?))
}
