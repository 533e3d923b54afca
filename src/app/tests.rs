//! Specifications of the app's behaviour, driven by actions the way the key map sends them.

use super::fixtures::*;
use super::*;
use crate::probes::discovery::catalog::Catalog;
use crate::probes::discovery::select::ProbePattern;
use crate::probes::Event;
use std::sync::Arc;

#[test]
fn processes_with_probes_sort_first_and_the_filter_narrows_by_name_or_pid() {
    let mut app = app();
    let pids: Vec<u32> = app.explorer.processes().map(|p| p.pid).collect();
    assert_eq!(pids, vec![42, 1]);
    step(&mut app, Action::StartFilter);
    assert!(app.editing_filter());
    step(&mut app, Action::FilterInput('i'));
    step(&mut app, Action::FilterInput('n'));
    let pids: Vec<u32> = app.explorer.processes().map(|p| p.pid).collect();
    assert_eq!(pids, vec![1]);
    step(&mut app, Action::Back);
    assert!(!app.editing_filter());
    assert_eq!(app.explorer.process_count(), 2);
}

/// The names of the probes the Probes pane lists now.
fn listed_probes(app: &App) -> Vec<String> {
    app.explorer
        .probes()
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

/// Focuses `pane`, types `text` into its `/` filter and keeps it.
fn filter(app: &mut App, pane: Pane, text: &str) {
    step(app, Action::Focus(pane));
    type_filter(app, text);
    step(app, Action::FilterDone);
}

/// The paths the Objects pane lists now.
fn listed_objects(app: &App) -> Vec<String> {
    app.explorer
        .objects()
        .iter()
        .map(|o| o.path.clone())
        .collect()
}

#[test]
fn slash_in_the_probes_pane_filters_probes_by_substring() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    filter(&mut app, Pane::Probes, "QUERY__");
    assert_eq!(app.focus, Pane::Probes, "the filtered pane keeps the focus");
    assert_eq!(
        listed_probes(&app),
        [
            "query__done",
            "query__execute__done",
            "query__execute__start",
            "query__parse__done",
            "query__parse__start",
            "query__start"
        ]
    );
    // The process list is not filtered by it.
    assert_eq!(app.explorer.process_count(), 4);
    step(&mut app, Action::End);
    let selected = app.selected_probe_key().unwrap();
    assert_eq!(selected.full_name(), "postgresql:query__start");
}

#[test]
fn a_filter_with_wildcards_is_a_glob_on_the_name_or_provider_and_name() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    filter(&mut app, Pane::Probes, "*__start");
    assert!(listed_probes(&app).iter().all(|n| n.ends_with("__start")));
    assert_eq!(listed_probes(&app).len(), 11);
    step(&mut app, Action::Back);
    filter(&mut app, Pane::Probes, "postgresql:buffer__[rf]*__done");
    assert_eq!(
        listed_probes(&app),
        ["buffer__flush__done", "buffer__read__done"]
    );
    step(&mut app, Action::Back);
    filter(&mut app, Pane::Probes, "query__?tart");
    assert_eq!(listed_probes(&app), ["query__start"]);
}

#[test]
fn slash_in_the_objects_pane_filters_objects_by_path_or_file_name() {
    let mut app = app();
    step(&mut app, Action::SelectProcess(42));
    filter(&mut app, Pane::Objects, "libc");
    assert_eq!(listed_objects(&app), ["/usr/lib/libc.so.6"]);
    assert!(app.explorer.probes().is_empty());
    step(&mut app, Action::Back);
    type_filter(&mut app, "d?mo");
    assert_eq!(listed_objects(&app), [BIN], "a glob matches the file name");
}

