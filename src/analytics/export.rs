//! The analytics as CSV: one long table with the same columns on every row
//! (`section, stream_id, stream_title, metric, time, currency, value`), so a
//! spreadsheet can filter and pivot it. Numbers are plain: seconds, counts,
//! amounts as decimals in their currency (never added across currencies).
//!
//! Stream titles are user text: a cell starting with `= + - @` (or a tab or
//! carriage return) gets a leading apostrophe so spreadsheets show it as
//! text instead of running it as a formula. This module only formats what it
//! is given; who may download it (and whether money is included) is decided
//! by the caller.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Bucket, ChannelTotals, DayRevenue, FunnelStep, Sales, StreamFigures, decimal};

pub const COLUMNS: [&str; 7] = [
    "section",
    "stream_id",
    "stream_title",
    "metric",
    "time",
    "currency",
    "value",
];

/// A cell a spreadsheet will not run as a formula.
pub fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Rows being written.
struct Sheet(Vec<[String; 7]>);

impl Sheet {
    fn row(
        &mut self,
        section: &str,
        stream: Option<(&i64, &str)>,
        metric: &str,
        at: &str,
        currency: &str,
        value: String,
    ) {
        self.0.push([
            section.to_owned(),
            stream.map(|(id, _)| id.to_string()).unwrap_or_default(),
            stream.map(|(_, title)| cell(title)).unwrap_or_default(),
            metric.to_owned(),
            at.to_owned(),
            currency.to_owned(),
            value,
        ]);
    }

    fn stream(&mut self, section: &str, f: &StreamFigures) {
        let s = Some((&f.stream_id, f.title.as_str()));
        self.row(section, s, "status", "", "", f.status.clone());
        if let Some(t) = &f.started_at {
            self.row(section, s, "started_at", &time(t), "", String::new());
        }
        if let Some(t) = &f.ended_at {
            self.row(section, s, "ended_at", &time(t), "", String::new());
        }
        self.figures(
            section,
            s,
            &[
                ("peak_concurrent_viewers", Some(f.peak_viewers)),
                ("unique_viewers", Some(f.unique_viewers)),
                ("total_watch_seconds", Some(f.watch_seconds)),
                ("average_watch_seconds", f.average_watch_seconds),
                ("chat_messages", Some(f.chat_messages)),
                ("chat_messages_deleted", Some(f.deleted_messages)),
            ],
        );
    }

    fn figures(&mut self, section: &str, s: Option<(&i64, &str)>, figures: &[(&str, Option<i64>)]) {
        for (metric, value) in figures {
            self.row(
                section,
                s,
                metric,
                "",
                "",
                value.map(|v| v.to_string()).unwrap_or_default(),
            );
        }
    }

    fn sales(&mut self, section: &str, s: Option<(&i64, &str)>, sales: &[&Sales]) {
        for x in sales {
            self.row(
                section,
                s,
                "passes_sold",
                "",
                &x.currency,
                x.sold.to_string(),
            );
            self.row(
                section,
                s,
                "free_passes",
                "",
                &x.currency,
                x.free.to_string(),
            );
            self.row(
                section,
                s,
                "revenue",
                "",
                &x.currency,
                decimal(x.revenue_cents),
            );
        }
    }

    fn funnel(&mut self, s: Option<(&i64, &str)>, funnel: &[FunnelStep]) {
        for step in funnel {
            self.row("funnel", s, &step.step, "", "", step.visitors.to_string());
            self.row(
                "funnel",
                s,
                &format!("{}_percent_of_previous", step.step),
                "",
                "",
                step.of_previous
                    .map(|p| format!("{p:.1}"))
                    .unwrap_or_default(),
            );
        }
    }

    fn finish(self) -> anyhow::Result<Vec<u8>> {
        let failed = |e: csv::Error| anyhow::Error::new(e).context("writing analytics CSV");
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(COLUMNS).map_err(failed)?;
        for row in &self.0 {
            out.write_record(row).map_err(failed)?;
        }
        out.into_inner()
            .map_err(|e| anyhow::anyhow!("writing analytics CSV: {e}"))
    }
}

/// What only the channel's owner sees: sales and the funnel.
pub struct Money<'a> {
    pub sales: &'a [Sales],
    pub funnel: &'a [FunnelStep],
}

