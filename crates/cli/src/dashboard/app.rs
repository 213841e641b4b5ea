//! The dashboard's state (one struct) and its input handling, apart from
//! drawing (ui.rs): keys change the state, the next frame shows it.

use super::data::Data;
use crate::render::{tree_rows, TreeRow};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::sync::Arc;
use zt_trace::recent::RecentTrace;
use zt_trace::span_core::{Trace, TraceId};
use zt_trace::stages::insights::TraceSummary;

/// The panels `Tab` moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Traces,
    Graph,
    Slow,
    Insights,
}

impl Panel {
    pub const ALL: [Panel; 4] = [Panel::Traces, Panel::Graph, Panel::Slow, Panel::Insights];

    fn next(self) -> Panel {
        Panel::ALL[(self as usize + 1) % Panel::ALL.len()]
    }

    fn prev(self) -> Panel {
        Panel::ALL[(self as usize + Panel::ALL.len() - 1) % Panel::ALL.len()]
    }
}

/// Order of the trace table (`s` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Duration,
    Spans,
    Service,
    Errors,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Duration => "duration",
            Sort::Spans => "spans",
            Sort::Service => "service",
            Sort::Errors => "errors first",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Newest => Sort::Duration,
            Sort::Duration => Sort::Spans,
            Sort::Spans => Sort::Service,
            Sort::Service => Sort::Errors,
            Sort::Errors => Sort::Newest,
        }
    }
}

/// A trace opened as a tree.
pub struct OpenTrace {
    pub summary: TraceSummary,
    pub rows: Vec<TreeRow>,
    pub scroll: usize,
}

impl OpenTrace {
    pub fn new(trace: &Trace) -> OpenTrace {
        OpenTrace {
            summary: TraceSummary::of(trace),
            rows: tree_rows(trace),
            scroll: 0,
        }
    }
}

/// The whole state of the dashboard.
pub struct App {
    pub data: Data,
    pub panel: Panel,
    pub sort: Sort,
    pub filter: String,
    pub editing_filter: bool,
    pub paused: bool,
    pub quit: bool,
    /// Selected row per panel.
    pub selected: [usize; 4],
    pub open: Option<OpenTrace>,
    /// A one-line notice (a trace no longer held, ...).
    pub notice: Option<String>,
}

impl App {
    pub fn new(data: Data) -> App {
        App {
            data,
            panel: Panel::Traces,
            sort: Sort::Newest,
            filter: String::new(),
            editing_filter: false,
            paused: false,
            quit: false,
            selected: [0; 4],
            open: None,
            notice: None,
        }
    }

    /// New data, unless paused.
    pub fn update(&mut self, data: Data) {
        if !self.paused {
            self.data = data;
        }
    }

    /// The trace table's rows: filtered (`/`: service or operation
    /// contains the text, any case) and sorted.
    pub fn visible_traces(&self) -> Vec<&RecentTrace> {
        let needle = self.filter.to_lowercase();
        let mut v: Vec<&RecentTrace> = self
            .data
            .traces
            .iter()
            .filter(|t| {
                needle.is_empty()
                    || t.summary.service.to_lowercase().contains(&needle)
                    || t.summary.operation.to_lowercase().contains(&needle)
            })
            .collect();
        match self.sort {
            Sort::Newest => v.sort_by_key(|t| std::cmp::Reverse(t.seq)),
            Sort::Duration => v.sort_by_key(|t| std::cmp::Reverse(t.summary.duration_ns)),
            Sort::Spans => v.sort_by_key(|t| std::cmp::Reverse(t.summary.spans)),
            Sort::Service => v.sort_by(|a, b| {
                (&a.summary.service, &a.summary.operation, b.seq).cmp(&(
                    &b.summary.service,
                    &b.summary.operation,
                    a.seq,
                ))
            }),
            Sort::Errors => v.sort_by_key(|t| std::cmp::Reverse((t.summary.error, t.seq))),
        }
        v
    }

