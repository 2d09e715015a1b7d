//! The signed-in user's notifications: the bell in the navigation (and the
//! small fragment it polls), the /notifications list (newest first, paged),
//! marking one or all read. Every query is scoped to the user; who gets a
//! notification is `notify.rs`'s business, not this module's.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::view::Moment;
use super::{Htmx, Layout, render};
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::StreamId;
use crate::db::notifications::{self, COUNT_CAP, Item, Kind};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::Ids;

/// How many notifications one page lists.
pub const PER_PAGE: i64 = 20;
/// The htmx event that makes the bell reload (sent as `HX-Trigger`).
const CHANGED: &str = "notifications-changed";

/// The bell: a link to /notifications with the unread count.
pub struct Bell {
    /// None: not loaded with the page; the bell loads it as soon as it shows.
    pub unread: Option<i64>,
}

impl Bell {
    pub fn count(&self) -> i64 {
        self.unread.unwrap_or(0)
    }

    /// The number on the bell: "99+" past the cap.
    pub fn shown(&self) -> String {
        match self.count() {
            n if n >= COUNT_CAP => format!("{}+", COUNT_CAP - 1),
            n => n.to_string(),
        }
    }

    /// What screen readers hear for the link.
    pub fn label(&self) -> String {
        match self.count() {
            0 => "Notifications, none unread".to_owned(),
            n if n >= COUNT_CAP => format!("Notifications, more than {} unread", COUNT_CAP - 1),
            n => format!("Notifications, {n} unread"),
        }
    }
}

#[derive(Template)]
#[template(path = "partials/notifications/bell.html")]
pub struct BellFragment {
    pub bell: Bell,
}

