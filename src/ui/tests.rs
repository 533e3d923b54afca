//! What the screen shows, drawn into ratatui's `TestBackend` (no terminal needed).

use super::*;
use crate::app::fixtures::*;
use crate::app::{Action, App};
use crate::probes::tracing::event::StrValue;
use crate::probes::ArgValue;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn render(app: &App, w: u16, h: u16, theme: Theme) -> (String, ratatui::buffer::Buffer) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, &theme)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        for x in 0..w {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    (text, buf)
}

fn screen(app: &App) -> String {
    render(app, 120, 40, Theme::plain()).0
}

#[test]
fn explorer_lists_processes_objects_and_probes_with_badges() {
    let mut app = app();
    step(&mut app, Action::Enter);
    step(&mut app, Action::Enter);
    let s = screen(&app);
    assert!(s.contains("demo"), "{s}");
    assert!(s.contains("/usr/bin/demo"), "{s}");
    assert!(s.contains("node:http__server__request"), "{s}");
    // sites, semaphore badge, arg count
    assert!(
        s.contains("node:http__server__request") && s.contains(" S  7"),
        "{s}"
    );
    assert!(s.contains("/usr/lib/libc.so.6"), "{s}");
}

#[test]
fn live_panes_show_log_histogram_and_top_table() {
    let app = app_with_traffic();
    let s = screen(&app);
    assert!(s.contains("Request log"), "{s}");
    assert!(s.contains("/slow method=GET"), "{s}");
    assert!(s.contains("n=4"), "{s}");
    assert!(s.contains("█"), "{s}");
    assert!(s.contains("/fast"), "{s}");
    assert!(s.contains("P99"), "{s}");
    // attached probes carry a marker and the header counts them
    assert!(s.contains("2 attached"), "{s}");
}

#[test]
fn a_drill_down_is_always_visible_in_the_header() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Focus(crate::app::Pane::Top));
    step(&mut app, Action::Down);
    step(&mut app, Action::Enter);
    let s = screen(&app);
    assert!(s.lines().next().unwrap().contains("filter: /slow"), "{s}");
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut app = app();
    step(&mut app, Action::ToggleHelp);
    let s = screen(&app);
    assert!(s.contains("usdtop keys"), "{s}");
    assert!(s.contains("attach / detach the selected probe"), "{s}");
}

#[test]
fn eighty_by_twenty_four_shows_every_pane_and_the_key_hints() {
    let app = app_with_traffic();
    let (s, _) = render(&app, 80, 24, Theme::plain());
    for title in [
        "Processes",
        "Objects",
        "Probes",
        "Request log",
        "Latency",
        "Top",
    ] {
        assert!(s.contains(title), "{title} missing:\n{s}");
    }
    assert!(s.lines().last().unwrap().contains("q quit"), "{s}");
}

#[test]
fn an_ansi_escape_in_a_traced_url_cannot_reach_the_terminal() {
    let mut app = app_with_traffic();
    let mut ev = request(1300, 9, "/x");
    ev.args[5] = ArgValue::Str("/evil\x1b[2J\x1b]0;pwned\x07".into());
    step(&mut app, Action::Events(vec![ev]));
    let (s, buf) = render(&app, 200, 40, Theme::plain());
    assert!(s.contains("/evil\\x1b[2J\\x1b]0;pwned\\x07"), "{s}");
    assert!(buf.content().iter().all(|c| !c.symbol().contains('\x1b')));
}

#[test]
fn bidi_controls_invisible_characters_and_bad_bytes_are_drawn_as_escapes() {
    let mut app = app_with_traffic();
    let mut ev = request(1300, 9, "/x");
    // The label (URL) and another string argument (the method).
    ev.args[5] = ArgValue::Str("/\u{202e}x\u{2066}\u{200b}".into());
    ev.args[4] = ArgValue::Str(StrValue::new(b"GE\xff\xe2\x80\x8fT".to_vec(), false));
    step(&mut app, Action::Events(vec![ev]));
    let (s, buf) = render(&app, 200, 40, Theme::plain());
    assert!(s.contains("/\\u{202e}x\\u{2066}\\u{200b}"), "{s}");
    assert!(s.contains("method=GE\\xff\\u{200f}T"), "{s}");
    let drawn: String = buf.content().iter().map(|c| c.symbol()).collect();
    for c in ['\u{202e}', '\u{2066}', '\u{200b}', '\u{200f}', '\u{fffd}'] {
        assert!(!drawn.contains(c), "{c:?} reached the screen");
    }
}

#[test]
fn no_color_draws_without_colours() {
    let app = app_with_traffic();
    let (_, buf) = render(&app, 120, 40, Theme::plain());
    assert!(buf
        .content()
        .iter()
        .all(|c| c.fg == ratatui::style::Color::Reset && c.bg == ratatui::style::Color::Reset));
    let (_, buf) = render(&app, 120, 40, Theme { color: true });
    assert!(buf
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset));
}