/// One stream: its figures, per-minute timeline, and (owners) money.
pub fn stream_csv(
    figures: &StreamFigures,
    timeline: &[Bucket],
    money: Option<Money<'_>>,
) -> anyhow::Result<Vec<u8>> {
    let mut sheet = Sheet(Vec::new());
    let s = Some((&figures.stream_id, figures.title.as_str()));
    sheet.stream("summary", figures);
    if let Some(m) = money {
        sheet.sales("sales", s, &m.sales.iter().collect::<Vec<_>>());
        sheet.funnel(s, m.funnel);
    }
    for b in timeline {
        let at = time(&b.at);
        sheet.row(
            "per_minute",
            s,
            "viewers_during_minute",
            &at,
            "",
            b.viewers.to_string(),
        );
        sheet.row(
            "per_minute",
            s,
            "chat_messages",
            &at,
            "",
            b.messages.to_string(),
        );
    }
    sheet.finish()
}

/// What only the owner sees on the channel overview.
pub struct ChannelMoney<'a> {
    pub sales: &'a [Sales],
    pub by_stream: &'a [Sales],
    pub funnel: &'a [FunnelStep],
    pub per_day: &'a [DayRevenue],
}

/// A channel: totals, every stream's figures, and (owners) money.
pub fn channel_csv(
    totals: &ChannelTotals,
    streams: &[StreamFigures],
    money: Option<ChannelMoney<'_>>,
) -> anyhow::Result<Vec<u8>> {
    let mut sheet = Sheet(Vec::new());
    sheet.figures(
        "channel",
        None,
        &[
            ("streams", Some(totals.streams)),
            ("highest_peak_concurrent_viewers", Some(totals.peak_viewers)),
            ("unique_viewers", Some(totals.unique_viewers)),
            ("total_watch_seconds", Some(totals.watch_seconds)),
            ("average_watch_seconds", totals.average_watch_seconds),
            ("chat_messages", Some(totals.chat_messages)),
            ("chat_messages_deleted", Some(totals.deleted_messages)),
        ],
    );
    if let Some(m) = &money {
        sheet.sales("channel_sales", None, &m.sales.iter().collect::<Vec<_>>());
        sheet.funnel(None, m.funnel);
    }
    for f in streams {
        sheet.stream("stream", f);
        if let Some(m) = &money {
            let own: Vec<&Sales> = m
                .by_stream
                .iter()
                .filter(|x| x.stream_id == Some(f.stream_id))
                .collect();
            sheet.sales("stream", Some((&f.stream_id, f.title.as_str())), &own);
        }
    }
    if let Some(m) = &money {
        for d in m.per_day.iter().filter(|d| d.currency.is_some()) {
            let day = d.day.to_string();
            let currency = d.currency.as_deref().unwrap_or_default();
            sheet.row(
                "revenue_per_day",
                None,
                "passes_sold",
                &day,
                currency,
                d.sold.to_string(),
            );
            sheet.row(
                "revenue_per_day",
                None,
                "revenue",
                &day,
                currency,
                decimal(d.revenue_cents),
            );
        }
    }
    sheet.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_never_start_a_formula() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("Friday session"), "Friday session");
    }

    #[test]
    fn a_stream_sheet_has_one_shape_and_guards_the_title() {
        let f = StreamFigures {
            stream_id: 4,
            title: "=cmd|' /C calc'!A0".into(),
            status: "ended".into(),
            started_at: None,
            ended_at: None,
            peak_viewers: 2,
            unique_viewers: 3,
            guest_viewers: 1,
            watch_seconds: 90,
            average_watch_seconds: Some(30),
            chat_messages: 5,
            deleted_messages: 1,
        };
        let bytes = stream_csv(&f, &[], None).unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(reader.headers().unwrap(), COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert!(rows.iter().all(|r| r.len() == COLUMNS.len()));
        assert!(rows.iter().all(|r| &r[2] == "'=cmd|' /C calc'!A0"));
        let value = |m: &str| rows.iter().find(|r| &r[3] == m).map(|r| r[6].to_owned());
        assert_eq!(value("unique_viewers").as_deref(), Some("3"));
        assert_eq!(value("total_watch_seconds").as_deref(), Some("90"));
        // No money without the owner's share of it.
        assert!(value("revenue").is_none());
    }
}