#[test]
fn esc_clears_the_filter_being_typed_and_then_a_kept_one() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    step(&mut app, Action::Focus(Pane::Probes));
    type_filter(&mut app, "z");
    assert!(listed_probes(&app).is_empty());
    step(&mut app, Action::Back);
    assert!(!app.editing_filter());
    assert_eq!(listed_probes(&app).len(), 20);
    filter(&mut app, Pane::Probes, "sort");
    assert_eq!(listed_probes(&app), ["sort__start"]);
    step(&mut app, Action::Back);
    assert_eq!(listed_probes(&app).len(), 20, "Esc clears the kept filter");
    assert_eq!(app.focus, Pane::Probes, "and only then steps back");
    step(&mut app, Action::Back);
    assert_eq!(app.focus, Pane::Objects);
}

#[test]
fn backspace_while_filtering_widens_the_list_again() {
    let mut app = runtimes_app();
    step(&mut app, Action::SelectProcess(7));
    step(&mut app, Action::Focus(Pane::Probes));
    type_filter(&mut app, "lwlock__a");
    assert_eq!(listed_probes(&app), ["lwlock__acquire"]);
    step(&mut app, Action::FilterBackspace);
    step(&mut app, Action::FilterBackspace);
    assert_eq!(
        listed_probes(&app),
        ["lwlock__acquire", "lwlock__wait__start"]
    );
}

#[test]
fn slash_in_a_live_pane_filters_the_processes() {
    let mut app = runtimes_app();
    step(&mut app, Action::Focus(Pane::Top));
    type_filter(&mut app, "post");
    assert_eq!(app.focus, Pane::Processes);
    let pids: Vec<u32> = app.explorer.processes().map(|p| p.pid).collect();
    assert_eq!(pids, [7]);
}

#[test]
fn each_pane_keeps_its_own_filter() {
    let mut app = runtimes_app();
    filter(&mut app, Pane::Processes, "postgres");
    filter(&mut app, Pane::Probes, "checkpoint");
    let f = &app.explorer.filters;
    assert_eq!(
        (
            f.processes.text.as_str(),
            f.objects.text.as_str(),
            f.probes.text.as_str()
        ),
        ("postgres", "", "checkpoint")
    );
    assert_eq!(listed_probes(&app).len(), 5);
}

#[test]
fn selecting_a_runtime_without_probes_says_why_on_the_status_line_once() {
    use crate::probes::discovery::elf::ObjectProbes;
    use crate::probes::discovery::process::ObjectKey;
    let python = Arc::new(ScannedObject {
        key: ObjectKey { dev: 1, inode: 3 },
        path: PYENV_PYTHON.into(),
        attach_path: PYENV_PYTHON.into(),
        probes: Arc::new(Ok(ObjectProbes {
            path: PYENV_PYTHON.into(),
            position_independent: true,
            probes: Vec::new(),
        })),
    });
    let scan = |pid, exe: &str| ProcessScan {
        pid,
        comm: "python3.11".into(),
        exe: Some(exe.into()),
        objects: vec![python.clone()],
    };
    let mut app = App::new(Arc::new(Catalog::builtin()));
    step(
        &mut app,
        Action::Scanned(vec![scan(11, PYENV_PYTHON), scan(10, "/usr/bin/bash")]),
    );
    assert_eq!(app.explorer.selected_process().unwrap().pid, 10);
    assert!(app.status.is_none(), "{:?}", app.status);
    step(&mut app, Action::Down);
    let status = app.status.clone().unwrap();
    assert!(status
        .text
        .starts_with("11 python3.11: Python without USDT probes"));
    assert!(status.text.contains("--with-dtrace"), "{}", status.text);
    // Said once: another message is not overwritten while the selection stays.
    step(&mut app, Action::Status("something else".into()));
    step(&mut app, Action::Tick { now_ns: 1 });
    assert_eq!(app.status.unwrap().text, "something else");
}

#[test]
fn tab_cycles_through_all_panes_and_shift_tab_goes_back() {
    let mut app = app();
    let mut seen = vec![app.focus];
    for _ in 0..5 {
        step(&mut app, Action::FocusNext);
        seen.push(app.focus);
    }
    assert_eq!(seen, Pane::ORDER.to_vec());
    step(&mut app, Action::FocusNext);
    assert_eq!(app.focus, Pane::Processes);
    step(&mut app, Action::FocusPrev);
    assert_eq!(app.focus, Pane::Top);
}

