//! Creator analytics over HTTP: a stream's page and a channel's overview,
//! and their CSV exports (the funnel's visitor cookie is `web::funnel`).
//!
//! Who sees what (decided here, from `access`): the channel's owner sees
//! everything; its moderators see the audience and chat figures and charts
//! but no money (sales, revenue, the buying funnel) — the design's "only
//! owners manage money"; anyone else gets 403. The figures themselves come
//! from `crate::analytics`; this module only formats them. The pages and
//! CSVs are `Cache-Control: no-store` (they show revenue).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::view::{Moment, StreamState};
use super::{Layout, render, view};
use crate::analytics::charts::{self, Chart, Series, Unit};
use crate::analytics::export::{self, ChannelMoney, Money};
use crate::analytics::{
    self, Bucket, DayRevenue, FunnelStep, Sales, StreamFigures, duration_label, money, percent,
};
use crate::db::StreamId;
use crate::db::channels::{Channel, Role};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::authz::{TeamChannel, TeamStream, area};

// ---------------------------------------------------------------------------
// Shared by both pages.

/// The summary figures as shown: words, with the exact seconds for tests and
/// scripts in `data-seconds`.
pub struct FigureView {
    pub peak_viewers: i64,
    pub unique_viewers: i64,
    /// Of them, guests (a stream's figures; None for a channel's totals).
    pub guest_viewers: Option<i64>,
    pub watch_seconds: i64,
    pub watch_label: String,
    pub average_seconds: Option<i64>,
    pub average_label: String,
    pub chat_messages: i64,
    pub deleted_messages: i64,
}

impl FigureView {
    fn new(
        peak: i64,
        unique: i64,
        watch: i64,
        average: Option<i64>,
        chat: i64,
        deleted: i64,
    ) -> Self {
        FigureView {
            peak_viewers: peak,
            unique_viewers: unique,
            guest_viewers: None,
            watch_seconds: watch,
            watch_label: duration_label(watch),
            average_seconds: average,
            average_label: average
                .map(duration_label)
                .unwrap_or_else(|| "—".to_owned()),
            chat_messages: chat,
            deleted_messages: deleted,
        }
    }

    fn of(f: &StreamFigures) -> Self {
        FigureView {
            guest_viewers: Some(f.guest_viewers),
            ..Self::new(
                f.peak_viewers,
                f.unique_viewers,
                f.watch_seconds,
                f.average_watch_seconds,
                f.chat_messages,
                f.deleted_messages,
            )
        }
    }
}

pub struct SalesRow {
    pub currency: String,
    pub sold: i64,
    /// Of `sold`, free passes (0 revenue).
    pub free: i64,
    pub revenue: String,
    pub revenue_cents: i64,
}

fn sales_rows(sales: &[Sales]) -> Vec<SalesRow> {
    sales
        .iter()
        .map(|s| SalesRow {
            currency: s.currency.clone(),
            sold: s.sold,
            free: s.free,
            revenue: money(s.revenue_cents, &s.currency),
            revenue_cents: s.revenue_cents,
        })
        .collect()
}

pub struct FunnelRow {
    pub step: String,
    pub label: &'static str,
    pub visitors: i64,
    pub of_previous: String,
}

fn funnel_rows(funnel: &[FunnelStep]) -> Vec<FunnelRow> {
    funnel
        .iter()
        .map(|f| FunnelRow {
            step: f.step.clone(),
            label: f.label(),
            visitors: f.visitors,
            of_previous: percent(f.of_previous),
        })
        .collect()
}

