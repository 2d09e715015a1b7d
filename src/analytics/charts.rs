//! The analytics charts, drawn on the server as SVG with plotters, plus the
//! same numbers as a table: a page shows both, so the chart needs no
//! JavaScript and the figures are there for screen readers and copy-paste.
//!
//! plotters runs without a font backend (no font files on servers): text is
//! laid out with its built-in estimate of glyph widths and written as SVG
//! `<text>` elements that the browser draws in its own sans-serif font, so
//! labels may sit a few pixels off the estimate but always render. Nothing a
//! user typed goes into the drawing (axes show times, dates and numbers);
//! the title and description we add are escaped here, and plotters escapes
//! its own text and attributes.
//!
//! Each data series is one `<polyline class="series">` with exactly one
//! point per value, in order, so the number of points can be checked.
//! This module must not query the database: callers pass the numbers.

use plotters::prelude::*;

pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 260;

/// Series colours, in order (distinct from the axis greys, so each series
/// polyline can be recognised in the output).
const PALETTE: [(u8, u8, u8); 4] = [
    (0x1F, 0x6F, 0xEB),
    (0xD9, 0x48, 0x1C),
    (0x1A, 0x7F, 0x37),
    (0x82, 0x50, 0xDF),
];

/// One line of a chart: a name and one value per x position.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// What the y axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// People, messages: whole numbers.
    Count,
    /// Amounts in a currency's major unit (two decimals).
    Money,
}

/// A chart ready for a page: the SVG markup (already escaped, see module
/// doc) and its numbers as a table.
pub struct Chart {
    /// The figure's HTML id; also prefixes the SVG's title and desc ids.
    pub id: String,
    /// Shown as the figure's caption and the SVG's `<title>`.
    pub title: String,
    /// A sentence summarising it, the SVG's `<desc>`.
    pub summary: String,
    pub svg: String,
    pub table: DataTable,
}

/// The numbers behind a chart: one row per x position.
pub struct DataTable {
    pub caption: String,
    /// Column headings; the first heads the row headings (time or day).
    pub columns: Vec<String>,
    pub rows: Vec<DataRow>,
}

pub struct DataRow {
    pub head: String,
    pub cells: Vec<String>,
}

/// A line chart of `series` over `x_labels` (one label per point; the axis
/// shows a few of them).
pub fn line_chart(
    id: &str,
    title: &str,
    summary: &str,
    x_desc: &str,
    x_labels: &[String],
    series: &[Series],
    unit: Unit,
) -> anyhow::Result<Chart> {
    let svg = draw(x_desc, x_labels, series, unit)
        .map_err(|e| anyhow::anyhow!("drawing chart {id}: {e}"))?;
    let svg = accessible(&svg, id, title, summary, series);
    let format = |v: f64| match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Money => format!("{v:.2}"),
    };
    let table = DataTable {
        caption: title.to_owned(),
        columns: std::iter::once(x_desc.to_owned())
            .chain(series.iter().map(|s| s.name.clone()))
            .collect(),
        rows: x_labels
            .iter()
            .enumerate()
            .map(|(i, label)| DataRow {
                head: label.clone(),
                cells: series
                    .iter()
                    .map(|s| s.values.get(i).copied().map(format).unwrap_or_default())
                    .collect(),
            })
            .collect(),
    };
    Ok(Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        summary: summary.to_owned(),
        svg,
        table,
    })
}