#[test]
fn an_attach_failure_shows_its_cause_on_the_status_line() {
    let mut app = app();
    step(
        &mut app,
        Action::AttachFailed {
            probe: key("http__server__request"),
            why: "perf_event_open: Permission denied".into(),
        },
    );
    let s = screen(&app);
    let status = s.lines().nth(38).unwrap();
    assert!(status.contains("Permission denied"), "{s}");
}

#[test]
fn an_empty_machine_draws_the_frame_at_every_size_down_to_one_cell() {
    let app = App::new(std::sync::Arc::new(
        crate::probes::discovery::catalog::Catalog::builtin(),
    ));
    let (one, _) = render(&app, 1, 1, Theme::plain());
    assert_eq!(one.chars().count(), 2, "one cell and a newline: {one:?}");
    let (small, _) = render(&app, 20, 5, Theme::plain());
    assert!(small.starts_with(" usdtop "), "{small}");
    let (s, _) = render(&app, 80, 24, Theme::plain());
    assert!(s.contains("0 processes · 0 attached"), "{s}");
    assert!(s.lines().last().unwrap().contains("q quit"), "{s}");
}

/// Every key of the table is in the help overlay, with what it does.
#[test]
fn the_help_overlay_shows_every_binding_of_the_key_table() {
    let mut app = app();
    step(&mut app, Action::ToggleHelp);
    let s = screen(&app);
    for b in keymap::KEYS {
        let line = format!("{:<20}{}", keymap::keys_text(b), b.does);
        assert!(s.contains(line.trim_end()), "{line:?} missing:\n{s}");
    }
}

/// Each pane's footer shows the hints the key table gives it, and the global ones last.
#[test]
fn the_footer_shows_the_key_tables_hints_for_the_focused_pane() {
    let mut app = app_with_traffic();
    for pane in crate::app::Pane::ORDER {
        step(&mut app, Action::Focus(pane));
        let s = screen(&app);
        let footer = s.lines().last().unwrap();
        for (keys, word) in keymap::hints(&app) {
            assert!(
                footer.contains(&format!("{keys} {word}")),
                "{pane:?}: {footer}"
            );
        }
        assert!(
            footer.trim_end().ends_with("Tab pane  ? help  q quit"),
            "{footer}"
        );
    }
    step(&mut app, Action::StartFilter);
    let s = screen(&app);
    let footer = s.lines().last().unwrap();
    assert!(
        footer.contains("type filter  Enter keep  Esc clear"),
        "{footer}"
    );
}

#[test]
fn the_selected_probes_full_name_sites_semaphore_and_args_are_readable_at_80x24() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    step(&mut app, Action::Focus(crate::app::Pane::Probes));
    step(&mut app, Action::Down);
    step(&mut app, Action::Down);
    let (s, _) = render(&app, 80, 24, Theme::plain());
    // The row is cut; the detail line is not.
    assert!(s.contains("  buffer__check…   1 S  1"), "{s}");
    assert!(
        s.contains(
            " postgresql:buffer__checkpoint__sync__start · 1 site · semaphore: yes (0x9a3b04)"
        ),
        "{s}"
    );
    assert!(
        s.contains(" args: 8@%rbx"),
        "not in the catalog: the note's spec\n{s}"
    );
    // A catalog probe shows its argument names; sites that differ say so.
    step(&mut app, Action::End);
    let (s, _) = render(&app, 80, 24, Theme::plain());
    assert!(s.contains("postgresql:transaction__start · 1 site"), "{s}");
    assert!(s.contains("args: xid"), "{s}");
    step(&mut app, Action::Up);
    step(&mut app, Action::Up);
    let (s, _) = render(&app, 80, 24, Theme::plain());
    assert!(s.contains("postgresql:sort__start · 4 sites"), "{s}");
}

#[test]
fn a_runtime_without_probes_is_marked_and_explained_in_the_probes_pane() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(9));
    let (s, _) = render(&app, 120, 40, Theme::plain());
    let row = s
        .lines()
        .find(|l| l.contains("      9  python3.11"))
        .unwrap();
    assert!(row.contains("  ?│"), "{row}");
    assert!(
        s.contains("│Python without USDT probes: built without"),
        "{s}"
    );
    assert!(s.contains("PYTHON_CONFIGURE_OPTS=--with-dtrace)"), "{s}");
    let status = s.lines().nth(38).unwrap();
    assert!(
        status.contains("9 python3.11: Python without USDT probes"),
        "{s}"
    );
}

#[test]
fn each_explorer_pane_shows_its_filter_in_its_title() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    step(&mut app, Action::Focus(crate::app::Pane::Probes));
    type_filter(&mut app, "query");
    let s = screen(&app);
    assert!(s.contains(" Probes  /query▏ 6/20 in "), "{s}");
    step(&mut app, Action::FilterDone);
    let s = screen(&app);
    assert!(
        s.contains(" Probes  /query 6/20 in "),
        "kept, without the cursor\n{s}"
    );
    let footer = s.lines().last().unwrap();
    assert!(footer.contains("/ filter"), "{footer}");
}