#[test]
fn objects_with_probes_come_first_and_space_on_a_probe_asks_to_attach_it_in_that_process() {
    let mut app = app();
    step(&mut app, Action::Enter); // → objects of pid 42
    assert_eq!(app.focus, Pane::Objects);
    let objs: Vec<String> = app
        .explorer
        .objects()
        .iter()
        .map(|o| o.path.clone())
        .collect();
    assert_eq!(objs, vec![BIN.to_string(), "/usr/lib/libc.so.6".into()]);
    step(&mut app, Action::Enter); // → probes
    step(&mut app, Action::Down);
    let cmds = app.update(Action::Toggle);
    assert_eq!(
        cmds,
        vec![Command::Attach {
            probe: key("http__server__response"),
            pid: Some(42)
        }]
    );
    assert_eq!(
        app.attach_state(&key("http__server__response")),
        Some(&AttachState::Pending)
    );
    // Space again detaches.
    let cmds = app.update(Action::Toggle);
    assert_eq!(
        cmds,
        vec![Command::Detach {
            probe: key("http__server__response")
        }]
    );
}

#[test]
fn an_attach_failure_is_shown_with_its_cause_and_the_app_keeps_running() {
    let mut app = app();
    step(
        &mut app,
        Action::AttachFailed {
            probe: key("http__server__request"),
            why: "perf_event_open: Permission denied".into(),
        },
    );
    let status = app.status.clone().unwrap();
    assert!(status.error);
    assert!(status.text.contains("Permission denied"), "{}", status.text);
    assert!(!app.quit);
}

#[test]
fn without_root_space_explains_why_instead_of_attaching() {
    let mut app = app();
    step(
        &mut app,
        Action::AttachUnavailable("needs root (CAP_BPF)".into()),
    );
    app.focus = Pane::Probes;
    assert!(app.update(Action::Toggle).is_empty());
    assert!(app.status.as_ref().unwrap().text.contains("needs root"));
}

#[test]
fn paired_events_feed_the_histogram_top_table_and_log_with_latencies() {
    let app = app_with_traffic();
    let s = app.live.summary();
    assert_eq!(s.count, 4);
    assert!(s.max_ns >= 99 * MS && s.max_ns <= 101 * MS, "{}", s.max_ns);
    let rows = app.live.top_rows(10);
    assert_eq!(rows[0].key, "/fast");
    assert_eq!(rows[0].count, 3);
    assert_eq!(rows[1].key, "/slow");
    let newest = app.live.log_view(1)[0];
    assert_eq!(newest.probe.name, "http__server__response");
    assert_eq!(newest.label.as_deref(), Some("/slow"));
    assert_eq!(newest.latency_ns, Some(100 * MS));
}

#[test]
fn enter_on_a_top_row_filters_histogram_and_log_to_that_key_and_esc_steps_back() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Focus(Pane::Top));
    step(&mut app, Action::Down); // /slow
    step(&mut app, Action::Enter);
    assert_eq!(app.live.filters, vec![DrillDown::Key("/slow".into())]);
    assert_eq!(app.live.summary().count, 1);
    assert!(app
        .live
        .log_view(100)
        .iter()
        .all(|e| e.label.as_deref() == Some("/slow")));
    assert_eq!(app.live.log_view(100).len(), 2);
    step(&mut app, Action::Back);
    assert!(app.live.filters.is_empty());
    assert_eq!(app.live.summary().count, 4);
}

#[test]
fn enter_on_a_histogram_bucket_filters_the_log_to_that_latency_range() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Focus(Pane::Histogram));
    step(&mut app, Action::End); // the slowest bucket
    step(&mut app, Action::Enter);
    let Some(DrillDown::Latency { lo_ns, hi_ns }) = app.live.filters.last().cloned() else {
        panic!("no latency filter: {:?}", app.live.filters);
    };
    assert!(lo_ns <= 100 * MS && 100 * MS < hi_ns);
    let shown = app.live.log_view(100);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].latency_ns, Some(100 * MS));
    assert_eq!(app.focus, Pane::Log);
}

