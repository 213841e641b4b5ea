//! Text rendering of traces (the default `zt-trace run` output).

use span_core::{AppProtocol, Span, SpanKind, StatusCode, Trace};
use std::collections::HashMap;
use std::fmt::Write;
use zt_trace::stages::insights::{Profile, Tree};

/// `125ms`, `3.4ms`, `0.21ms`, `12.3s`.
pub fn fmt_duration(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    if ms >= 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else if ms >= 1.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

/// Where a client span went, for leaves (databases, unobserved services).
fn peer(span: &Span) -> String {
    let v = &span.view;
    let hostport = match v.called_server() {
        Some((addr, Some(p))) => format!("{addr}:{p}"),
        Some((addr, None)) => addr.into_owned(),
        None => "?".to_owned(),
    };
    match v.protocol.and_then(AppProtocol::db_system) {
        Some(db) => format!("{db} {hostport}"),
        None => hostport,
    }
}

fn status_suffix(span: &Span) -> String {
    let v = &span.view;
    let mut s = String::new();
    if let Some(code) = v.status.http {
        if code >= 400 {
            let _ = write!(s, " {code}");
        }
    }
    if let Some(code) = v.status.grpc {
        if code != 0 {
            let _ = write!(s, " grpc={code}");
        }
    }
    if span.status.code == StatusCode::Error {
        s.push_str(" ERROR");
        if let Some(m) = &span.status.message {
            let m: String = m.chars().take(60).collect();
            let _ = write!(s, " ({m})");
        }
    }
    if v.incomplete.is_some() {
        s.push_str(" (incomplete)");
    }
    s
}

/// Render a trace as a tree. A client span whose only child is the server
/// span of the same request is shown once, as that server span.
pub fn render_trace(trace: &Trace) -> String {
    let mut children: HashMap<u64, Vec<&Span>> = HashMap::new();
    let ids: std::collections::HashSet<u64> = trace.spans.iter().map(|s| s.span_id.0).collect();
    let mut roots = Vec::new();
    for s in &trace.spans {
        match s.parent_span_id {
            Some(p) if ids.contains(&p.0) => children.entry(p.0).or_default().push(s),
            _ => roots.push(s),
        }
    }
    for v in children.values_mut() {
        v.sort_by_key(|s| s.start_unix_nanos);
    }
    let mut out = String::new();
    for root in roots {
        render_node(root, &children, "", None, &mut out);
    }
    out
}

fn render_node(
    span: &Span,
    children: &HashMap<u64, Vec<&Span>>,
    indent: &str,
    branch: Option<bool>,
    out: &mut String,
) {
    let kids = children
        .get(&span.span_id.0)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // Collapse client -> server of the same request.
    let (shown, kids, caller) = match kids {
        [only] if span.kind == SpanKind::Client && only.kind == SpanKind::Server => {
            let grand = children
                .get(&only.span_id.0)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            (*only, grand, Some(span))
        }
        _ => (span, kids, None),
    };
    let (prefix, child_indent) = match branch {
        None => (String::new(), String::new()),
        Some(last) => (
            format!("{indent}{}", if last { "└─ " } else { "├─ " }),
            format!("{indent}{}", if last { "   " } else { "│  " }),
        ),
    };
    let service = &shown.resource.service_name;
    let line = if shown.kind == SpanKind::Client {
        format!(
            "{service} → {}: {} [{}]{}",
            peer(shown),
            shown.name,
            fmt_duration(shown.duration_nanos()),
            status_suffix(shown)
        )
    } else {
        let from = match (caller, branch) {
            (Some(c), None) => format!("  (from {})", c.resource.service_name),
            _ => String::new(),
        };
        format!(
            "{service}: {} [{}]{}{from}",
            shown.name,
            fmt_duration(shown.duration_nanos()),
            status_suffix(shown)
        )
    };
    let _ = writeln!(out, "{prefix}{line}");
    let n = kids.len();
    for (i, k) in kids.iter().enumerate() {
        render_node(k, children, &child_indent, Some(i + 1 == n), out);
    }
}

/// One line of a trace shown as a tree with its critical path and self
/// times (the dashboard's trace view and the plain report's example).
#[derive(Clone, Debug, PartialEq)]
pub struct TreeRow {
    /// Tree drawing before the text (`├─ `, `│  └─ `).
    pub prefix: String,
    pub text: String,
    /// On the critical path (for a collapsed client -> server pair: either).
    pub critical: bool,
    pub error: bool,
    pub duration_ns: u64,
    pub self_ns: u64,
}

impl TreeRow {
    /// `● prefix text [dur · self s]`: the plain-text form.
    pub fn to_line(&self) -> String {
        format!(
            "{} {}{}",
            if self.critical { "●" } else { " " },
            self.prefix,
            self.text
        )
    }
}

/// The rows of `trace` as a tree: like [`render_trace`] (a client span
/// whose only child is the server span of the same request is one row),
/// with database statements, each span's duration and self time, the
/// critical path marked, and why a span has no parent when it has none.
pub fn tree_rows(trace: &Trace) -> Vec<TreeRow> {
    let mut tree = Tree::default();
    tree.build(&trace.spans);
    let profile = Profile::with_tree(trace, &tree);
    let mut rows = Vec::new();
    // (span, indent, branch: None for a root / Some(is_last))
    let mut stack: Vec<(usize, String, Option<bool>)> = tree
        .roots()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|r| (r, String::new(), None))
        .collect();
    let spans = &trace.spans;
    while let Some((i, indent, branch)) = stack.pop() {
        let span = &spans[i];
        let mut shown = i;
        let mut caller = None;
        if span.kind == SpanKind::Client && tree.child_count(i) == 1 {
            if let Some(only) = tree.children(i).next() {
                if spans[only].kind == SpanKind::Server {
                    shown = only;
                    caller = Some(i);
                }
            }
        }
        let s = &spans[shown];
        let (prefix, child_indent) = match branch {
            None => (String::new(), String::new()),
            Some(last) => (
                format!("{indent}{}", if last { "└─ " } else { "├─ " }),
                format!("{indent}{}", if last { "   " } else { "│  " }),
            ),
        };
        let service = &s.resource.service_name;
        let timing = format!(
            "[{} · self {}]",
            fmt_duration(s.duration_nanos()),
            fmt_duration(profile.self_ns[shown])
        );
        let mut text = if s.kind == SpanKind::Client {
            format!(
                "{service} → {}: {} {timing}{}",
                peer(s),
                zt_trace::stages::insights::describe_span(s),
                status_suffix(s)
            )
        } else {
            format!("{service}: {} {timing}{}", s.name, status_suffix(s))
        };
        if let (Some(c), None) = (caller, branch) {
            let _ = write!(text, "  (from {})", spans[c].resource.service_name);
        }
        let top = caller.unwrap_or(shown);
        if tree.parent(top).is_none() {
            if let Some(reason) = spans[top].view.link_reason {
                let _ = write!(text, "  [no parent: {}]", reason.as_str());
            }
        }
        rows.push(TreeRow {
            prefix,
            text,
            critical: profile.critical[shown] || caller.is_some_and(|c| profile.critical[c]),
            error: s.view.status.error || caller.is_some_and(|c| spans[c].view.status.error),
            duration_ns: s.duration_nanos(),
            self_ns: profile.self_ns[shown],
        });
        let kids: Vec<usize> = tree.children(shown).collect();
        let n = kids.len();
        for (k, c) in kids.into_iter().enumerate().rev() {
            stack.push((c, child_indent.clone(), Some(k + 1 == n)));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use span_core::{Attributes, Peer, Resource, SpanId, SpanView, Status, TraceId};
    use std::sync::Arc;

    fn span(
        id: u64,
        parent: Option<u64>,
        kind: SpanKind,
        svc: &str,
        name: &str,
        start: u64,
        dur_ms: u64,
    ) -> Span {
        let mut attributes = Attributes::new();
        attributes.set("server.address", "127.0.0.1");
        attributes.set("server.port", 5432i64);
        Span {
            trace_id: TraceId(1),
            span_id: SpanId(id),
            parent_span_id: parent.map(SpanId),
            name: name.into(),
            kind,
            start_unix_nanos: start,
            end_unix_nanos: start + dur_ms * 1_000_000,
            status: Status::UNSET,
            attributes,
            links: vec![],
            resource: Arc::new(Resource {
                service_name: svc.into(),
                attributes: Attributes::new(),
            }),
            view: Box::new(SpanView {
                peer: Some(Peer {
                    ip: [127, 0, 0, 1].into(),
                    port: 5432,
                    resource: None,
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn renders_the_documented_shape() {
        let t = Trace {
            trace_id: TraceId(1),
            spans: vec![
                span(
                    1,
                    None,
                    SpanKind::Server,
                    "api-gateway",
                    "GET /users",
                    0,
                    125,
                ),
                span(2, Some(1), SpanKind::Client, "api-gateway", "GET", 1, 13),
                span(
                    3,
                    Some(2),
                    SpanKind::Server,
                    "auth-service",
                    "GET /validate",
                    2,
                    12,
                ),
                span(4, Some(1), SpanKind::Client, "api-gateway", "GET", 20, 46),
                span(
                    5,
                    Some(4),
                    SpanKind::Server,
                    "user-service",
                    "GET /users",
                    21,
                    45,
                ),
                span(
                    6,
                    Some(5),
                    SpanKind::Client,
                    "user-service",
                    "SELECT users",
                    22,
                    3,
                ),
            ],
        };
        let text = render_trace(&t);
        assert_eq!(
            text,
            "api-gateway: GET /users [125ms]\n\
             ├─ auth-service: GET /validate [12ms]\n\
             └─ user-service: GET /users [45ms]\n\
             \u{20}  └─ user-service → 127.0.0.1:5432: SELECT users [3.0ms]\n"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(125_000_000), "125ms");
        assert_eq!(fmt_duration(3_400_000), "3.4ms");
        assert_eq!(fmt_duration(210_000), "0.21ms");
        assert_eq!(fmt_duration(12_300_000_000), "12.3s");
    }
}
