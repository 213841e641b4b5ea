//! Rendering snapshots of the dashboard with ratatui's `TestBackend`, fed
//! by replaying a recorded event log through the real pipeline
//! (tests/golden/demo_catalog.zrec: the demo's topology, 30 requests; the
//! catalog service runs an N+1 on MariaDB, reads one Redis key twice per
//! request and fails on a missing table when n % 10 == 5).
//!
//! Each view is compared with a text snapshot in `snapshots/`
//! (`ZT_UPDATE_SNAPSHOTS=1` rewrites them after a deliberate change), and
//! the facts the issue asks the view to show are also asserted one by one,
//! so a snapshot rewritten by mistake cannot hide a regression.

use super::app::{App, Panel};
use super::data::{Data, Feed};
use super::ui::draw;
use crate::settings::Settings;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zt_trace::RecentTraces;

const W: u16 = 200;
const H: u16 = 50;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The golden log replayed to the end through the dashboard's feed.
fn replayed() -> (Data, RecentTraces) {
    let log = repo().join("tests/golden/demo_catalog.zrec");
    let s = Settings::default();
    let mut feed = Feed::start(&s, Some(&log)).expect("replay starts");
    let mut waited = 0;
    while !feed.wait(Duration::from_millis(200)) {
        waited += 1;
        assert!(waited < 300, "the replay did not finish in 60 s");
    }
    let mut data = feed.data();
    // The agent's RSS is the one number that is not a function of the log.
    data.header.rss_mib = None;
    let ring = feed.recent().clone();
    feed.shutdown().expect("shutdown");
    (data, ring)
}

fn render(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(W, H)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..H {
        let line: String = (0..W).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, ring: &RecentTraces, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE), &|id| ring.get(id));
}

fn type_text(app: &mut App, ring: &RecentTraces, text: &str) {
    for c in text.chars() {
        key(app, ring, KeyCode::Char(c));
    }
}

/// Compare with `snapshots/NAME.txt` (or write it with
/// ZT_UPDATE_SNAPSHOTS=1).
fn snapshot(name: &str, screen: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/dashboard/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var("ZT_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, screen).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with ZT_UPDATE_SNAPSHOTS=1 to write it)",
            path.display()
        )
    });
    if want != screen {
        let first = want
            .lines()
            .zip(screen.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "snapshot {name} differs from line {}:\n--- want\n{}\n--- got\n{}\n--- whole screen\n{screen}",
            first + 1,
            want.lines().nth(first).unwrap_or(""),
            screen.lines().nth(first).unwrap_or("")
        );
    }
}

fn line_with<'a>(screen: &'a str, needles: &[&str]) -> &'a str {
    screen
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with all of {needles:?} in:\n{screen}"))
}

#[test]
fn main_view_shows_traces_graph_endpoints_and_insights() {
    let (data, _) = replayed();
    let app = App::new(data);
    let screen = render(&app);
    snapshot("main", &screen);
    // Header: the source, the counters, sampling and filters.
    line_with(
        &screen,
        &["replay of demo_catalog.zrec", "traces 30", "drops 0"],
    );
    line_with(
        &screen,
        &["sampling: none (every trace kept)", "filters: none"],
    );
    // Traces: all 30, with their status.
    line_with(&screen, &["Traces (30 of 30 held"]);
    // As many rows as fit (23 under the panel's header), newest first.
    let shown = app
        .data
        .traces
        .iter()
        .filter(|t| screen.contains(&format!("│{} ", &t.summary.trace_id.to_string()[..16])))
        .count();
    assert_eq!(shown, 23, "trace rows on screen:\n{screen}");
    let newest = app.data.traces.last().unwrap().summary.trace_id.to_string();
    line_with(&screen, &[&newest[..16], "loadgen", "GET /api/users/{id}"]);
    line_with(&screen, &["loadgen", "GET /api/users/{id}", "502"]);
    // Graph: each caller with its callees and counts (the load: 30
    // requests, 3 of them stopped at auth; 6 SQL statements + 1 list per
    // catalog request; 2 Redis reads).
    line_with(&screen, &["loadgen", "→ gateway", "http", " 30 "]);
    line_with(&screen, &["gateway", "→ auth", "http", " 30 "]);
    line_with(&screen, &["→ catalog", "http", " 27 "]);
    line_with(&screen, &["catalog", "→ mysql", "mysql", " 192 "]);
    line_with(&screen, &["→ redis", "redis", " 54 "]);
    // Slow endpoints: per service and operation, with percentiles.
    line_with(&screen, &["Slow endpoints (by p95; traces over 100 ms: 0)"]);
    line_with(&screen, &["catalog", "GET /catalog/{id}", " 27 "]);
    // Insights: N+1 naming the service and statement, the cache
    // candidate, the root cause naming the originating service and error.
    line_with(
        &screen,
        &["N+1", "catalog runs `SELECT cents FROM zt_prices"],
    );
    line_with(&screen, &["cache", "catalog reads `GET zt:demo:config`"]);
    line_with(
        &screen,
        &[
            "root cause",
            "502s at loadgen GET /api/users/{id} originate in catalog → mysql",
        ],
    );
    // The help line.
    line_with(
        &screen,
        &[
            "q", "quit", "Tab", "panel", "/", "filter", "p", "pause", "s", "sort",
        ],
    );
}