#[test]
fn pause_freezes_the_log_and_clear_empties_it() {
    let mut app = app_with_traffic();
    step(&mut app, Action::TogglePause);
    step(&mut app, Action::Events(vec![request(1300, 9, "/late")]));
    assert!(app.live.log_view(100).iter().all(|e| e.ts_ns < 1300 * MS));
    assert_eq!(app.live.unseen_since_pause(), 1);
    step(&mut app, Action::TogglePause);
    assert_eq!(app.live.log_view(1)[0].ts_ns, 1300 * MS);
    step(&mut app, Action::Clear);
    assert!(app.live.log_view(100).is_empty());
    assert_eq!(app.live.summary().count, 0);
}

#[test]
fn the_log_ring_is_bounded() {
    let mut app = app();
    let events: Vec<Event> = (0..(LOG_CAP as u64 + 500))
        .map(|i| request(i, 1, "/x"))
        .collect();
    step(&mut app, Action::Events(events));
    assert_eq!(app.live.log_len(), LOG_CAP);
}

#[test]
fn s_cycles_the_top_sort_when_the_top_pane_has_focus_and_w_the_window() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Focus(Pane::Top));
    let before = app.live.top_sort;
    step(&mut app, Action::CycleSort);
    assert_ne!(app.live.top_sort, before);
    let w = app.live.window;
    step(&mut app, Action::CycleWindow);
    assert_ne!(app.live.window, w);
}

#[test]
fn a_pid_asked_for_at_start_is_selected_once_it_is_listed() {
    let mut app = App::new(Arc::new(Catalog::builtin()));
    app.explorer.select_pid(42);
    step(&mut app, Action::Processes(processes()));
    assert_eq!(app.explorer.selected_process().unwrap().pid, 42);
    let cmds = app.attach_matching(&pattern("node:http__server__request"), Some(42));
    assert!(matches!(
        cmds.as_deref(),
        Some([Command::Attach { pid: Some(42), .. }])
    ));
    assert_eq!(app.attach_matching(&pattern("node:nope"), Some(42)), None);
}

fn pattern(text: &str) -> ProbePattern {
    ProbePattern::parse(text).unwrap()
}

#[test]
fn q_quits() {
    let mut app = app();
    assert_eq!(app.update(Action::Quit), vec![Command::Quit]);
    assert!(app.quit);
}

#[test]
fn requests_differing_only_in_ids_share_a_top_row_and_the_log_keeps_the_real_url() {
    let mut app = app();
    attached(&mut app, "http__server__request");
    step(
        &mut app,
        Action::Events(vec![
            request(1000, 7, "/users/1"),
            response(1001, 7),
            request(1002, 7, "/users/2"),
            response(1004, 7),
        ]),
    );
    let rows = app.live.top_rows(10);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].key.as_str(), rows[0].count), ("/users/N", 2));
    assert_eq!(app.live.log_view(1)[0].label.as_deref(), Some("/users/2"));
}

#[test]
fn shift_p_switches_between_catalog_pairs_of_attached_probes() {
    let mut app = app_with_traffic();
    let gc = Arc::new(crate::probes::ProbeKey {
        path: BIN.into(),
        provider: "node".into(),
        name: "gc__start".into(),
    });
    step(
        &mut app,
        Action::Attached {
            probe: gc,
            sites: 1,
        },
    );
    assert_eq!(app.live.pair().unwrap().start, "node:http__server__request");
    step(&mut app, Action::CyclePair);
    assert_eq!(app.live.pair().unwrap().start, "node:gc__start");
    assert_eq!(app.live.summary().count, 0, "a new pair starts afresh");
    step(&mut app, Action::CyclePair);
    assert_eq!(app.live.pair().unwrap().start, "node:http__server__request");
}