/// The bell alone, for its polling (every 30 s while the tab is visible, see
/// static/js/app.js, and when the list changes).
/// Signed out (the session ended meanwhile): 204, and htmx leaves the page be.
pub async fn bell(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
) -> AppResult<Response> {
    let Some(user) = user else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut conn = state.db.get().await?;
    let unread = notifications::unread_count(&mut conn, user.id).await?;
    let mut response = render(&BellFragment {
        bell: Bell {
            unread: Some(unread),
        },
    })?;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One notification as the list shows it.
pub struct NotificationView {
    pub id: i64,
    pub unread: bool,
    pub kind: Kind,
    pub what: What,
    pub at: Moment,
}

/// What a notification is about.
pub enum What {
    /// A channel the user follows went live, or scheduled a stream.
    Stream {
        channel_title: String,
        stream_id: StreamId,
        stream_title: String,
        /// When it was scheduled for (scheduled notifications).
        scheduled_for: Option<Moment>,
    },
    /// The user's creator application was decided.
    Application {
        channel_name: String,
        approved: bool,
        reason: Option<String>,
    },
}

impl NotificationView {
    fn new(item: Item) -> Self {
        let kind = item.kind;
        let what = match kind {
            Kind::Application => What::Application {
                channel_name: item.application_channel.unwrap_or_default(),
                approved: item.application_status.as_deref() == Some("approved"),
                reason: item.application_reason,
            },
            Kind::Live | Kind::Scheduled => What::Stream {
                channel_title: item.channel_title.unwrap_or_default(),
                stream_id: item.stream_id.unwrap_or(StreamId(0)),
                stream_title: item.stream_title.unwrap_or_default(),
                scheduled_for: match kind {
                    Kind::Scheduled => item.scheduled_at.map(Moment::new),
                    _ => None,
                },
            },
        };
        NotificationView {
            id: item.id,
            unread: item.read_at.is_none(),
            kind,
            what,
            at: Moment::new(item.created_at),
        }
    }

    /// Its subject in a few words, for the "Mark read" button's label.
    pub fn subject(&self) -> String {
        match &self.what {
            What::Stream {
                channel_title,
                stream_title,
                ..
            } => format!("{channel_title}, {stream_title}"),
            What::Application { channel_name, .. } => {
                format!("your application for {channel_name}")
            }
        }
    }
}

#[derive(Template)]
#[template(path = "pages/notifications/list.html", blocks = ["list"])]
pub struct NotificationsPage {
    pub layout: Layout,
    pub items: Vec<NotificationView>,
    /// The page shown (`?before=`), kept by "Mark all read".
    pub before: Option<i64>,
    /// The id to continue from for older notifications, if there are any.
    pub older: Option<i64>,
    /// The user's newest notification when the page was made: "Mark all
    /// read" marks up to it, not what arrived after.
    pub newest: Option<i64>,
    pub csrf_token: String,
}

impl NotificationsPage {
    pub fn any_unread(&self) -> bool {
        self.items.iter().any(|n| n.unread)
    }
}

/// One item alone (after "Mark read").
#[derive(Template)]
#[template(path = "partials/notifications/item.html")]
pub struct ItemFragment {
    pub n: NotificationView,
    pub csrf_token: String,
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    pub before: Option<String>,
}

fn before_of(raw: Option<&str>) -> Option<i64> {
    raw.and_then(|b| b.trim().parse::<i64>().ok())
        .filter(|b| *b > 0)
}

async fn load_page(
    state: &AppState,
    layout: Layout,
    user: crate::db::UserId,
    before: Option<i64>,
) -> AppResult<NotificationsPage> {
    let mut conn = state.db.get().await?;
    // Before the page: one that arrives in between is listed, but not marked.
    let newest = notifications::newest_id(&mut conn, user).await?;
    let mut rows = notifications::page(&mut conn, user, before, PER_PAGE + 1).await?;
    let older = if rows.len() as i64 > PER_PAGE {
        rows.truncate(PER_PAGE as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let csrf_token = layout.csrf_token.clone();
    Ok(NotificationsPage {
        layout,
        items: rows.into_iter().map(NotificationView::new).collect(),
        before,
        older,
        newest,
        csrf_token,
    })
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
    Query(query): Query<PageQuery>,
) -> AppResult<Response> {
    let page = load_page(&state, layout, user.id, before_of(query.before.as_deref())).await?;
    render(&page)
}

/// Clicking a notification: it is read now, and the watch page opens.
pub async fn open(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    htmx: Htmx,
    Ids(id): Ids<i64>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (kind, stream) = notifications::mark_read(&mut conn, user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let to = match (kind, stream) {
        (Kind::Application, _) | (_, None) => "/creators/apply".to_owned(),
        (_, Some(stream)) => format!("/s/{stream}"),
    };
    Ok(auth::redirect(htmx.request, &to))
}

fn changed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("hx-trigger", HeaderValue::from_static(CHANGED));
    response
}

/// "Mark read": the item comes back read (htmx), or the list again.
pub async fn mark_read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    Ids(id): Ids<i64>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    notifications::mark_read(&mut conn, user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !reply.htmx.fragment {
        return Ok(reply.redirect("/notifications"));
    }
    let item = notifications::find(&mut conn, user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let fragment = ItemFragment {
        n: NotificationView::new(item),
        csrf_token: auth::csrf::token(&reply.session).await?,
    };
    Ok(changed(render(&fragment)?))
}

#[derive(Deserialize, Default)]
pub struct ReadAllForm {
    #[serde(default)]
    pub before: Option<String>,
    /// The newest notification the page knew of (absent: mark all).
    #[serde(default)]
    pub up_to: Option<String>,
}

/// "Mark all read": everything up to the newest notification the page knew
/// of is read; the list comes back (htmx), or the page again.
pub async fn mark_all_read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    Form(form): Form<ReadAllForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let up_to = before_of(form.up_to.as_deref());
    notifications::mark_all_read(&mut conn, user.id, up_to).await?;
    drop(conn);
    let before = before_of(form.before.as_deref());
    if !reply.htmx.fragment {
        let to = match before {
            Some(b) => format!("/notifications?before={b}"),
            None => "/notifications".to_owned(),
        };
        return Ok(reply.redirect(&to));
    }
    let layout = Layout::fragment(&reply.session).await?;
    let page = load_page(&state, layout, user.id, before).await?;
    Ok(changed(render(&page.as_list())?))
}