fn hh_mm(t: &DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// The viewers and chat charts of a stream's timeline (None: never live).
/// `all_messages` is the stream's chat figure, which also counts messages
/// posted before it started (or after it ended); the chat chart says how
/// many of those it shows.
fn timeline_charts(timeline: &[Bucket], all_messages: i64) -> AppResult<Option<(Chart, Chart)>> {
    let Some(first) = timeline.first() else {
        return Ok(None);
    };
    let per = if first.minutes == 1 {
        "minute".to_owned()
    } else {
        format!("{} minutes", first.minutes)
    };
    // Times on the axis; the table says the day too when the stream crossed midnight.
    let same_day = timeline.last().map(|b| b.at.date_naive()) == Some(first.at.date_naive());
    let labels: Vec<String> = timeline
        .iter()
        .map(|b| {
            if same_day {
                hh_mm(&b.at)
            } else {
                b.at.format("%m-%d %H:%M").to_string()
            }
        })
        .collect();
    let viewers: Vec<f64> = timeline.iter().map(|b| b.viewers as f64).collect();
    let messages: Vec<f64> = timeline.iter().map(|b| b.messages as f64).collect();
    let (most, at) = timeline
        .iter()
        .max_by_key(|b| (b.viewers, std::cmp::Reverse(b.at)))
        .map(|b| (b.viewers, hh_mm(&b.at)))
        .unwrap_or((0, String::new()));
    let total: i64 = timeline.iter().map(|b| b.messages).sum();
    let span = format!(
        "{} points from {} to {} UTC",
        timeline.len(),
        labels.first().cloned().unwrap_or_default(),
        labels.last().cloned().unwrap_or_default()
    );
    let viewers_chart = charts::line_chart(
        "viewers-chart",
        &format!("Viewers during each {per}"),
        &format!(
            "People present at any time during each {per} (one who left as another joined \
             counts in both, so a {per} can show more than the peak concurrent viewers): \
             at most {most} (at {at} UTC); {span}."
        ),
        "Time (UTC)",
        &labels,
        &[Series {
            name: "Viewers".to_owned(),
            values: viewers,
        }],
        Unit::Count,
    )?;
    let chat_chart = charts::line_chart(
        "chat-chart",
        &format!("Chat messages per {per}"),
        &format!(
            "{total} of the stream's {all_messages} chat messages were posted between its \
             first and last {per} (the rest before it started or after it ended); {span}."
        ),
        "Time (UTC)",
        &labels,
        &[Series {
            name: "Messages".to_owned(),
            values: messages,
        }],
        Unit::Count,
    )?;
    Ok(Some((viewers_chart, chat_chart)))
}

/// One revenue chart per currency (one with zeros when nothing sold).
fn revenue_charts(days: &[DayRevenue]) -> AppResult<Vec<Chart>> {
    let mut currencies: Vec<Option<String>> = days.iter().map(|d| d.currency.clone()).collect();
    currencies.dedup();
    let mut out = Vec::new();
    for currency in currencies {
        let own: Vec<&DayRevenue> = days.iter().filter(|d| d.currency == currency).collect();
        let labels: Vec<String> = own
            .iter()
            .map(|d| d.day.format("%m-%d").to_string())
            .collect();
        let values: Vec<f64> = own.iter().map(|d| d.revenue_cents as f64 / 100.0).collect();
        let total: i64 = own.iter().map(|d| d.revenue_cents).sum();
        let (id, title, summary, name) = match &currency {
            Some(c) => (
                format!("revenue-chart-{}", c.to_lowercase()),
                format!(
                    "Revenue per day in {c}, last {} days",
                    analytics::REVENUE_DAYS
                ),
                format!(
                    "{} in {} days, one point per day ({} points).",
                    money(total, c),
                    analytics::REVENUE_DAYS,
                    own.len()
                ),
                c.clone(),
            ),
            None => (
                "revenue-chart".to_owned(),
                format!("Revenue per day, last {} days", analytics::REVENUE_DAYS),
                format!(
                    "No sales in the last {} days ({} points, all zero).",
                    analytics::REVENUE_DAYS,
                    own.len()
                ),
                "Revenue".to_owned(),
            ),
        };
        out.push(charts::line_chart(
            &id,
            &title,
            &summary,
            "Day (UTC)",
            &labels,
            &[Series { name, values }],
            Unit::Money,
        )?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// A stream.

#[derive(Template)]
#[template(path = "pages/analytics/stream.html")]
pub struct StreamAnalyticsPage {
    pub layout: Layout,
    pub stream_id: StreamId,
    pub title: String,
    pub channel: Channel,
    pub state: StreamState,
    pub started: Option<Moment>,
    pub ended: Option<Moment>,
    /// The owner: sales, revenue and the funnel are shown.
    pub money: bool,
    pub figures: FigureView,
    pub sales: Vec<SalesRow>,
    pub funnel: Vec<FunnelRow>,
    pub viewers_chart: Option<Chart>,
    pub chat_chart: Option<Chart>,
}

pub async fn stream_page(
    State(state): State<AppState>,
    TeamStream {
        stream,
        channel,
        access,
        ..
    }: TeamStream<area::Analytics>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let may_see_money = access.may_publish();
    let figures = analytics::stream_figures(&mut conn, stream.id).await?;
    let timeline = analytics::timeline(&mut conn, stream.id).await?;
    let (sales, funnel) = if may_see_money {
        (
            analytics::stream_sales(&mut conn, stream.id).await?,
            analytics::funnel(&mut conn, channel.id, Some(stream.id)).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    drop(conn);
    let (viewers_chart, chat_chart) = match timeline_charts(&timeline, figures.chat_messages)? {
        Some((v, c)) => (Some(v), Some(c)),
        None => (None, None),
    };
    Ok(view::no_store(render(&StreamAnalyticsPage {
        layout,
        stream_id: stream.id,
        title: stream.title.clone(),
        state: StreamState::of(&stream),
        started: stream.started_at.map(Moment::new),
        ended: stream.ended_at.map(Moment::new),
        channel,
        money: may_see_money,
        figures: FigureView::of(&figures),
        sales: sales_rows(&sales),
        funnel: funnel_rows(&funnel),
        viewers_chart,
        chat_chart,
    })?))
}

pub async fn stream_csv(
    State(state): State<AppState>,
    TeamStream {
        stream,
        channel,
        access,
        ..
    }: TeamStream<area::Analytics>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let may_see_money = access.may_publish();
    let figures = analytics::stream_figures(&mut conn, stream.id).await?;
    let timeline = analytics::timeline(&mut conn, stream.id).await?;
    let body = if may_see_money {
        let sales = analytics::stream_sales(&mut conn, stream.id).await?;
        let funnel = analytics::funnel(&mut conn, channel.id, Some(stream.id)).await?;
        export::stream_csv(
            &figures,
            &timeline,
            Some(Money {
                sales: &sales,
                funnel: &funnel,
            }),
        )?
    } else {
        export::stream_csv(&figures, &timeline, None)?
    };
    view::csv_download(body, &format!("stream-{}-analytics.csv", stream.id))
}

// ---------------------------------------------------------------------------
// A channel.

/// One stream in the channel overview's table.
pub struct StreamLine {
    pub id: i64,
    pub title: String,
    pub state: &'static str,
    pub started: Option<Moment>,
    pub figures: FigureView,
    /// "3 sold · $27.00", one per currency.
    pub sales: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/analytics/channel.html")]
pub struct ChannelAnalyticsPage {
    pub layout: Layout,
    pub channel: Channel,
    pub money: bool,
    pub stream_count: i64,
    pub figures: FigureView,
    pub sales: Vec<SalesRow>,
    pub funnel: Vec<FunnelRow>,
    pub streams: Vec<StreamLine>,
    pub revenue_charts: Vec<Chart>,
    pub revenue_days: i32,
}

fn state_of(status: &str) -> &'static str {
    match status {
        "live" => "Live",
        "ended" => "Ended",
        _ => "Not live yet",
    }
}

pub async fn channel_page(
    State(state): State<AppState>,
    TeamChannel { channel, role, .. }: TeamChannel<area::Analytics>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let may_see_money = role == Role::Owner;
    let (totals, per_stream) = analytics::channel_overview(&mut conn, channel.id).await?;
    let (sales, by_stream, funnel, per_day) = if may_see_money {
        (
            analytics::channel_sales(&mut conn, channel.id).await?,
            analytics::channel_sales_by_stream(&mut conn, channel.id).await?,
            analytics::funnel(&mut conn, channel.id, None).await?,
            analytics::revenue_per_day(&mut conn, channel.id).await?,
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new(), Vec::new())
    };
    drop(conn);
    let streams = per_stream
        .iter()
        .map(|f| StreamLine {
            id: f.stream_id,
            title: f.title.clone(),
            state: state_of(&f.status),
            started: f.started_at.map(Moment::new),
            figures: FigureView::of(f),
            sales: by_stream
                .iter()
                .filter(|s| s.stream_id == Some(f.stream_id))
                .map(|s| {
                    let free = if s.free > 0 {
                        format!(" ({} free)", s.free)
                    } else {
                        String::new()
                    };
                    format!(
                        "{} sold{free} · {}",
                        s.sold,
                        money(s.revenue_cents, &s.currency)
                    )
                })
                .collect(),
        })
        .collect();
    Ok(view::no_store(render(&ChannelAnalyticsPage {
        layout,
        money: may_see_money,
        stream_count: totals.streams,
        figures: FigureView::new(
            totals.peak_viewers,
            totals.unique_viewers,
            totals.watch_seconds,
            totals.average_watch_seconds,
            totals.chat_messages,
            totals.deleted_messages,
        ),
        sales: sales_rows(&sales),
        funnel: funnel_rows(&funnel),
        streams,
        revenue_charts: if may_see_money {
            revenue_charts(&per_day)?
        } else {
            Vec::new()
        },
        revenue_days: analytics::REVENUE_DAYS,
        channel,
    })?))
}

pub async fn channel_csv(
    State(state): State<AppState>,
    TeamChannel { channel, role, .. }: TeamChannel<area::Analytics>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let may_see_money = role == Role::Owner;
    let (totals, per_stream) = analytics::channel_overview(&mut conn, channel.id).await?;
    let body = if may_see_money {
        let sales = analytics::channel_sales(&mut conn, channel.id).await?;
        let by_stream = analytics::channel_sales_by_stream(&mut conn, channel.id).await?;
        let funnel = analytics::funnel(&mut conn, channel.id, None).await?;
        let per_day = analytics::revenue_per_day(&mut conn, channel.id).await?;
        export::channel_csv(
            &totals,
            &per_stream,
            Some(ChannelMoney {
                sales: &sales,
                by_stream: &by_stream,
                funnel: &funnel,
                per_day: &per_day,
            }),
        )?
    } else {
        export::channel_csv(&totals, &per_stream, None)?
    };
    view::csv_download(body, &format!("channel-{}-analytics.csv", channel.handle))
}