#[test]
fn attach_without_a_pid_attaches_each_object_that_has_the_probe_for_all_processes() {
    let mut app = app();
    let cmds = app.attach_matching(&pattern("node:http__server__request"), None);
    assert_eq!(
        cmds,
        Some(vec![Command::Attach {
            probe: key("http__server__request"),
            pid: None
        }])
    );
    assert_eq!(app.explorer.selected_process().unwrap().pid, 42);
    assert_eq!(app.attach_matching(&pattern("node:nope"), None), None);
}

#[test]
fn an_attach_pattern_may_be_a_glob_and_is_not_attached_twice() {
    let mut app = app();
    let cmds = app
        .attach_matching(&pattern("node:http__server__*"), None)
        .unwrap();
    let names: Vec<String> = cmds
        .iter()
        .map(|c| match c {
            Command::Attach { probe, .. } => probe.name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["http__server__request", "http__server__response"]);
    assert_eq!(
        app.attach_matching(&pattern("node:http__server__request"), None),
        Some(vec![]),
        "already pending"
    );
}

#[test]
fn an_attach_pattern_with_a_path_looks_only_in_that_object() {
    let mut app = app();
    let here = format!("{BIN}:node:http__server__request");
    assert!(app.attach_matching(&pattern(&here), None).is_some());
    let elsewhere = "/usr/lib/other.so:node:http__server__request";
    assert_eq!(app.attach_matching(&pattern(elsewhere), None), None);
}

#[test]
fn kernel_aggregates_feed_the_histogram_and_the_stream_only_the_log_and_top_table() {
    let mut app = app_with_traffic();
    assert_eq!(app.live.summary().count, 4);
    assert_eq!(app.live.sampling_label(), None);
    step(&mut app, Action::Sampling(Some(64)));
    step(
        &mut app,
        Action::KernelLatency {
            now_ns: 1300 * MS,
            samples: vec![(2 * MS, 1000), (200 * MS, 10)],
            sample_every: 64,
        },
    );
    let s = app.live.summary();
    assert_eq!(
        s.count,
        4 + 1010,
        "kernel counts add to what was paired before"
    );
    assert!(s.max_ns >= 199 * MS && s.max_ns <= 201 * MS, "{}", s.max_ns);
    assert!(app.live.buckets().iter().map(|b| b.count).sum::<u64>() >= 1010);
    assert_eq!(app.live.sampling_label().as_deref(), Some("sampled 1/64"));

    // A sampled request reaches the log and the top table, not the histogram (the kernel
    // already counted it).
    step(
        &mut app,
        Action::Events(vec![request(1301, 9, "/sampled"), response(1302, 9)]),
    );
    assert_eq!(app.live.summary().count, 1014);
    let rows = app.live.top_rows(10);
    let sampled = rows.iter().find(|r| r.key == "/sampled").unwrap();
    assert_eq!(
        sampled.count, 64,
        "a request streamed 1 in 64 stands for 64 in the top table"
    );
    assert_eq!(app.live.log_view(1)[0].latency_ns, Some(MS));
}

#[test]
fn the_sampling_rate_follows_the_kernel_and_leaving_the_kernel_streams_again() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Sampling(Some(1)));
    step(
        &mut app,
        Action::KernelLatency {
            now_ns: 1300 * MS,
            samples: vec![],
            sample_every: 256,
        },
    );
    assert_eq!(app.live.sampling_label().as_deref(), Some("sampled 1/256"));
    step(&mut app, Action::Sampling(None));
    assert_eq!(app.live.sampling_label(), None);
    step(
        &mut app,
        Action::Events(vec![request(1400, 3, "/x"), response(1402, 3)]),
    );
    assert_eq!(
        app.live.summary().count,
        5,
        "streamed pairs feed the histogram again"
    );
}

