//! The `?` overlay: every key of the key table, browsing keys first, then the filter's, then
//! how to close it.

use super::keymap::{keys_text, Mode, KEYS};
use super::Theme;
use crate::app::App;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = |b: &super::keymap::KeyBinding| {
        Line::from(vec![
            Span::styled(format!(" {:<20}", keys_text(b)), theme.key()),
            Span::raw(b.does),
        ])
    };
    let of = |modes: &'static [Mode]| {
        KEYS.iter()
            .filter(move |b| modes.contains(&b.mode))
            .map(line)
    };
    let mut lines: Vec<Line> = of(&[Mode::Always, Mode::Normal]).collect();
    lines.push(Line::raw(""));
    lines.extend(of(&[Mode::Filter]));
    lines.extend(of(&[Mode::Help]));
    if let Some(path) = &app.attach_path {
        lines.push(Line::raw(""));
        lines.push(Line::raw(format!(" attach path: {path}")));
    }
    let width = 60.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(Span::styled(" usdtop keys ", theme.title(true)))
        .border_style(theme.border(true));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}