    /// Rows in the focused panel (for moving the selection).
    fn rows(&self, panel: Panel) -> usize {
        match panel {
            Panel::Traces => self.visible_traces().len(),
            Panel::Graph => self.data.edges.len(),
            Panel::Slow => self.data.endpoints.len() + self.slow_traces().len(),
            Panel::Insights => self.data.findings.len(),
        }
    }

    /// Slow traces over the threshold, slowest first.
    pub fn slow_traces(&self) -> Vec<&zt_trace::stages::insights::SlowTrace> {
        let mut v: Vec<_> = self.data.slow.iter().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.duration_ns));
        v.truncate(10);
        v
    }

    /// The trace the selected row of the focused panel points at.
    fn selected_trace(&self) -> Option<TraceId> {
        let sel = self.selected[self.panel as usize];
        match self.panel {
            Panel::Traces => self.visible_traces().get(sel).map(|t| t.summary.trace_id),
            Panel::Insights => self.data.findings.get(sel).and_then(|f| f.evidence.example),
            Panel::Slow => {
                let n = self.data.endpoints.len();
                if sel < n {
                    self.data.endpoints[sel].slowest
                } else {
                    self.slow_traces().get(sel - n).map(|s| s.trace_id)
                }
            }
            Panel::Graph => None,
        }
    }

    /// One key. `lookup` finds a trace by id (the recent ring).
    pub fn on_key(&mut self, key: KeyEvent, lookup: &dyn Fn(TraceId) -> Option<Arc<Trace>>) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => {
                    self.filter.push(c);
                    self.selected[Panel::Traces as usize] = 0;
                }
                _ => {}
            }
            return;
        }
        self.notice = None;
        if let Some(open) = &mut self.open {
            match key.code {
                KeyCode::Esc | KeyCode::Backspace => self.open = None,
                KeyCode::Char('q') => self.quit = true,
                KeyCode::Up => open.scroll = open.scroll.saturating_sub(1),
                KeyCode::Down => {
                    open.scroll = (open.scroll + 1).min(open.rows.len().saturating_sub(1))
                }
                KeyCode::PageUp => open.scroll = open.scroll.saturating_sub(10),
                KeyCode::PageDown => {
                    open.scroll = (open.scroll + 10).min(open.rows.len().saturating_sub(1))
                }
                KeyCode::Char('p') => self.paused = !self.paused,
                _ => {}
            }
            return;
        }
        let p = self.panel as usize;
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Tab | KeyCode::Right => self.panel = self.panel.next(),
            KeyCode::BackTab | KeyCode::Left => self.panel = self.panel.prev(),
            KeyCode::Up => self.selected[p] = self.selected[p].saturating_sub(1),
            KeyCode::Down => {
                let n = self.rows(self.panel);
                self.selected[p] = (self.selected[p] + 1).min(n.saturating_sub(1));
            }
            KeyCode::PageUp => self.selected[p] = self.selected[p].saturating_sub(10),
            KeyCode::PageDown => {
                let n = self.rows(self.panel);
                self.selected[p] = (self.selected[p] + 10).min(n.saturating_sub(1));
            }
            KeyCode::Home => self.selected[p] = 0,
            KeyCode::Char('/') => {
                self.panel = Panel::Traces;
                self.editing_filter = true;
            }
            KeyCode::Esc => {
                self.filter.clear();
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.selected[Panel::Traces as usize] = 0;
            }
            KeyCode::Enter => match self.selected_trace() {
                Some(id) => match lookup(id) {
                    Some(t) => self.open = Some(OpenTrace::new(&t)),
                    None => {
                        self.notice = Some(format!(
                            "trace {id} is no longer among the recent traces held"
                        ))
                    }
                },
                None => {
                    if self.panel == Panel::Graph {
                        self.notice = Some("the graph has no trace to open".to_owned());
                    }
                }
            },
            _ => {}
        }
    }
}
