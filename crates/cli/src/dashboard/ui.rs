//! Drawing: one function per panel, reading [`App`] only.

use super::app::{App, Panel};
use super::data::Header;
use crate::render::fmt_duration;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

const KEYS: &[(&str, &str)] = &[
    ("q", "quit"),
    ("Tab", "panel"),
    ("↑↓", "move"),
    ("Enter", "open trace"),
    ("Esc", "back"),
    ("/", "filter"),
    ("p", "pause"),
    ("s", "sort"),
];

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [header, body, help] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    if app.open.is_some() {
        draw_trace(frame, body, app);
    } else {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
        let [traces, insights] =
            Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(top);
        let [graph, slow] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom);
        draw_traces(frame, traces, app);
        draw_insights(frame, insights, app);
        draw_graph(frame, graph, app);
        draw_slow(frame, slow, app);
    }
    draw_help(frame, help, app);
}

fn block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    Block::bordered().title(title).border_style(style)
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        Some(v) => format!("{v:.0}"),
        None => "-".to_owned(),
    }
}

fn header_lines(h: &Header, app: &App) -> [String; 2] {
    let mut first = format!("zt-trace dashboard · {}", h.source);
    if h.finished {
        first.push_str(" (ended)");
    }
    match (h.events_per_s, h.spans_per_s) {
        (Some(_), _) | (_, Some(_)) => first.push_str(&format!(
            " │ events/s {} │ spans/s {}",
            rate(h.events_per_s),
            rate(h.spans_per_s)
        )),
        _ => first.push_str(&format!(" │ events {} │ spans {}", h.events, h.spans)),
    }
    first.push_str(&format!(
        " │ traces {} │ drops {} │ in flight {}",
        h.traces, h.drops, h.in_flight
    ));
    match (h.cpu_percent, h.rss_mib) {
        (Some(c), Some(r)) => first.push_str(&format!(" │ agent CPU {c:.1}% RSS {r:.0} MiB")),
        (None, Some(r)) => first.push_str(&format!(" │ agent RSS {r:.0} MiB")),
        _ => {}
    }
    let mut second = format!("sampling: {} │ filters: {}", h.sampling, h.filters);
    second.push_str(&format!(" │ sort: {}", app.sort.name()));
    if !app.filter.is_empty() || app.editing_filter {
        second.push_str(&format!(" │ /{}", app.filter));
        if app.editing_filter {
            second.push('▏');
        }
    }
    if app.paused {
        second.push_str(" │ PAUSED");
    }
    [first, second]
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [a, b] = header_lines(&app.data.header, app);
    let lines = vec![
        Line::from(Span::styled(a, Style::new().add_modifier(Modifier::BOLD))),
        Line::from(Span::styled(b, Style::new().fg(Color::Gray))),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_help(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = Vec::new();
    if let Some(n) = &app.notice {
        spans.push(Span::styled(
            format!("{n}  "),
            Style::new().fg(Color::Yellow),
        ));
    }
    for (k, d) in KEYS {
        spans.push(Span::styled(
            format!(" {k} "),
            Style::new().fg(Color::Black).bg(Color::Gray),
        ));
        spans.push(Span::raw(format!(" {d} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn selected_style() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

fn table_state(app: &App, panel: Panel, rows: usize) -> TableState {
    let mut st = TableState::default();
    if rows > 0 {
        st.select(Some(app.selected[panel as usize].min(rows - 1)));
    }
    st
}

fn draw_traces(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let traces = app.visible_traces();
    let rows: Vec<Row<'_>> = traces
        .iter()
        .map(|t| {
            let s = &t.summary;
            let id = s.trace_id.to_string();
            let style = if s.error {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(id[..16].to_owned()),
                Cell::from(s.service.clone()),
                Cell::from(s.operation.clone()),
                Cell::from(fmt_duration(s.duration_ns)),
                Cell::from(s.spans.to_string()),
                Cell::from(s.status.clone()),
            ])
            .style(style)
        })
        .collect();
    let n = rows.len();
    let title = format!(
        " Traces ({} of {} held · sort {}{}) ",
        n,
        app.data.traces.len(),
        app.sort.name(),
        if app.filter.is_empty() {
            String::new()
        } else {
            format!(" · /{}", app.filter)
        }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(12),
            Constraint::Min(16),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new([
            "TRACE ID",
            "SERVICE",
            "OPERATION",
            "DURATION",
            "SPANS",
            "STATUS",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(selected_style())
    .block(block(title, app.panel == Panel::Traces));
    let mut st = table_state(app, Panel::Traces, n);
    frame.render_stateful_widget(table, area, &mut st);
}

fn draw_insights(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let findings = &app.data.findings;
    let focused = app.panel == Panel::Insights;
    let outer = block(format!(" Insights ({}) ", findings.len()), focused);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [list, detail] = Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(inner);
    let rows: Vec<Row<'_>> = findings
        .iter()
        .map(|f| {
            let color = match f.kind {
                zt_trace::FindingKind::RootCause | zt_trace::FindingKind::ErrorHotSpot => {
                    Color::Red
                }
                zt_trace::FindingKind::NPlusOne | zt_trace::FindingKind::SlowStatement => {
                    Color::Yellow
                }
                _ => Color::Cyan,
            };
            Row::new(vec![
                Cell::from(Span::styled(f.kind.label(), Style::new().fg(color))),
                Cell::from(f.text.clone()),
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(rows, [Constraint::Length(10), Constraint::Min(10)])
        .row_highlight_style(selected_style());
    let mut st = table_state(app, Panel::Insights, n);
    frame.render_stateful_widget(table, list, &mut st);
    let sel = app.selected[Panel::Insights as usize].min(n.saturating_sub(1));
    let text = match findings.get(sel) {
        Some(f) => {
            let e = &f.evidence;
            let mut ev = format!("evidence: {}", e.count);
            if let Some(of) = e.of {
                ev.push_str(&format!(" of {of}"));
            }
            if let Some(p) = e.per_request {
                ev.push_str(&format!(", {p:.1} per request"));
            }
            if let Some(l) = e.latency_ns {
                ev.push_str(&format!(", {}", fmt_duration(l)));
            }
            if let Some(t) = e.example {
                ev.push_str(&format!("; trace {t} (Enter)"));
            }
            format!("{}\n→ {}\n{ev}", f.text, f.hint)
        }
        None => "no findings yet".to_owned(),
    };
    frame.render_widget(
        Paragraph::new(text)
            .style(Style::new().fg(Color::Gray))
            .wrap(Wrap { trim: true }),
        detail,
    );
}

fn draw_graph(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let edges = &app.data.edges;
    let mut last_client = "";
    let rows: Vec<Row<'_>> = edges
        .iter()
        .map(|e| {
            let caller = if e.client == last_client {
                String::new()
            } else {
                e.client.clone()
            };
            last_client = &e.client;
            let style = if e.errors > 0 {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(caller),
                Cell::from(format!("→ {}{}", e.server, crate::graph::through(&e.via))),
                Cell::from(e.protocol.clone()),
                Cell::from(e.requests.to_string()),
                Cell::from(format!("{:.1}ms", e.avg_ms)),
                Cell::from(format!("{:.1}ms", e.p95_ms)),
                Cell::from(e.errors.to_string()).style(style),
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Min(14),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(4),
        ],
    )
    .header(
        Row::new(["CALLER", "CALLEE", "PROTO", "COUNT", "AVG", "P95", "ERR"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(selected_style())
    .block(block(
        match app.data.mesh.len() {
            0 => format!(" Service graph ({n} edges) "),
            pods => format!(
                " Service graph ({n} edges; mesh: {pods} pod{} behind sidecars: {}) ",
                if pods == 1 { "" } else { "s" },
                app.data.mesh.join("; ")
            ),
        },
        app.panel == Panel::Graph,
    ));
    let mut st = table_state(app, Panel::Graph, n);
    frame.render_stateful_widget(table, area, &mut st);
}

fn draw_slow(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut rows: Vec<Row<'_>> = app
        .data
        .endpoints
        .iter()
        .map(|e| {
            Row::new(vec![
                Cell::from(e.service.clone()),
                Cell::from(e.operation.clone()),
                Cell::from(e.count.to_string()),
                Cell::from(fmt_duration(e.p50_ns)),
                Cell::from(fmt_duration(e.p95_ns)),
                Cell::from(fmt_duration(e.p99_ns)),
            ])
            .style(if e.p95_ns > app.data.slow_ms * 1_000_000 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            })
        })
        .collect();
    for s in app.slow_traces() {
        let id = s.trace_id.to_string();
        rows.push(
            Row::new(vec![
                Cell::from(format!("slow {}", &id[..8])),
                Cell::from(format!("{} {}", s.service, s.operation)),
                Cell::from(""),
                Cell::from(""),
                Cell::from(fmt_duration(s.duration_ns)),
                Cell::from(if s.error { "error" } else { "" }),
            ])
            .style(Style::new().fg(Color::Magenta)),
        );
    }
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Min(14),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(["SERVICE", "OPERATION", "COUNT", "P50", "P95", "P99"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(selected_style())
    .block(block(
        format!(
            " Slow endpoints (by p95; traces over {} ms: {}) ",
            app.data.slow_ms,
            app.data.slow.len()
        ),
        app.panel == Panel::Slow,
    ));
    let mut st = table_state(app, Panel::Slow, n);
    frame.render_stateful_widget(table, area, &mut st);
}

fn draw_trace(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let Some(open) = &app.open else { return };
    let s = &open.summary;
    let title = format!(
        " Trace {} · {} {} · {} · {} spans · {} ",
        s.trace_id,
        s.service,
        s.operation,
        fmt_duration(s.duration_ns),
        s.spans,
        s.status
    );
    let outer = block(title, true);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [legend, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("●", Style::new().fg(Color::Yellow)),
            Span::raw(
                " critical path (what set the end-to-end time) · [duration · self time] · Esc back",
            ),
        ]))
        .style(Style::new().fg(Color::Gray)),
        legend,
    );
    let lines: Vec<Line<'_>> = open
        .rows
        .iter()
        .skip(open.scroll)
        .map(|r| {
            let style = if r.error {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(
                    if r.critical { "● " } else { "  " },
                    Style::new().fg(Color::Yellow),
                ),
                Span::styled(r.prefix.clone(), Style::new().fg(Color::DarkGray)),
                Span::styled(r.text.clone(), style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
}