#[test]
fn re_selecting_the_kernel_pair_keeps_the_histogram_fed_by_the_kernel() {
    let mut app = app_with_traffic();
    step(&mut app, Action::Sampling(Some(4)));
    step(&mut app, Action::CyclePair); // the only pair again: aggregations restart
    assert_eq!(app.live.summary().count, 0);
    step(
        &mut app,
        Action::KernelLatency {
            now_ns: 1300 * MS,
            samples: vec![(3 * MS, 40)],
            sample_every: 4,
        },
    );
    step(
        &mut app,
        Action::Events(vec![request(1301, 9, "/x"), response(1303, 9)]),
    );
    assert_eq!(
        app.live.summary().count,
        40,
        "the sampled pair is not counted twice"
    );
    assert_eq!(app.live.sampling_label().as_deref(), Some("sampled 1/4"));
}

/// `app_with_traffic` with the pairing policy in `mode` and both probes firing `per_sec`
/// times a second each, as the kernel's counters say.
fn app_with_rate(mode: PairingMode, per_sec: u64) -> App {
    let mut app = app_with_traffic();
    app.pairing = PairingPolicy::new(mode, 20_000.0);
    step(
        &mut app,
        Action::ProbeCounts {
            hits: vec![
                (key("http__server__request"), per_sec),
                (key("http__server__response"), per_sec),
            ],
            dropped: 0,
            too_slow: 0,
            unreadable: 0,
        },
    );
    step(&mut app, Action::Tick { now_ns: 2200 * MS });
    app
}

/// One pairing tick with nothing in the kernel: what the policy asks for after the report.
fn pairing_round(app: &mut App, unsupported: Option<&str>) -> Vec<Command> {
    let now_ns = 2300 * MS;
    let read = app.update(Action::PairingTick {
        now_ns,
        kernel_pair: None,
    });
    assert_eq!(read, vec![Command::ReadKernelPairing { now_ns }]);
    app.update(Action::PairingReport {
        now_ns,
        report: None,
        kernel_unsupported: unsupported.map(String::from),
    })
}

#[test]
fn a_hot_pair_in_auto_mode_is_asked_into_the_kernel_and_a_quiet_one_is_not() {
    let mut quiet = app_with_rate(PairingMode::Auto, 100);
    assert_eq!(pairing_round(&mut quiet, None), vec![]);

    let mut hot = app_with_rate(PairingMode::Auto, 30_000);
    let pair = hot.live.pair().cloned().unwrap();
    let asked = pairing_round(&mut hot, None);
    assert!(
        matches!(asked.as_slice(), [Command::PairInKernel { pair: p, rate, now_ns }]
            if *p == pair && *rate > 20_000.0 && *now_ns == 2300 * MS),
        "{asked:?}"
    );
    step(
        &mut hot,
        Action::PairedInKernel {
            pair,
            rate: 60_000.0,
            result: Ok(()),
        },
    );
    assert_eq!(hot.live.sampling, Some(1));
    assert!(hot.status.unwrap().text.contains("in the kernel"));
}

#[test]
fn stream_mode_never_asks_for_the_kernel_and_kernel_mode_does_at_any_rate() {
    let mut stream = app_with_rate(PairingMode::Stream, 30_000);
    assert_eq!(pairing_round(&mut stream, None), vec![]);
    let mut kernel = app_with_rate(PairingMode::Kernel, 1);
    assert!(matches!(
        pairing_round(&mut kernel, None).as_slice(),
        [Command::PairInKernel { .. }]
    ));
}

#[test]
fn a_pair_the_kernel_refused_is_not_asked_for_again() {
    let mut app = app_with_rate(PairingMode::Auto, 30_000);
    let pair = app.live.pair().cloned().unwrap();
    assert_eq!(pairing_round(&mut app, None).len(), 1);
    step(
        &mut app,
        Action::PairedInKernel {
            pair,
            rate: 60_000.0,
            result: Err("no BPF tracer".into()),
        },
    );
    assert!(app.status.as_ref().unwrap().error);
    assert_eq!(pairing_round(&mut app, None), vec![]);
}

#[test]
fn kernel_mode_says_once_why_a_pair_cannot_be_paired_in_the_kernel() {
    let mut app = app_with_rate(PairingMode::Kernel, 30_000);
    assert_eq!(pairing_round(&mut app, Some("nested pairs")), vec![]);
    let said = app.status.take().unwrap();
    assert!(said.error && said.text.contains("nested pairs"), "{said:?}");
    assert_eq!(pairing_round(&mut app, Some("nested pairs")), vec![]);
    assert_eq!(app.status, None, "said only once");
}

