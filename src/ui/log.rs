//! The request log: newest first, one line per event with its decoded arguments.

use super::text::{col, fit_left, format_args, rcol, sanitize, time_of_day};
use super::{pane_block, Theme};
use crate::aggregate::format_duration_ns;
use crate::app::{App, Pane};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let live = &app.live;
    let mut title = vec![Span::styled(
        format!("{} lines ", live.log_len()),
        theme.dim(),
    )];
    if let Some(label) = live.sampling_label() {
        title.push(Span::styled(format!(" {label} "), theme.filter()));
    }
    if live.paused_at.is_some() {
        title.push(Span::styled(
            format!(" PAUSED +{} ", live.unseen_since_pause()),
            theme.filter(),
        ));
    } else if live.log_scroll > 0 {
        title.push(Span::styled(
            format!(" ↓{} ", live.log_scroll),
            theme.filter(),
        ));
    }
    if !live.filters.is_empty() {
        title.push(Span::styled(
            format!(" {} ", super::filter_text(&live.filters)),
            theme.filter(),
        ));
    }
    let block = pane_block(Pane::Log, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let wide = inner.width >= 70;
    let entries = live.log_view(height.saturating_sub(1));
    let mut lines = Vec::with_capacity(height);
    lines.push(Line::styled(
        if wide {
            format!(
                "{} {} {} {} ARGS",
                col("TIME", 12),
                rcol("PID", 7),
                col("PROBE", 22),
                rcol("LATENCY", 8)
            )
        } else {
            format!(
                "{} {} {} ARGS",
                col("TIME", 12),
                col("PROBE", 16),
                rcol("LATENCY", 8)
            )
        },
        theme.dim(),
    ));
    if entries.is_empty() {
        let hint = if app.attached.is_empty() {
            " no probes attached: pick one in Probes and press Space"
        } else if !live.filters.is_empty() {
            " nothing matches the filter yet (Esc steps back)"
        } else {
            " waiting for events…"
        };
        lines.push(Line::styled(hint, theme.dim()));
    }
    for e in entries {
        let lat = e.latency_ns.map(format_duration_ns).unwrap_or_default();
        let pair = live.pair();
        let full = e.probe.full_name();
        let is_start = pair.is_some_and(|p| p.start == full);
        let is_done = pair.is_some_and(|p| p.done == full);
        // The label is shown on its own (below), so it is left out of the arguments.
        // (A done probe that repeats the label, like postgres query__done, drops it too.)
        let label_idx = if is_start {
            pair.and_then(|p| p.label).filter(|_| e.label.is_some())
        } else {
            e.label.as_deref().and_then(|l| {
                e.args.iter().position(|a| {
                    matches!(a, crate::probes::ArgValue::Str(_))
                        && a.key_text().as_deref() == Some(l)
                })
            })
        };
        let args = format_args(live.catalog(), e, label_idx);
        let mut spans = vec![Span::styled(
            format!("{} ", col(&time_of_day(e.ts_ns, app.wall_offset_ns), 12)),
            theme.dim(),
        )];
        if wide {
            spans.push(Span::raw(format!("{} ", rcol(&e.pid.to_string(), 7))));
            spans.push(Span::raw(format!(
                "{} ",
                col(&fit_left(&e.probe.name, 22), 22)
            )));
        } else {
            spans.push(Span::raw(format!(
                "{} ",
                col(&fit_left(&e.probe.name, 16), 16)
            )));
        }
        spans.push(Span::styled(format!("{} ", rcol(&lat, 8)), theme.latency()));
        if is_done || is_start {
            // Both ends of a request show its label (URL, query...) first, so they line up.
            if let Some(label) = &e.label {
                spans.push(Span::styled(
                    format!("{} ", sanitize(label)),
                    theme.header(),
                ));
            }
        }
        spans.push(Span::raw(args));
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