#[test]
fn enter_opens_the_selected_trace_as_a_tree_and_esc_goes_back() {
    let (data, ring) = replayed();
    let mut app = App::new(data);
    // Errors first, then the newest: the first row is a failed trace.
    key(&mut app, &ring, KeyCode::Char('s'));
    key(&mut app, &ring, KeyCode::Char('s'));
    key(&mut app, &ring, KeyCode::Char('s'));
    key(&mut app, &ring, KeyCode::Char('s'));
    assert_eq!(app.sort.name(), "errors first");
    let first = app.visible_traces()[0].summary.clone();
    assert!(first.error);
    key(&mut app, &ring, KeyCode::Enter);
    let screen = render(&app);
    snapshot("trace", &screen);
    assert_eq!(
        app.open.as_ref().map(|o| o.summary.trace_id),
        Some(first.trace_id)
    );
    line_with(&screen, &["Trace", &first.trace_id.to_string()]);
    line_with(&screen, &["● critical path", "[duration · self time]"]);
    // The root is unparented: the link reason says why.
    line_with(
        &screen,
        &["gateway: GET /api/users/{id}", "self", "[no parent: "],
    );
    // Durations, statuses, DB statements, the critical path mark.
    line_with(&screen, &["● ", "catalog → mysql", "SELECT", "self"]);
    line_with(&screen, &["● ", "ERROR"]);
    key(&mut app, &ring, KeyCode::Esc);
    assert!(app.open.is_none());
    assert!(render(&app).contains("Traces (30 of 30 held"));
}

#[test]
fn slash_filters_traces_on_service_or_operation() {
    let (data, ring) = replayed();
    let mut app = App::new(data);
    key(&mut app, &ring, KeyCode::Char('/'));
    type_text(&mut app, &ring, "nothing-like-this");
    key(&mut app, &ring, KeyCode::Enter);
    let screen = render(&app);
    snapshot("filtered_out", &screen);
    line_with(&screen, &["Traces (0 of 30 held", "/nothing-like-this"]);
    for t in &app.data.traces {
        let id = t.summary.trace_id.to_string();
        let row = format!("│{} ", &id[..16]);
        assert!(!screen.contains(&row), "no trace rows:\n{screen}");
    }
    // Esc clears it; a filter on the service name (any case) keeps all.
    key(&mut app, &ring, KeyCode::Esc);
    assert!(app.filter.is_empty());
    key(&mut app, &ring, KeyCode::Char('/'));
    type_text(&mut app, &ring, "LOADGEN");
    key(&mut app, &ring, KeyCode::Enter);
    assert_eq!(app.visible_traces().len(), 30);
    key(&mut app, &ring, KeyCode::Esc);
    key(&mut app, &ring, KeyCode::Char('/'));
    type_text(&mut app, &ring, "api/users");
    key(&mut app, &ring, KeyCode::Enter);
    assert_eq!(app.visible_traces().len(), 30);
}

#[test]
fn an_insight_opens_its_example_trace() {
    let (data, ring) = replayed();
    let mut app = App::new(data);
    // Tab through the panels to Insights.
    for _ in 0..3 {
        key(&mut app, &ring, KeyCode::Tab);
    }
    assert_eq!(app.panel, Panel::Insights);
    let at = app
        .data
        .findings
        .iter()
        .position(|f| f.text.contains("zt_discounts"))
        .expect("the root-cause finding");
    for _ in 0..at {
        key(&mut app, &ring, KeyCode::Down);
    }
    let screen = render(&app);
    snapshot("insight_selected", &screen);
    // The detail box shows the whole finding, its hint and evidence.
    line_with(&screen, &["evidence: 3", "trace", "(Enter)"]);
    key(&mut app, &ring, KeyCode::Enter);
    let open = app.open.as_ref().expect("the example trace opens");
    assert!(open.summary.error);
    let screen = render(&app);
    line_with(&screen, &["catalog → mysql", "zt_discounts", "ERROR"]);
}

