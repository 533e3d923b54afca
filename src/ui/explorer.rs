//! The explorer row: processes │ objects of the selected process │ probes of the selected object.

use super::text::{col, fit_left, rate, rcol, sanitize};
use super::{pane_block, scroll_start, Theme};
use crate::app::{App, AttachState, Pane};
use crate::probes::ProbeKey;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [procs, objs, probes] = Layout::horizontal([
        Constraint::Percentage(26),
        Constraint::Percentage(32),
        Constraint::Fill(1),
    ])
    .areas(area);
    draw_processes(frame, procs, app, theme);
    draw_objects(frame, objs, app, theme);
    draw_probes(frame, probes, app, theme);
}

fn draw_processes(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let ex = &app.explorer;
    // The filter first: a narrow pane cuts its title from the right.
    let mut title: Vec<Span> = filter_span(app, Pane::Processes, theme)
        .into_iter()
        .collect();
    title.push(Span::styled(
        format!(
            "{}/{} by {} ",
            ex.process_count(),
            ex.total_processes(),
            ex.sort.label()
        ),
        theme.dim(),
    ));
    let block = pane_block(Pane::Processes, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    let comm_w = w.saturating_sub(7 + 1 + 1 + 4);
    let mut lines = vec![Line::styled(
        format!("{}{} {}", rcol("PID", 7), " ", col("COMMAND", comm_w)) + &rcol("PRB", 4),
        theme.dim(),
    )];
    let height = inner.height.saturating_sub(1) as usize;
    if !ex.loaded {
        lines.push(Line::styled(" scanning /proc…", theme.dim()));
    }
    let start = scroll_start(ex.proc_cursor.index, height);
    for (i, p) in ex.processes().enumerate().skip(start).take(height) {
        let n = p.probe_count();
        // `?`: a runtime without probes, and the status line says why.
        let count = match (n, &p.hint) {
            (0, Some(_)) => "?".to_string(),
            (0, None) => "·".to_string(),
            (n, _) => n.to_string(),
        };
        let text = format!(
            "{}  {}{}",
            rcol(&p.pid.to_string(), 7),
            col(&sanitize(&p.comm), comm_w),
            rcol(&count, 4)
        );
        let mut style = if n == 0 { theme.dim() } else { theme.normal() };
        if i == ex.proc_cursor.index {
            style = style.patch(theme.selected(app.focus == Pane::Processes));
        }
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_objects(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let ex = &app.explorer;
    let objects = ex.objects();
    let mut title: Vec<Span> = filter_span(app, Pane::Objects, theme).into_iter().collect();
    if !ex.filters.objects.is_empty() {
        title.push(Span::styled(
            format!("{}/{} ", objects.len(), ex.total_objects()),
            theme.dim(),
        ));
    }
    if let Some(p) = ex.selected_process() {
        title.push(Span::styled(
            format!("of {} {} ", p.pid, sanitize(&p.comm)),
            theme.dim(),
        ));
    }
    let block = pane_block(Pane::Objects, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    let path_w = w.saturating_sub(5);
    let height = inner.height as usize;
    let start = scroll_start(ex.obj_cursor.index, height);
    let mut lines = Vec::new();
    if objects.is_empty() && ex.selected_process().is_some() {
        let why = if ex.filters.objects.is_empty() {
            " no mapped objects readable"
        } else {
            " no object matches the filter"
        };
        lines.push(Line::styled(why, theme.dim()));
    }
    for (i, o) in objects.iter().enumerate().skip(start).take(height) {
        let count = if o.error.is_some() {
            "!".to_string()
        } else if o.probes.is_empty() {
            "·".to_string()
        } else {
            o.probes.len().to_string()
        };
        let text = format!(
            "{} {}",
            col(&fit_left(&sanitize(&o.path), path_w), path_w),
            rcol(&count, 4)
        );
        let mut style = if o.error.is_some() {
            theme.error()
        } else if o.probes.is_empty() {
            theme.dim()
        } else {
            theme.normal()
        };
        if i == ex.obj_cursor.index {
            style = style.patch(theme.selected(app.focus == Pane::Objects));
        }
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_probes(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let ex = &app.explorer;
    let object = ex.selected_object();
    let probes = ex.probes();
    let mut title: Vec<Span> = filter_span(app, Pane::Probes, theme).into_iter().collect();
    if let (Some(o), false) = (&object, ex.filters.probes.is_empty()) {
        title.push(Span::styled(
            format!("{}/{} ", probes.len(), o.probes.len()),
            theme.dim(),
        ));
    }
    if let Some(o) = &object {
        title.push(Span::styled(
            format!("in {} ", fit_left(&sanitize(&o.path), 30)),
            theme.dim(),
        ));
    }
    let block = pane_block(Pane::Probes, title, app, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    // marker(2) name, sites(4), semaphore(2), args(3), rate(7)
    let name_w = w.saturating_sub(2 + 4 + 2 + 3 + 7);
    let mut lines = vec![Line::styled(
        format!(
            "  {}{} S{}{}",
            col("PROBE", name_w),
            rcol("SITE", 4),
            rcol("ARG", 3),
            rcol("HIT/s", 7)
        ),
        theme.dim(),
    )];
    let height = inner.height.saturating_sub(1) as usize;
    if let Some(err) = object.as_ref().and_then(|o| o.error.clone()) {
        lines.push(Line::styled(
            format!(" cannot read notes: {}", sanitize(&err)),
            theme.error(),
        ));
    } else if let (true, Some(o)) = (probes.is_empty(), &object) {
        if !o.probes.is_empty() {
            lines.push(Line::styled(" no probe matches the filter", theme.dim()));
        } else if let Some(hint) = ex.selected_process().and_then(|p| p.hint.as_ref()) {
            // A runtime without probes: say why where the probes would be.
            let hint = Line::styled(sanitize(hint), theme.info());
            let text = Paragraph::new(hint).wrap(Wrap { trim: false });
            frame.render_widget(text, inner);
            return;
        } else {
            lines.push(Line::styled(" no USDT probes in this object", theme.dim()));
        }
    }
    let start = scroll_start(ex.probe_cursor.index, height);
    for (i, p) in probes.iter().enumerate().skip(start).take(height) {
        let key = object.as_ref().map(|o| ProbeKey {
            path: o.path.clone(),
            provider: p.provider.clone(),
            name: p.name.clone(),
        });
        let state = key.as_ref().and_then(|k| app.attach_state(k));
        let (marker, mut style) = match state {
            Some(AttachState::Attached { .. }) => ("● ", theme.attached()),
            Some(AttachState::Pending) => ("… ", theme.normal()),
            Some(AttachState::Failed(_)) => ("✗ ", theme.error()),
            None => ("  ", theme.normal()),
        };
        let hits = match (state, key.as_ref().and_then(|k| app.live.hit_rate(k))) {
            (Some(AttachState::Attached { .. }), Some(h)) => rate(h.per_sec),
            (Some(AttachState::Attached { .. }), None) => "0".into(),
            _ => String::new(),
        };
        let text = format!(
            "{marker}{}{} {}{}{}",
            // Narrow: the provider is in every row's object anyway; the name matters more.
            col(
                &sanitize(&if p.full_name().chars().count() > name_w {
                    p.name.clone()
                } else {
                    p.full_name()
                }),
                name_w
            ),
            rcol(&p.sites.to_string(), 4),
            if p.semaphore.is_some() { "S" } else { " " },
            rcol(&p.args.to_string(), 3),
            rcol(&hits, 7)
        );
        if i == ex.probe_cursor.index {
            style = style.patch(theme.selected(app.focus == Pane::Probes));
        }
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The `/` filter of `pane` in its title, while it is typed or kept.
fn filter_span(app: &App, pane: Pane, theme: &Theme) -> Option<Span<'static>> {
    let ex = &app.explorer;
    let editing = ex.editing == Some(pane);
    let filter = ex.filters.of(pane)?;
    if !editing && filter.is_empty() {
        return None;
    }
    Some(Span::styled(
        format!(
            " /{}{} ",
            sanitize(&filter.text),
            if editing { "▏" } else { "" }
        ),
        theme.filter(),
    ))
}