#[test]
fn kernel_pairing_shows_the_sampling_rate_on_the_log_and_top_panes() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Sampling(Some(64)));
    let s = screen(&app);
    assert_eq!(s.matches("sampled 1/64").count(), 2, "{s}");
    assert!(
        s.contains("sampled 1/64, ≈ counts"),
        "the top pane says its counts are estimates"
    );
}

#[test]
fn the_header_counts_drops_and_strings_left_unreadable() {
    let mut app = app_with_traffic();
    step(
        &mut app,
        Action::ProbeCounts {
            hits: Vec::new(),
            dropped: 3,
            too_slow: 0,
            unreadable: 2,
        },
    );
    let s = screen(&app);
    let header = s.lines().next().unwrap();
    assert!(header.contains("3 dropped"), "{s}");
    assert!(header.contains("2 strings unreadable"), "{s}");
}

#[test]
fn a_call_shaped_pair_in_the_kernel_says_its_rows_are_exact_and_counts_mismatched_returns() {
    let mut app = app_with_traffic();
    let _stays_in_the_kernel = app.update(Action::PairingReport {
        now_ns: 1300 * MS,
        report: Some(Ok(crate::app::KernelLatency {
            samples: vec![(5 * MS, 10)],
            sample_every: 0,
            keys: vec![crate::app::KernelKey {
                key: "inner".into(),
                count: 10,
                samples: vec![(5 * MS, 10)],
            }],
            mismatched: 3,
        })),
        kernel_unsupported: None,
    });
    let s = screen(&app);
    assert!(s.contains("per call, from the kernel"), "{s}");
    assert!(s.contains("paired in the kernel, log off"), "{s}");
    assert!(!s.contains("≈ counts"), "{s}");
    assert!(
        s.lines().next().unwrap().contains("3 mismatched returns"),
        "{s}"
    );
    assert!(s.contains("inner"), "{s}");
}

/// The main screens, drawn from the fixtures (no clocks, no pids from this machine), at the
/// smallest supported size and a large one. A change to what is drawn shows as a diff of the
/// committed snapshot (`cargo insta review`).
mod snapshots {
    use super::*;

    fn both_sizes(name: &str, app: &App) {
        for (w, h) in [(80, 24), (200, 50)] {
            let (s, _) = render(app, w, h, Theme::plain());
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), s);
        }
    }

    #[test]
    fn explorer_with_the_probes_of_a_process() {
        let mut app = app();
        step(&mut app, Action::Enter);
        step(&mut app, Action::Enter);
        both_sizes("explorer", &app);
    }

    #[test]
    fn live_panes_with_traffic() {
        let mut app = app_with_traffic();
        step(&mut app, Action::Focus(crate::app::Pane::Histogram));
        both_sizes("live", &app);
    }

    #[test]
    fn help_overlay() {
        let mut app = app_with_traffic();
        step(&mut app, Action::ToggleHelp);
        both_sizes("help", &app);
    }

    fn at_80x24(name: &str, app: &App) {
        let (s, _) = render(app, 80, 24, Theme::plain());
        insta::assert_snapshot!(format!("{name}_80x24"), s);
    }

    #[test]
    fn a_big_provider_filtered_by_a_glob_with_the_probe_in_detail() {
        let mut app = runtimes_app();
        step(&mut app, Action::SelectProcess(7));
        step(&mut app, Action::Focus(crate::app::Pane::Probes));
        type_filter(&mut app, "*query*start");
        step(&mut app, Action::FilterDone);
        step(&mut app, Action::End);
        at_80x24("probes_glob", &app);
    }

    #[test]
    fn a_probe_filter_being_typed() {
        let mut app = runtimes_app();
        step(&mut app, Action::SelectProcess(7));
        step(&mut app, Action::Focus(crate::app::Pane::Probes));
        type_filter(&mut app, "buffer__");
        at_80x24("probes_filter_typed", &app);
    }

    #[test]
    fn a_runtime_recognised_without_probes() {
        let mut app = runtimes_app();
        step(&mut app, Action::SelectProcess(9));
        at_80x24("runtime_without_probes", &app);
    }

    #[test]
    fn filter_being_typed() {
        let mut app = app();
        step(&mut app, Action::StartFilter);
        step(&mut app, Action::FilterInput('d'));
        both_sizes("filter", &app);
    }
}

#[test]
fn the_header_says_how_much_of_the_time_a_budget_left_the_probes_attached() {
    let mut app = app_with_traffic();
    step(
        &mut app,
        Action::BudgetSet {
            budget: Some(0.01),
            result: Ok(()),
        },
    );
    step(
        &mut app,
        Action::Sampled {
            fraction: 0.125,
            full_overhead: 0.08,
        },
    );
    let s = screen(&app);
    let header = s.lines().next().unwrap();
    assert!(
        header.contains("sampled 12% of the time (budget 1%): counts ×8.0"),
        "{s}"
    );
}
