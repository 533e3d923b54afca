//! The latency histogram of the followed start/done pair: percentiles and log-bucket bars.

use super::text::{col, rcol, sanitize};
use super::{pane_block, scroll_start, Theme};
use crate::aggregate::format_duration_ns;
use crate::app::{App, DrillDown, Pane};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let live = &app.live;
    let mut title = vec![Span::styled(
        format!("[{}] ", live.window.label()),
        theme.dim(),
    )];
    if let Some(pair) = live.pair() {
        title.push(Span::styled(
            format!("{} → {} ", short(&pair.start), short(&pair.done)),
            theme.dim(),
        ));
    }
    if let Some(k) = live.key_filter() {
        title.push(Span::styled(format!(" {} ", sanitize(k)), theme.filter()));
    }
    let block = pane_block(Pane::Histogram, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(pair) = live.pair() else {
        let lines = vec![
            Line::styled(" no start/done pair followed yet:", theme.dim()),
            Line::styled(" attach a probe the catalog pairs", theme.dim()),
            Line::styled(" (e.g. node:http__server__request", theme.dim()),
            Line::styled("  and node:http__server__response)", theme.dim()),
        ];
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let s = live.summary();
    let d = format_duration_ns;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("n={} ", s.count), theme.header()),
            Span::raw(format!(
                "p50 {} p90 {} p99 {}",
                d(s.p50_ns),
                d(s.p90_ns),
                d(s.p99_ns)
            )),
        ]),
        Line::raw(format!("p99.9 {} max {}", d(s.p999_ns), d(s.max_ns))),
    ];
    let buckets = live.buckets();
    if buckets.is_empty() {
        let missing: Vec<&str> = [&pair.start, &pair.done]
            .into_iter()
            .filter(|name| !app.attached.keys().any(|k| &k.full_name() == *name))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            lines.push(Line::styled(
                " waiting for completed requests…",
                theme.dim(),
            ));
        } else {
            lines.push(Line::styled(
                format!(" attach {} too", missing.join(" and ")),
                theme.dim(),
            ));
        }
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let height = (inner.height as usize).saturating_sub(lines.len());
    let w = inner.width as usize;
    let label_w = 16;
    let count_w = 7;
    let bar_w = w.saturating_sub(label_w + count_w + 2);
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    let cursor = live.hist_cursor.index.min(buckets.len() - 1);
    let start = scroll_start(cursor, height);
    for (i, b) in buckets.iter().enumerate().skip(start).take(height) {
        let filled = ((b.count as f64 / max as f64) * bar_w as f64).ceil() as usize;
        let filled = if b.count > 0 { filled.max(1) } else { 0 };
        let label = format!("{}–{}", d(b.lo_ns), d(b.hi_ns));
        let mut label_style = theme.normal();
        let filtered = live.filters.iter().any(|f| {
            matches!(f, DrillDown::Latency { lo_ns, hi_ns } if *lo_ns == b.lo_ns && *hi_ns == b.hi_ns)
        });
        if filtered {
            label_style = theme.filter();
        }
        if i == cursor && app.focus == Pane::Histogram {
            label_style = theme.selected(true);
        }
        lines.push(Line::from(vec![
            Span::styled(col(&label, label_w), label_style),
            Span::raw(format!("{} ", rcol(&b.count.to_string(), count_w))),
            Span::styled("█".repeat(filled.min(bar_w)), theme.bar()),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// `node:http__server__request` → `http__server__request`.
fn short(full: &str) -> &str {
    full.split_once(':').map(|(_, n)| n).unwrap_or(full)
}