#[test]
fn a_kernel_pair_that_is_no_longer_followed_streams_again_before_the_report() {
    let mut app = app_with_rate(PairingMode::Auto, 30_000);
    let mut other = app.live.pair().cloned().unwrap();
    other.start = "postgresql:query__start".into();
    let now_ns = 2300 * MS;
    let asked = app.update(Action::PairingTick {
        now_ns,
        kernel_pair: Some(other),
    });
    assert_eq!(
        asked,
        vec![
            Command::PairInStream { cooled: None },
            Command::ReadKernelPairing { now_ns }
        ]
    );
}

#[test]
fn a_kernel_paired_pair_that_cooled_down_for_ten_seconds_is_streamed_again() {
    let mut app = app_with_rate(PairingMode::Auto, 0);
    let report = |app: &mut App, now_ns| {
        app.update(Action::PairingReport {
            now_ns,
            report: Some(Ok(KernelLatency {
                samples: vec![(MS, 3)],
                sample_every: 4,
                ..KernelLatency::default()
            })),
            kernel_unsupported: None,
        })
    };
    assert_eq!(report(&mut app, 3000 * MS), vec![]);
    assert_eq!(app.live.sampling, Some(4), "the kernel's sampling is shown");
    assert_eq!(report(&mut app, 12_000 * MS), vec![]);
    assert!(matches!(
        report(&mut app, 13_000 * MS).as_slice(),
        [Command::PairInStream { cooled: Some(_) }]
    ));
}

#[test]
fn the_screen_size_sets_page_and_histogram_rows() {
    let mut app = app();
    step(
        &mut app,
        Action::Resize {
            page_rows: 0,
            hist_rows: 7,
        },
    );
    assert_eq!(app.page_rows, 1, "a page moves at least one row");
    assert_eq!(app.live.hist_rows, 7);
}

#[test]
fn a_process_selected_before_it_is_listed_is_selected_once_it_is() {
    let mut app = App::new(Arc::new(Catalog::builtin()));
    step(&mut app, Action::SelectProcess(1));
    assert_eq!(app.explorer.selected_process(), None);
    step(&mut app, Action::Processes(processes()));
    assert_eq!(app.explorer.selected_process().map(|p| p.pid), Some(1));
}

#[test]
fn scanned_objects_become_views_shared_between_processes_with_probes_in_name_order() {
    use crate::probes::discovery::elf::{ElfError, ObjectProbes, Probe};
    use crate::probes::discovery::process::ObjectKey;
    let probe = |name: &str| Probe {
        provider: "node".into(),
        name: name.into(),
        semaphore: Some(0x4010),
        semaphore_offset: Some(0x10),
        sites: Vec::new(),
        warnings: Vec::new(),
    };
    let object = |inode, path: &str, probes: Result<ObjectProbes, ElfError>| {
        Arc::new(ScannedObject {
            key: ObjectKey { dev: 1, inode },
            path: path.into(),
            attach_path: path.into(),
            probes: Arc::new(probes),
        })
    };
    let node = object(
        7,
        BIN,
        Ok(ObjectProbes {
            path: BIN.into(),
            position_independent: true,
            probes: vec![probe("gc__start"), probe("gc__done")],
        }),
    );
    let broken = object(8, "/usr/lib/broken.so", Err(ElfError::NotElf));
    let scan = |pid| ProcessScan {
        pid,
        comm: "node".into(),
        exe: None,
        objects: vec![node.clone(), broken.clone()],
    };
    let mut app = App::new(Arc::new(Catalog::builtin()));
    step(&mut app, Action::Scanned(vec![scan(1), scan(2)]));
    let (one, two) = (node_view_of(&app, 1), node_view_of(&app, 2));
    assert!(Arc::ptr_eq(&one, &two), "one view for the object both map");
    let names: Vec<String> = two.probes.iter().map(|p| p.full_name()).collect();
    assert_eq!(names, ["node:gc__done", "node:gc__start"]);
    assert_eq!(two.probes[0].semaphore, Some(0x4010));
    let broken_view = app
        .explorer
        .processes()
        .find(|p| p.pid == 2)
        .and_then(|p| p.objects.iter().find(|o| o.path != BIN))
        .unwrap();
    assert_eq!(broken_view.error.as_deref(), Some("not an ELF file"));
}

