//! Charts drawn on the server as inline SVG: a line chart with one point
//! per batch (input rate, processing time, delays over time) and a bar
//! chart with one stacked bar per batch (where its time went). Colours
//! and sizes come from the stylesheet; every point and bar links to its
//! batch and carries a tooltip (`<title>`).

use super::html::{clock, escape};
use std::fmt::Write;

/// The drawing's size in SVG units; the stylesheet scales it to the page.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 170.0;
/// Room for the value labels (left) and the time labels (bottom).
const LEFT: f64 = 66.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One point of a [`line_chart`]: one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When (ms since the Unix epoch): the horizontal position.
    pub at_ms: i64,
    /// The value: the vertical position.
    pub value: f64,
    /// The tooltip, as plain text.
    pub title: String,
    /// Where the point links to.
    pub href: String,
}

/// One part of a stacked bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Its CSS class, which gives its colour (`ph-plan`).
    pub class: &'static str,
    /// Its size.
    pub value: f64,
}

/// One bar of a [`stacked_bars`] chart: one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The parts, bottom first.
    pub segments: Vec<Segment>,
    /// The tooltip, as plain text.
    pub title: String,
    /// Where the bar links to.
    pub href: String,
}

/// A figure with `title`, the average and maximum of the points (written
/// with `format`) and a line through `points`, oldest left. Points are
/// placed by time, so a stalled job shows as a gap.
pub fn line_chart(title: &str, format: fn(f64) -> String, points: &[Point]) -> String {
    let max = points.iter().map(|p| p.value).fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let first = points.iter().map(|p| p.at_ms).min().unwrap_or(0);
    let last = points.iter().map(|p| p.at_ms).max().unwrap_or(0);
    let x = |at: i64| {
        if last > first {
            // In floating point: the difference of two times from the wire
            // may not fit an i64.
            LEFT + (at as f64 - first as f64) / (last as f64 - first as f64) * plot_width()
        } else {
            LEFT + plot_width() / 2.0
        }
    };
    let y = |v: f64| TOP + plot_height() * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut svg = open(title);
    grid(&mut svg, top, format);
    if last > first {
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{LEFT}\" y=\"{}\">{}</text>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            HEIGHT - 6.0,
            clock(first),
            WIDTH - RIGHT,
            HEIGHT - 6.0,
            clock(last)
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.at_ms), y(p.value)))
        .collect();
    let _ = write!(
        svg,
        "<polyline class=\"line\" points=\"{}\"/>",
        line.join(" ")
    );
    for p in points {
        let _ = write!(
            svg,
            "<a href=\"{}\"><circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}</title></circle></a>",
            escape(&p.href),
            x(p.at_ms),
            y(p.value),
            escape(&p.title)
        );
    }
    svg.push_str("</svg>");
    let stat = if points.is_empty() {
        String::new()
    } else {
        let avg = points.iter().map(|p| p.value).sum::<f64>() / points.len() as f64;
        format!(
            " <span class=\"stat\">avg {} · max {}</span>",
            escape(&format(avg)),
            escape(&format(max))
        )
    };
    figure(title, &stat, &svg)
}

/// A figure with `title` and one stacked bar per entry of `bars`, oldest
/// left, equally spaced; values are written with `format`.
pub fn stacked_bars(title: &str, format: fn(f64) -> String, bars: &[Bar]) -> String {
    let total = |b: &Bar| b.segments.iter().map(|s| s.value.max(0.0)).sum::<f64>();
    let max = bars.iter().map(total).fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let mut svg = open(title);
    grid(&mut svg, top, format);
    let slot = plot_width() / bars.len().max(1) as f64;
    let width = (slot * 0.75).clamp(1.0, 24.0);
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - width) / 2.0;
        let _ = write!(
            svg,
            "<a href=\"{}\"><g class=\"bar\"><title>{}</title>",
            escape(&bar.href),
            escape(&bar.title)
        );
        let mut base = TOP + plot_height();
        for s in bar.segments.iter().filter(|s| s.value > 0.0) {
            let h = s.value / top * plot_height();
            base -= h;
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{base:.1}\" width=\"{width:.1}\" height=\"{h:.1}\"/>",
                s.class
            );
        }
        svg.push_str("</g></a>");
    }
    svg.push_str("</svg>");
    figure(title, "", &svg)
}

/// One horizontal bar split into `segments` in proportion, for a single
/// batch's phases.
pub fn strip(label: &str, segments: &[Segment]) -> String {
    let total: f64 = segments.iter().map(|s| s.value.max(0.0)).sum();
    let mut svg = format!(
        "<svg class=\"strip\" viewBox=\"0 0 {WIDTH} 24\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    let mut x = 0.0;
    if total > 0.0 {
        for s in segments.iter().filter(|s| s.value > 0.0) {
            let w = s.value / total * WIDTH;
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"24\"/>",
                s.class
            );
            x += w;
        }
    }
    svg.push_str("</svg>");
    svg
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn open(title: &str) -> String {
    format!(
        "<svg class=\"plot\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    )
}

/// Horizontal lines at 0, half and the top, labelled.
fn grid(svg: &mut String, top: f64, format: fn(f64) -> String) {
    for fraction in [0.0, 0.5, 1.0] {
        let y = TOP + plot_height() * (1.0 - fraction);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&format(top * fraction))
        );
    }
}

fn figure(title: &str, stat: &str, svg: &str) -> String {
    format!(
        "<figure class=\"chart\"><figcaption>{}{stat}</figcaption>{svg}</figure>",
        escape(title)
    )
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least
/// `max` (1 for nothing to show), so that axis labels are round.
fn nice_ceiling(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: i64, value: f64) -> Point {
        Point {
            at_ms,
            value,
            title: format!("<{value}>"),
            href: "/jobs/a/batches/1".into(),
        }
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
    }

    #[test]
    fn a_line_chart_has_one_point_per_entry_and_escapes_titles() {
        let points: Vec<Point> = (0..5).map(|i| point(1_000 * i, i as f64)).collect();
        let svg = line_chart("rate", |v| format!("{v}"), &points);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("&lt;4&gt;") && !svg.contains("<4>"));
        assert!(svg.contains("avg 2 · max 4"));
        // Oldest at the left edge, newest at the right one.
        assert!(svg.contains(&format!("cx=\"{LEFT:.1}\"")));
        assert!(svg.contains(&format!("cx=\"{:.1}\"", WIDTH - RIGHT)));
    }

    #[test]
    fn one_point_or_none_still_draws() {
        let one = line_chart("x", |v| format!("{v}"), &[point(5, 0.0)]);
        assert_eq!(one.matches("<circle").count(), 1);
        let none = line_chart("x", |v| format!("{v}"), &[]);
        assert_eq!(none.matches("<circle").count(), 0);
        assert!(none.ends_with("</svg></figure>"));
    }

    #[test]
    fn stacked_bars_skip_empty_segments() {
        let bars = vec![
            Bar {
                segments: vec![
                    Segment {
                        class: "ph-a",
                        value: 2.0,
                    },
                    Segment {
                        class: "ph-b",
                        value: 0.0,
                    },
                ],
                title: "one".into(),
                href: "/1".into(),
            },
            Bar {
                segments: vec![],
                title: "two".into(),
                href: "/2".into(),
            },
        ];
        let svg = stacked_bars("phases", |v| format!("{v}"), &bars);
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 2);
        assert_eq!(svg.matches("<rect").count(), 1);
        let s = strip("phases", &bars[0].segments);
        assert!(s.contains("width=\"640.0\""));
    }
}
