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
    app.update(Action::StartFilter);
    assert!(app.editing_filter());
    app.update(Action::FilterInput('i'));
    app.update(Action::FilterInput('n'));
    let pids: Vec<u32> = app.explorer.processes().map(|p| p.pid).collect();
    assert_eq!(pids, vec![1]);
    app.update(Action::Back);
    assert!(!app.editing_filter());
    assert_eq!(app.explorer.process_count(), 2);
}

#[test]
fn tab_cycles_through_all_panes_and_shift_tab_goes_back() {
    let mut app = app();
    let mut seen = vec![app.focus];
    for _ in 0..5 {
        app.update(Action::FocusNext);
        seen.push(app.focus);
    }
    assert_eq!(seen, Pane::ORDER.to_vec());
    app.update(Action::FocusNext);
    assert_eq!(app.focus, Pane::Processes);
    app.update(Action::FocusPrev);
    assert_eq!(app.focus, Pane::Top);
}

#[test]
fn objects_with_probes_come_first_and_space_on_a_probe_asks_to_attach_it_in_that_process() {
    let mut app = app();
    app.update(Action::Enter); // → objects of pid 42
    assert_eq!(app.focus, Pane::Objects);
    let objs: Vec<String> = app
        .explorer
        .objects()
        .iter()
        .map(|o| o.path.clone())
        .collect();
    assert_eq!(objs, vec![BIN.to_string(), "/usr/lib/libc.so.6".into()]);
    app.update(Action::Enter); // → probes
    app.update(Action::Down);
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
    app.update(Action::AttachFailed {
        probe: key("http__server__request"),
        why: "perf_event_open: Permission denied".into(),
    });
    let status = app.status.clone().unwrap();
    assert!(status.error);
    assert!(status.text.contains("Permission denied"), "{}", status.text);
    assert!(!app.quit);
}

#[test]
fn without_root_space_explains_why_instead_of_attaching() {
    let mut app = app();
    app.update(Action::AttachUnavailable("needs root (CAP_BPF)".into()));
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
    app.update(Action::Focus(Pane::Top));
    app.update(Action::Down); // /slow
    app.update(Action::Enter);
    assert_eq!(app.live.filters, vec![DrillDown::Key("/slow".into())]);
    assert_eq!(app.live.summary().count, 1);
    assert!(app
        .live
        .log_view(100)
        .iter()
        .all(|e| e.label.as_deref() == Some("/slow")));
    assert_eq!(app.live.log_view(100).len(), 2);
    app.update(Action::Back);
    assert!(app.live.filters.is_empty());
    assert_eq!(app.live.summary().count, 4);
}

#[test]
fn enter_on_a_histogram_bucket_filters_the_log_to_that_latency_range() {
    let mut app = app_with_traffic();
    app.update(Action::Focus(Pane::Histogram));
    app.update(Action::End); // the slowest bucket
    app.update(Action::Enter);
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
    app.update(Action::TogglePause);
    app.update(Action::Events(vec![request(1300, 9, "/late")]));
    assert!(app.live.log_view(100).iter().all(|e| e.ts_ns < 1300 * MS));
    assert_eq!(app.live.unseen_since_pause(), 1);
    app.update(Action::TogglePause);
    assert_eq!(app.live.log_view(1)[0].ts_ns, 1300 * MS);
    app.update(Action::Clear);
    assert!(app.live.log_view(100).is_empty());
    assert_eq!(app.live.summary().count, 0);
}

#[test]
fn the_log_ring_is_bounded() {
    let mut app = app();
    let events: Vec<Event> = (0..(LOG_CAP as u64 + 500))
        .map(|i| request(i, 1, "/x"))
        .collect();
    app.update(Action::Events(events));
    assert_eq!(app.live.log_len(), LOG_CAP);
}

#[test]
fn s_cycles_the_top_sort_when_the_top_pane_has_focus_and_w_the_window() {
    let mut app = app_with_traffic();
    app.update(Action::Focus(Pane::Top));
    let before = app.live.top_sort;
    app.update(Action::CycleSort);
    assert_ne!(app.live.top_sort, before);
    let w = app.live.window;
    app.update(Action::CycleWindow);
    assert_ne!(app.live.window, w);
}

#[test]
fn a_pid_asked_for_at_start_is_selected_once_it_is_listed() {
    let mut app = App::new(Arc::new(Catalog::builtin()));
    app.explorer.select_pid(42);
    app.update(Action::Processes(processes()));
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
fn keys_fold_numbers_and_literals_so_one_kind_of_request_is_one_row() {
    assert_eq!(normalize_key("/api/users/42?page=3"), "/api/users/N?page=N");
    assert_eq!(
        normalize_key("UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 5;"),
        "UPDATE pgbench_accounts SET abalance = abalance + N WHERE aid = N;"
    );
    assert_eq!(
        normalize_key("SELECT 'it''s', v1 FROM t2"),
        "SELECT '?', v1 FROM t2"
    );
    assert_eq!(normalize_key("/slow?ms=50"), "/slow?ms=N");
    assert_eq!(normalize_key("a + 5 - 3"), "a + N - N");
}

#[test]
fn requests_differing_only_in_ids_share_a_top_row_and_the_log_keeps_the_real_url() {
    let mut app = app();
    app.update(Action::Attached {
        probe: key("http__server__request"),
        sites: 1,
    });
    app.update(Action::Events(vec![
        request(1000, 7, "/users/1"),
        response(1001, 7),
        request(1002, 7, "/users/2"),
        response(1004, 7),
    ]));
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
    app.update(Action::Attached {
        probe: gc,
        sites: 1,
    });
    assert_eq!(app.live.pair().unwrap().start, "node:http__server__request");
    app.update(Action::CyclePair);
    assert_eq!(app.live.pair().unwrap().start, "node:gc__start");
    assert_eq!(app.live.summary().count, 0, "a new pair starts afresh");
    app.update(Action::CyclePair);
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
    app.update(Action::Sampling(Some(64)));
    app.update(Action::KernelLatency {
        now_ns: 1300 * MS,
        samples: vec![(2 * MS, 1000), (200 * MS, 10)],
        sample_every: 64,
    });
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
    app.update(Action::Events(vec![
        request(1301, 9, "/sampled"),
        response(1302, 9),
    ]));
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
    app.update(Action::Sampling(Some(1)));
    app.update(Action::KernelLatency {
        now_ns: 1300 * MS,
        samples: vec![],
        sample_every: 256,
    });
    assert_eq!(app.live.sampling_label().as_deref(), Some("sampled 1/256"));
    app.update(Action::Sampling(None));
    assert_eq!(app.live.sampling_label(), None);
    app.update(Action::Events(vec![
        request(1400, 3, "/x"),
        response(1402, 3),
    ]));
    assert_eq!(
        app.live.summary().count,
        5,
        "streamed pairs feed the histogram again"
    );
}

#[test]
fn re_selecting_the_kernel_pair_keeps_the_histogram_fed_by_the_kernel() {
    let mut app = app_with_traffic();
    app.update(Action::Sampling(Some(4)));
    app.update(Action::CyclePair); // the only pair again: aggregations restart
    assert_eq!(app.live.summary().count, 0);
    app.update(Action::KernelLatency {
        now_ns: 1300 * MS,
        samples: vec![(3 * MS, 40)],
        sample_every: 4,
    });
    app.update(Action::Events(vec![
        request(1301, 9, "/x"),
        response(1303, 9),
    ]));
    assert_eq!(
        app.live.summary().count,
        40,
        "the sampled pair is not counted twice"
    );
    assert_eq!(app.live.sampling_label().as_deref(), Some("sampled 1/4"));
}