fn draw(
    x_desc: &str,
    x_labels: &[String],
    series: &[Series],
    unit: Unit,
) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let points = x_labels.len().max(1);
    let highest = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    // Counts get whole-number gridlines; money some headroom.
    let (top, y_labels) = match unit {
        Unit::Count => {
            let top = highest.ceil().max(1.0) + 1.0;
            (top, (top as usize + 1).min(6))
        }
        Unit::Money => (if highest > 0.0 { highest * 1.15 } else { 1.0 }, 5),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        // No background of its own: the page's theme shows through, and the
        // page's CSS colours the text and axes (`.chart-svg`, app.css).
        root.fill(&TRANSPARENT).map_err(|e| err(&e))?;
        let x_end = (points as i32 - 1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0i32..x_end, 0f64..top)
            .map_err(|e| err(&e))?;
        let x_label = |i: &i32| {
            x_labels
                .get(usize::try_from(*i).unwrap_or(usize::MAX))
                .cloned()
                .unwrap_or_default()
        };
        let y_label = |v: &f64| match unit {
            Unit::Count => format!("{v:.0}"),
            Unit::Money => format!("{v:.2}"),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(points.clamp(2, 8))
            .y_labels(y_labels)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc(x_desc)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(0x3A, 0x40, 0x4C))
            .axis_style(RGBColor(0x8A, 0x93, 0xA3))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.values.iter().enumerate().map(|(x, y)| (x as i32, *y)),
                    RGBColor(r, g, b).stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Makes plotters' SVG an accessible image: `role="img"`, a `<title>` and
/// `<desc>` it is labelled by, a scalable size, and each series' polyline
/// marked `class="series"` with its name.
fn accessible(svg: &str, id: &str, title: &str, summary: &str, series: &[Series]) -> String {
    let id = escape(id);
    let mut out = svg.replacen(
        &format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" "),
        &format!(
            "<svg class=\"chart-svg\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" \
             width=\"100%\" preserveAspectRatio=\"xMidYMid meet\" "
        ),
        1,
    );
    if let Some(end) = out.find('>') {
        out.insert_str(
            end + 1,
            &format!(
                "\n<title id=\"{id}-title\">{}</title>\n<desc id=\"{id}-desc\">{}</desc>",
                escape(title),
                escape(summary)
            ),
        );
    }
    for (i, s) in series.iter().enumerate() {
        let (r, g, b) = PALETTE[i % PALETTE.len()];
        let plain =
            format!("<polyline fill=\"none\" opacity=\"1\" stroke=\"#{r:02X}{g:02X}{b:02X}\"");
        let marked = format!(
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" opacity=\"1\" stroke=\"#{r:02X}{g:02X}{b:02X}\"",
            escape(&s.name)
        );
        // Only this series' own line (drawn last in its colour).
        if let Some(at) = out.rfind(&plain) {
            out.replace_range(at..at + plain.len(), &marked);
        }
    }
    out
}

/// Escapes text for SVG/XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points_of(svg: &str) -> Vec<usize> {
        svg.match_indices("<polyline class=\"series\"")
            .map(|(at, _)| {
                let rest = &svg[at..];
                let start = rest.find("points=\"").unwrap() + 8;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end].split_whitespace().count()
            })
            .collect()
    }

    #[test]
    fn one_point_per_value_with_title_and_text_labels() {
        let labels: Vec<String> = (0..61).map(|m| format!("18:{m:02}")).collect();
        let chart = line_chart(
            "viewers-chart",
            "Viewers <per> minute",
            "Peak 3 & more",
            "Time (UTC)",
            &labels,
            &[Series {
                name: "Viewers".into(),
                values: (0..61).map(|i| (i % 4) as f64).collect(),
            }],
            Unit::Count,
        )
        .unwrap();
        assert_eq!(points_of(&chart.svg), vec![61]);
        assert!(chart.svg.contains("role=\"img\""));
        assert!(
            chart
                .svg
                .contains("<title id=\"viewers-chart-title\">Viewers &lt;per&gt; minute</title>")
        );
        assert!(chart.svg.contains("Peak 3 &amp; more"));
        // Text renders without a font backend: axis labels are <text> elements.
        assert!(chart.svg.contains("<text"), "{}", chart.svg);
        assert!(chart.svg.contains("18:00"));
        // Nothing the page's CSP (style-src 'self') would refuse.
        assert!(!chart.svg.contains("style="));
        assert_eq!(chart.table.rows.len(), 61);
    }

    #[test]
    fn single_point_and_several_series() {
        let chart = line_chart(
            "revenue",
            "Revenue",
            "",
            "Day",
            &["2026-11-22".to_owned()],
            &[
                Series {
                    name: "USD".into(),
                    values: vec![9.0],
                },
                Series {
                    name: "EUR".into(),
                    values: vec![0.0],
                },
            ],
            Unit::Money,
        )
        .unwrap();
        assert_eq!(points_of(&chart.svg), vec![1, 1]);
        assert_eq!(chart.table.columns, vec!["Day", "USD", "EUR"]);
        assert_eq!(chart.table.rows[0].cells, vec!["9.00", "0.00"]);
    }
}