fn node_view_of(app: &App, pid: u32) -> Arc<ObjectView> {
    app.explorer
        .processes()
        .find(|p| p.pid == pid)
        .and_then(|p| p.objects.iter().find(|o| o.path == BIN))
        .unwrap()
        .clone()
}

#[test]
fn a_call_shaped_pair_in_the_kernel_fills_the_top_table_with_a_row_per_function() {
    let mut app = app_with_rate(PairingMode::Kernel, 30_000);
    let key = |name: &str, count: u64, ms: u64| KernelKey {
        key: name.into(),
        count,
        samples: vec![(ms * MS, count)],
    };
    let report = KernelLatency {
        samples: vec![(5 * MS, 100), (15 * MS, 50)],
        sample_every: 0,
        keys: vec![key("inner", 100, 5), key("outer", 50, 15)],
        mismatched: 2,
    };
    for now_ns in [3000 * MS, 3250 * MS] {
        let asked = app.update(Action::PairingReport {
            now_ns,
            report: Some(Ok(report.clone())),
            kernel_unsupported: None,
        });
        assert_eq!(asked, vec![], "kernel mode keeps the pair in the kernel");
    }
    let rows = app.live.top_rows(10);
    let row = |name: &str| rows.iter().find(|r| r.key == name).unwrap();
    assert_eq!(
        row("inner").count,
        200,
        "exact counts, not scaled: {rows:?}"
    );
    assert_eq!(row("outer").count, 100);
    let p50 = row("outer").p50_ns.unwrap();
    assert!(p50.abs_diff(15 * MS) <= 15 * MS / 50, "{p50}");
    assert_eq!(app.live.mismatched_returns, 4, "reports add up");
    assert_eq!(
        app.live.sampling_label().as_deref(),
        Some("paired in the kernel, log off")
    );
}

#[test]
fn a_call_shaped_pair_moved_into_the_kernel_turns_the_log_off_and_says_so() {
    let mut app = app_with_rate(PairingMode::Kernel, 30_000);
    let mut pair = app.live.pair().cloned().unwrap();
    pair.nested = true;
    step(
        &mut app,
        Action::PairedInKernel {
            pair,
            rate: 150_000.0,
            result: Ok(()),
        },
    );
    assert_eq!(app.live.sampling, Some(0));
    let said = app.status.unwrap().text;
    assert!(
        said.contains("per call") && said.contains("log is off"),
        "{said}"
    );
}

#[test]
fn shift_o_cycles_the_overhead_budget_off_1_percent_5_percent_off() {
    let mut app = app();
    let mut budgets = Vec::new();
    for _ in 0..3 {
        let commands = app.update(Action::CycleBudget);
        let [Command::SetBudget(budget)] = commands.as_slice() else {
            panic!("{commands:?}");
        };
        budgets.push(*budget);
        step(
            &mut app,
            Action::BudgetSet {
                budget: *budget,
                result: Ok(()),
            },
        );
        assert_eq!(app.budget, *budget);
    }
    assert_eq!(budgets, [Some(0.01), Some(0.05), None]);
}

#[test]
fn a_budget_the_tracer_refuses_is_said_and_not_kept() {
    let mut app = app();
    step(
        &mut app,
        Action::BudgetSet {
            budget: Some(0.01),
            result: Err("needs the uprobe-multi attach path".into()),
        },
    );
    assert_eq!(app.budget, None);
    let status = app
        .status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    assert!(status.contains("uprobe-multi"), "{status}");
}