#[test]
fn pause_keeps_the_view_and_sort_by_duration_puts_the_slowest_first() {
    let (data, ring) = replayed();
    let mut app = App::new(data.clone());
    key(&mut app, &ring, KeyCode::Char('p'));
    assert!(render(&app).contains("PAUSED"));
    app.update(Data::default());
    assert_eq!(
        app.data.traces.len(),
        30,
        "paused: the new data is not shown"
    );
    key(&mut app, &ring, KeyCode::Char('p'));
    app.update(Data::default());
    assert!(app.data.traces.is_empty());
    app.update(data);
    key(&mut app, &ring, KeyCode::Char('s'));
    assert_eq!(app.sort.name(), "duration");
    let v = app.visible_traces();
    let max = v.iter().map(|t| t.summary.duration_ns).max().unwrap();
    assert_eq!(v[0].summary.duration_ns, max);
    key(&mut app, &ring, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn the_header_says_which_sampling_and_filters_are_in_force() {
    use super::data::{filters_text, sampling_text};
    let mut s = Settings::default();
    assert_eq!(sampling_text(&s).unwrap(), "none (every trace kept)");
    assert_eq!(filters_text(&s, true).unwrap(), "all processes");
    assert_eq!(filters_text(&s, false).unwrap(), "none");
    s.sampling.ratio = 0.25;
    s.sampling.keep_errors = true;
    s.sampling.keep_slower_than_ms = Some(300);
    assert_eq!(
        sampling_text(&s).unwrap(),
        "25% of traces, inbound flags followed; keeps errors, slower than 300 ms"
    );
    s.capture.pids = vec![10, 11];
    s.capture.exclude_ports = vec![22];
    s.capture.tls = false;
    s.filter.ignore_routes = vec!["/health*".into()];
    assert_eq!(
        filters_text(&s, true).unwrap(),
        "pids 10,11; not ports 22; ignore routes /health*; off: tls"
    );
    // A replay: the kernel filters do not apply.
    assert_eq!(
        filters_text(&s, false).unwrap(),
        "ignore routes /health*; off: tls"
    );
}

#[test]
fn small_terminals_render_without_panicking() {
    let (data, ring) = replayed();
    let mut app = App::new(data);
    for (w, h) in [(80, 24), (40, 10), (10, 4), (1, 1), (300, 3)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, &app)).unwrap();
    }
    key(&mut app, &ring, KeyCode::Enter);
    assert!(app.open.is_some());
    for (w, h) in [(80, 24), (20, 5), (1, 1)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, &app)).unwrap();
    }
}

#[test]
fn the_graph_names_the_proxies_and_the_mesh() {
    let (mut data, _) = replayed();
    // As the pipeline fills them on a host with a sidecar (e2e_mesh
    // checks them live): an edge through nginx and one pod.
    let e = data
        .edges
        .iter_mut()
        .find(|e| e.client == "gateway" && e.server == "auth")
        .expect("gateway -> auth");
    e.via = vec!["nginx".into()];
    let pod = "netns:4026532300: nginx sidecar nginx for auth (30 requests in, 0 out)";
    data.mesh = vec![pod.to_owned()];
    let screen = render(&App::new(data.clone()));
    line_with(
        &screen,
        &["gateway", "→ auth through nginx", "http", " 30 "],
    );
    line_with(
        &screen,
        &[
            "Service graph (",
            "mesh: 1 pod behind sidecars: netns:4026532300",
        ],
    );
    let report = super::plain::report(&data, 0, None);
    let graph = report
        .split("=== Service Dependency Graph ===")
        .nth(1)
        .and_then(|r| r.split("=== Trace Example").next())
        .expect("graph section");
    assert!(
        graph.contains("  → auth (http through nginx): 30 calls"),
        "{graph}"
    );
    assert!(graph.contains(&format!("mesh: {pod}\n")), "{graph}");
    // Without them: neither is said.
    let (plain, _) = replayed();
    assert!(!render(&App::new(plain.clone())).contains("mesh:"));
    assert!(!super::plain::report(&plain, 0, None).contains("mesh:"));
}
