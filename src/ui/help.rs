//! The `?` overlay: every key, grouped.

use super::Theme;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

const KEYS: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous pane"),
    ("1 … 6", "jump to a pane"),
    ("↑ ↓ j k PgUp PgDn", "move / scroll"),
    ("Home End g G", "first / last"),
    ("Enter", "open; drill into top row or bucket"),
    ("Esc", "step back (filter, drill-down, pane)"),
    ("Space", "attach / detach the selected probe"),
    ("/", "filter processes by name or pid"),
    ("s", "sort (processes or top table)"),
    ("w", "window 10s → 1m → all"),
    ("P", "follow the next start/done pair"),
    ("p", "pause / resume the request log"),
    ("c", "clear log and aggregations"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

pub fn draw(frame: &mut Frame, area: Rect, theme: &Theme) {
    let width = 60.min(area.width);
    let height = (KEYS.len() as u16 + 4).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    frame.render_widget(Clear, rect);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<20}"), theme.key()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(" ? or Esc closes this help", theme.dim()));
    let block = Block::bordered()
        .title(Span::styled(" usdtop keys ", theme.title(true)))
        .border_style(theme.border(true));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}
