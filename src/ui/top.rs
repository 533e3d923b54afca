//! The top table: request keys (URL, query...) by count, rate and latency.

use super::text::{col, rate, rcol, sanitize};
use super::{pane_block, scroll_start, Theme};
use crate::aggregate::{format_duration_ns, SortBy};
use crate::app::{App, Pane};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let live = &app.live;
    let sort = match live.top_sort {
        SortBy::Count => "count",
        SortBy::Rate => "rate",
        SortBy::P99 => "p99",
        SortBy::Key => "key",
    };
    let mut title = vec![Span::styled(
        format!("[{}] by {} ", live.window.label(), sort),
        theme.dim(),
    )];
    // Counts here come from the sampled stream (the kernel does not know the labels), scaled
    // by the sampling rate: say they are estimates. A call-shaped pair's rows come from the
    // kernel itself, exact.
    match live.sampling {
        Some(0) => title.push(Span::styled(" per call, from the kernel ", theme.filter())),
        Some(_) => {
            let label = live.sampling_label().unwrap_or_default();
            title.push(Span::styled(format!(" {label}, ≈ counts "), theme.filter()));
        }
        None => {}
    }
    let block = pane_block(Pane::Top, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    let num_w = 7;
    // Narrow (80 columns): the rate column goes so the keys keep some room.
    let with_rate = w >= 56;
    let ncols = if with_rate { 4 } else { 3 };
    let key_w = w.saturating_sub(ncols * (num_w + 1));
    let rate_col = |text: String| {
        if with_rate {
            format!(" {}", rcol(&text, num_w))
        } else {
            String::new()
        }
    };
    let mark = |s: SortBy, name: &str| {
        if live.top_sort == s {
            format!("{name}▾")
        } else {
            name.to_string()
        }
    };
    let mut lines = vec![Line::styled(
        format!(
            "{} {}{} {} {}",
            col(&mark(SortBy::Key, "KEY"), key_w),
            rcol(&mark(SortBy::Count, "COUNT"), num_w),
            rate_col(mark(SortBy::Rate, "RATE/s")),
            rcol("P50", num_w),
            rcol(&mark(SortBy::P99, "P99"), num_w),
        ),
        theme.dim(),
    )];
    let height = (inner.height as usize).saturating_sub(1);
    let rows = live.top_rows(usize::MAX);
    if rows.is_empty() {
        lines.push(Line::styled(" nothing yet", theme.dim()));
    }
    let cursor = live.top_cursor.index.min(rows.len().saturating_sub(1));
    let start = scroll_start(cursor, height);
    let key_filter = live.key_filter();
    for (i, r) in rows.iter().enumerate().skip(start).take(height) {
        let pct = |v: Option<u64>| v.map(format_duration_ns).unwrap_or_else(|| "-".into());
        let text = format!(
            "{} {}{} {} {}",
            col(&sanitize(&r.key), key_w),
            rcol(&r.count.to_string(), num_w),
            rate_col(rate(r.rate_per_s)),
            rcol(&pct(r.p50_ns), num_w),
            rcol(&pct(r.p99_ns), num_w),
        );
        let mut style = theme.normal();
        if key_filter == Some(r.key.as_str()) {
            style = theme.filter();
        }
        if i == cursor && app.focus == Pane::Top {
            style = style.patch(theme.selected(true));
        }
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
