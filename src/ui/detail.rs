//! The detail line under the explorer: everything about the selected probe that its row has
//! no room for at 80 columns — the full `provider:name`, its sites, its semaphore and its
//! argument names (the catalog's, else the note's specs); without a probe, the object and why it
//! shows none. Two rows when one is too narrow and the explorer has the focus.

use super::text::{fit, sanitize};
use super::Theme;
use crate::app::{App, ProbeView};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

const SEPARATOR: &str = " · ";

/// What the line says, in parts that a wrap keeps whole: the probe's name first.
pub fn parts(app: &App) -> Vec<String> {
    let ex = &app.explorer;
    let Some(probe) = ex.selected_probe() else {
        // No probe to describe: the object, and why it has none to show.
        let Some(o) = ex.selected_object() else {
            return Vec::new();
        };
        let why = match (&o.error, o.probes.is_empty()) {
            (Some(e), _) => format!("cannot read notes: {e}"),
            (None, true) => "no USDT probes".to_string(),
            (None, false) => "no probe matches the filter".to_string(),
        };
        return vec![sanitize(&o.path), sanitize(&why)];
    };
    let sites = match probe.sites {
        1 => "1 site".to_string(),
        n => format!("{n} sites"),
    };
    let semaphore = match probe.semaphore {
        Some(addr) => format!("semaphore: yes ({addr:#x})"),
        None => "semaphore: no".to_string(),
    };
    vec![
        sanitize(&probe.full_name()),
        sites,
        semaphore,
        args_text(app, &probe),
    ]
}

/// `args: query` from the catalog, else the first site's specs (`args: -4@%esi 8@%rdi`).
fn args_text(app: &App, probe: &ProbeView) -> String {
    if let Some(names) = app.live.catalog().args(&probe.full_name()) {
        if !names.is_empty() {
            let names: Vec<&str> = names.iter().map(|a| a.name.as_str()).collect();
            return format!("args: {}", names.join(", "));
        }
    }
    if probe.arg_specs.is_empty() && !probe.specs_vary {
        return "no arguments".to_string();
    }
    let mut text = format!("args: {}", sanitize(&probe.arg_specs.join(" ")));
    if probe.specs_vary {
        text.push_str(" (first site; the others differ)");
    }
    text
}

/// The parts laid out in lines of `width` columns, at most `max_rows` of them; what does not
/// fit is cut with `…`.
fn wrap(parts: &[String], width: usize, max_rows: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        let joined = lines
            .last()
            .map(|l| format!("{l}{SEPARATOR}{part}"))
            .filter(|j| j.chars().count() < width);
        match joined {
            Some(j) => *lines.last_mut().expect("joined to a line") = j,
            None if lines.len() < max_rows => lines.push(part.clone()),
            None => {
                let last = lines.last_mut().expect("max_rows is at least 1");
                *last = format!("{last}{SEPARATOR}{part}");
            }
        }
    }
    lines
        .into_iter()
        .map(|l| format!(" {}", fit(&l, width.saturating_sub(1))))
        .collect()
}

/// Rows the line needs at `width`: two when one is not enough and the explorer has the focus.
pub fn rows(app: &App, width: u16) -> u16 {
    let max = if app.focus.is_explorer() { 2 } else { 1 };
    wrap(&parts(app), width as usize, max).len().clamp(1, max) as u16
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let lines = wrap(
        &parts(app),
        area.width as usize,
        area.height.max(1) as usize,
    );
    let lines: Vec<Line> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i > 0 {
                return Line::styled(l, theme.dim());
            }
            // The name stands out; the rest of the first row is dim.
            let name_len = parts(app).first().map_or(0, |n| n.chars().count() + 1);
            let head: String = l.chars().take(name_len).collect();
            let rest: String = l.chars().skip(name_len).collect();
            Line::from(vec![
                Span::styled(head, theme.normal()),
                Span::styled(rest, theme.dim()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parts_share_a_row_while_they_fit_and_wrap_whole_to_the_next() {
        let p = parts(&["postgresql:query__start", "1 site", "semaphore: no"]);
        assert_eq!(
            wrap(&p, 80, 2),
            [" postgresql:query__start · 1 site · semaphore: no"]
        );
        assert_eq!(
            wrap(&p, 30, 2),
            [" postgresql:query__start", " 1 site · semaphore: no"]
        );
        // Out of rows: the last one takes the rest, cut.
        assert_eq!(wrap(&p, 30, 1), [" postgresql:query__start · 1 …"]);
        assert!(wrap(&[], 80, 2).is_empty());
    }
}
