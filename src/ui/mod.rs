//! Pure rendering of [`App`] into ratatui widgets, and the key map. Nothing here touches BPF or
//! changes state: `draw` reads the app, `keymap` turns keys into [`crate::app::Action`]s.

mod detail;
mod explorer;
mod help;
mod histogram;
pub mod keymap;
mod log;
pub mod text;
pub mod theme;
mod top;

pub use theme::Theme;

use crate::aggregate::format_duration_ns;
use crate::app::{App, DrillDown, Pane};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    let a = layout(area, app);
    draw_header(frame, a.header, app, theme);
    explorer::draw(frame, a.explorer, app, theme);
    detail::draw(frame, a.detail, app, theme);
    log::draw(frame, a.log, app, theme);
    histogram::draw(frame, a.histogram, app, theme);
    top::draw(frame, a.top, app, theme);
    draw_status(frame, a.status, app, theme);
    draw_footer(frame, a.footer, app, theme);
    if app.show_help {
        help::draw(frame, area, app, theme);
    }
}

/// Where each part of the screen goes.
struct Areas {
    header: Rect,
    explorer: Rect,
    /// The selected probe in full (name, sites, semaphore, arguments).
    detail: Rect,
    log: Rect,
    histogram: Rect,
    top: Rect,
    status: Rect,
    footer: Rect,
}

/// The explorer row (and under it the selected probe's detail line) gets most of the height
/// while one of its panes has the focus, the live panes otherwise; below 120 columns the live
/// panes stack so each stays readable at 80×24.
fn layout(area: Rect, app: &App) -> Areas {
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let explorer_pct = if app.focus.is_explorer() { 55 } else { 30 };
    let [upper, live] =
        Layout::vertical([Constraint::Percentage(explorer_pct), Constraint::Fill(1)]).areas(body);
    // The detail line's rows come out of the explorer's share, not the live panes'.
    let [explorer, detail] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(detail::rows(app, body.width)),
    ])
    .areas(upper);
    let (log, histogram, top) = if live.width >= 120 {
        let [log, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(live);
        let [hist, top] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Fill(1)]).areas(right);
        (log, hist, top)
    } else {
        let [log, bottom] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(live);
        let [hist, top] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(bottom);
        (log, hist, top)
    };
    Areas {
        header,
        explorer,
        detail,
        log,
        histogram,
        top,
        status,
        footer,
    }
}

/// Rows the histogram pane has for bars on a screen of `area` (borders and the two summary
/// lines taken off); the runtime tells the app so bucket merging matches what is drawn.
pub fn histogram_rows(area: Rect, app: &App) -> usize {
    (layout(area, app).histogram.height as usize)
        .saturating_sub(4)
        .max(1)
}

/// A bordered pane with its title; the focused pane is highlighted.
pub(crate) fn pane_block<'a>(
    pane: Pane,
    title: Vec<Span<'a>>,
    app: &App,
    theme: &Theme,
) -> Block<'a> {
    let focused = app.focus == pane;
    let mut spans = vec![Span::styled(
        format!(" {} ", pane.title()),
        theme.title(focused),
    )];
    spans.extend(title);
    Block::bordered()
        .border_style(theme.border(focused))
        .title(Line::from(spans))
}

/// First row to show so that `cursor` is visible in `height` rows.
pub(crate) fn scroll_start(cursor: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        cursor.saturating_sub(height - 1)
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let attached = app
        .attached
        .values()
        .filter(|s| matches!(s, crate::app::AttachState::Attached { .. }))
        .count();
    let mut spans = vec![
        Span::styled(" usdtop ", theme.header()),
        Span::raw(format!(
            " {} processes · {} attached · {} events/s",
            app.explorer.total_processes(),
            attached,
            text::rate(app.live.events_per_sec),
        )),
    ];
    if let Some(budget) = app.budget {
        spans.push(Span::raw(match app.sampled {
            Some((f, _)) if f < 0.999 => format!(
                " · sampled {:.0}% of the time (budget {:.0}%): counts ×{:.1}",
                f * 100.0,
                budget * 100.0,
                1.0 / f.max(1e-9)
            ),
            Some((_, cost)) => format!(
                " · budget {:.0}%: attached (cost ~{:.1}%)",
                budget * 100.0,
                cost * 100.0
            ),
            None => format!(" · budget {:.0}%", budget * 100.0),
        }));
    }
    if app.live.dropped > 0 {
        spans.push(Span::styled(
            format!(" · {} dropped", app.live.dropped),
            theme.error(),
        ));
    }
    if app.live.too_slow > 0 {
        spans.push(Span::styled(
            format!(" · {} dropped (UI too slow)", app.live.too_slow),
            theme.error(),
        ));
    }
    if app.live.unreadable > 0 {
        spans.push(Span::raw(format!(
            " · {} strings unreadable",
            app.live.unreadable
        )));
    }
    if app.live.mismatched_returns > 0 {
        spans.push(Span::raw(format!(
            " · {} mismatched returns",
            app.live.mismatched_returns
        )));
    }
    if !app.live.filters.is_empty() {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!(" filter: {} ", filter_text(&app.live.filters)),
            theme.filter(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The drill-down path as text: `/api/search › 8.39ms–16.8ms`.
pub fn filter_text(filters: &[DrillDown]) -> String {
    filters
        .iter()
        .map(|f| match f {
            DrillDown::Key(k) => text::sanitize(k),
            DrillDown::Latency { lo_ns, hi_ns } => format!(
                "{}–{}",
                format_duration_ns(*lo_ns),
                format_duration_ns(*hi_ns)
            ),
        })
        .collect::<Vec<_>>()
        .join(" › ")
}

fn draw_status(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = match &app.status {
        Some(s) => Line::from(Span::styled(
            format!(" {}", text::sanitize(&s.text)),
            if s.error { theme.error() } else { theme.info() },
        )),
        None => Line::from(""),
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The focused pane's keys and the global ones, from the key table.
fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut spans = Vec::new();
    for (k, what) in keymap::hints(app) {
        spans.push(Span::styled(format!(" {k}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), Style::new()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests;
