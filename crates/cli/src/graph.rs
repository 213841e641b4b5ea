//! The service graph in four forms: text (the seed's), GraphViz DOT, SVG
//! laid out in Rust (layout-rs: no graphviz binary needed), and JSON.

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::geometry::{get_size_for_str, pad_shape_scalar, Point};
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::HashMap;
use std::fmt::Write as _;
use zt_trace::stages::graph::{GraphEdge, GraphSnapshot, NodeKind};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GraphFormat {
    /// `caller calls:` then one line per callee (the default).
    Text,
    /// GraphViz DOT with labelled edges.
    Dot,
    /// A laid-out picture (SVG), drawn without graphviz.
    Svg,
    /// `{"nodes":[...],"edges":[...]}`.
    Json,
}

pub fn render(g: &GraphSnapshot, format: GraphFormat) -> String {
    match format {
        GraphFormat::Text => text(g),
        GraphFormat::Dot => dot(g),
        GraphFormat::Svg => svg(g),
        GraphFormat::Json => {
            let mut s = g.to_json();
            s.push('\n');
            s
        }
    }
}

/// `HTTP`, `gRPC`, `MySQL`, `PostgreSQL`, `Redis`.
fn protocol_name(p: &str) -> &str {
    match p {
        "http" => "HTTP",
        "grpc" => "gRPC",
        "mysql" => "MySQL",
        "postgresql" => "PostgreSQL",
        "redis" => "Redis",
        other => other,
    }
}

/// `1,234`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.3ms`, `0.43ms`, `1520ms`.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}ms")
    } else if v >= 1.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.2}ms")
    }
}

/// The seed's form, with errors and p95:
/// ```text
/// api-gateway calls:
///   → auth-service via HTTP (avg: 12.3ms, p95: 30.1ms, count: 1,234, errors: 0)
/// ```
pub fn text(g: &GraphSnapshot) -> String {
    if g.edges.is_empty() {
        return "no requests seen\n".to_owned();
    }
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for e in &g.edges {
        if last != Some(e.client.as_str()) {
            if last.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "{} calls:", e.client);
            last = Some(&e.client);
        }
        let _ = writeln!(
            out,
            "  → {} via {}{} (avg: {}, p95: {}, count: {}, errors: {})",
            e.server,
            protocol_name(&e.protocol),
            through(&e.via),
            ms(e.latency_ms.avg),
            ms(e.latency_ms.p95),
            thousands(e.requests),
            thousands(e.errors)
        );
    }
    let mesh = mesh_lines(g);
    if !mesh.is_empty() {
        out.push_str("\nmesh (pods whose traffic goes through a sidecar):\n");
        for l in mesh {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// One line per pod of the mesh (`<pod>: <mesh> sidecar <proxies> for
/// <apps> (<n> requests in, <m> out)`), and the pods not kept.
fn mesh_lines(g: &GraphSnapshot) -> Vec<String> {
    let mut lines = g.mesh.lines();
    if g.mesh.dropped > 0 {
        lines.push(format!("({} more not kept)", g.mesh.dropped));
    }
    lines
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// ` through nginx` (` through a, b` for a chain) for an edge whose
/// proxies were collapsed, else nothing.
pub fn through(via: &[String]) -> String {
    if via.is_empty() {
        String::new()
    } else {
        format!(" through {}", via.join(", "))
    }
}

fn edge_label(e: &GraphEdge, sep: &str) -> String {
    format!(
        "{}{}{sep}{} req, {} err{sep}avg {} p95 {}",
        protocol_name(&e.protocol),
        through(&e.via),
        thousands(e.requests),
        thousands(e.errors),
        ms(e.latency_ms.avg),
        ms(e.latency_ms.p95)
    )
}

/// GraphViz DOT: services as boxes, databases and caches as cylinders,
/// external peers dashed; each edge labelled with its protocol, counts and
/// latency, red when it had errors.
pub fn dot(g: &GraphSnapshot) -> String {
    let mut out = String::from(
        "digraph zt_trace {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    for n in &g.nodes {
        let attrs = match n.kind {
            NodeKind::Service => "shape=box, style=rounded",
            NodeKind::Database => "shape=cylinder",
            NodeKind::Cache => "shape=cylinder, style=dashed",
            NodeKind::External => "shape=ellipse, style=dashed",
        };
        let _ = writeln!(
            out,
            "  {} [{attrs}, tooltip={}];",
            quote(&n.id),
            quote(n.kind.as_str())
        );
    }
    // Each pod of the mesh is a dashed box around its members that are
    // nodes of the graph (a service is drawn in the first pod naming it).
    let mut placed = std::collections::HashSet::new();
    for (i, pod) in g.mesh.pods.iter().enumerate() {
        let members: Vec<&str> = pod
            .apps
            .iter()
            .chain(&pod.sidecars)
            .map(|m| m.service.as_str())
            .filter(|s| g.nodes.iter().any(|n| n.id == *s))
            .filter(|s| placed.insert(s.to_string()))
            .collect();
        let sidecars: Vec<&str> = pod.sidecars.iter().map(|m| m.service.as_str()).collect();
        let _ = writeln!(
            out,
            "  subgraph cluster_pod{i} {{\n    label={};\n    style=dashed;",
            quote(&format!(
                "pod {} ({} sidecar {})",
                pod.name(),
                pod.mesh,
                sidecars.join(", ")
            ))
        );
        for m in members {
            let _ = writeln!(out, "    {};", quote(m));
        }
        out.push_str("  }\n");
    }
    for e in &g.edges {
        let color = if e.errors > 0 { ", color=red" } else { "" };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{color}];",
            quote(&e.client),
            quote(&e.server),
            quote(&edge_label(e, "\n"))
        );
    }
    out.push_str("}\n");
    out
}

/// An SVG picture, laid out left to right by layout-rs.
pub fn svg(g: &GraphSnapshot) -> String {
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let mut handles = HashMap::new();
    for n in &g.nodes {
        let label = match n.kind {
            NodeKind::Service => n.id.clone(),
            kind => format!("{}\n({})", n.id, kind.as_str()),
        };
        let fill = match n.kind {
            NodeKind::Service => "lightblue",
            NodeKind::Database => "khaki",
            NodeKind::Cache => "lightsalmon",
            NodeKind::External => "lightgrey",
        };
        let look = StyleAttr::new(Color::fast("black"), 1, Some(Color::fast(fill)), 6, 13);
        let size = text_box(&label, 13);
        let h = vg.add_node(Element::create(
            ShapeKind::new_box(&label),
            look,
            Orientation::LeftToRight,
            size,
        ));
        handles.insert(n.id.as_str(), h);
    }
    // Each edge's label is a borderless node of its own on the way from
    // client to server: layout-rs would otherwise write it over the line.
    for e in &g.edges {
        let (Some(a), Some(b)) = (
            handles.get(e.client.as_str()),
            handles.get(e.server.as_str()),
        ) else {
            continue;
        };
        let color = if e.errors > 0 { "firebrick" } else { "black" };
        let text = edge_label(e, "\n");
        let label_look = StyleAttr::new(Color::fast("white"), 0, Some(Color::fast("white")), 0, 11);
        let size = text_box(&text, 11);
        let label = vg.add_node(Element::create(
            ShapeKind::new_box(&text),
            label_look,
            Orientation::LeftToRight,
            size,
        ));
        let look = StyleAttr::new(Color::fast(color), 1, None, 0, 11);
        let line = |end| {
            Arrow::new(
                LineEndKind::None,
                end,
                LineStyleKind::Normal,
                "",
                &look,
                &None,
                &None,
            )
        };
        vg.add_edge(line(LineEndKind::None), *a, label);
        vg.add_edge(line(LineEndKind::Arrow), label, *b);
    }
    if g.nodes.is_empty() {
        let look = StyleAttr::simple();
        let label = "no requests seen";
        let size = pad_shape_scalar(get_size_for_str(label, 13), 12.0);
        vg.add_node(Element::create(
            ShapeKind::new_box(label),
            look,
            Orientation::LeftToRight,
            size,
        ));
    }
    let mut w = SVGWriter::new();
    vg.do_it(false, false, false, &mut w);
    // layout-rs sizes the canvas from its text estimates, which leaves a
    // wide empty band: fit it to where the nodes were placed.
    let (mut right, mut bottom) = (0f64, 0f64);
    for n in vg.iter_nodes() {
        let (_, br) = vg.pos(n).bbox(true);
        right = right.max(br.x);
        bottom = bottom.max(br.y);
    }
    // The mesh, if any, as lines of text under the picture.
    let mesh = mesh_lines(g);
    let mut caption = String::new();
    let (mut width, mut height) = (right + 10.0, bottom + 10.0);
    if !mesh.is_empty() {
        let head = "mesh (pods whose traffic goes through a sidecar):".to_owned();
        let lines = std::iter::once(head).chain(mesh.iter().map(|l| format!("  {l}")));
        for (i, l) in lines.enumerate() {
            let y = bottom + 24.0 + 16.0 * i as f64;
            width = width.max(10.0 + l.chars().count() as f64 * 6.6);
            height = y + 10.0;
            let _ = writeln!(
                caption,
                "<text x=\"10\" y=\"{y:.0}\" font-family=\"Helvetica\" font-size=\"12\" xml:space=\"preserve\">{}</text>",
                xml_escape(&l)
            );
        }
    }
    let mut drawn = fit_canvas(&w.finalize(), width, height);
    if let Some(end) = drawn.rfind("</svg>") {
        drawn.insert_str(end, &caption);
    }
    sort_style(&drawn)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// layout-rs writes its font classes from a hash map, in an order that
/// changes from run to run: sort the `<style>` lines so the same graph
/// always draws the same bytes.
fn sort_style(svg: &str) -> String {
    let (Some(open), Some(close)) = (svg.find("<style>\n"), svg.find("</style>")) else {
        return svg.to_owned();
    };
    let body = open + "<style>\n".len();
    if close < body {
        return svg.to_owned();
    }
    let mut lines: Vec<&str> = svg[body..close].lines().collect();
    lines.sort_unstable();
    let mut out = String::with_capacity(svg.len());
    out.push_str(&svg[..body]);
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&svg[close..]);
    out
}

/// Replace the `<svg width height viewBox>` of `svg` with `w` x `h`.
fn fit_canvas(svg: &str, w: f64, h: f64) -> String {
    let Some(start) = svg.find("<svg ") else {
        return svg.to_owned();
    };
    let Some(end) = svg[start..].find('>').map(|e| start + e) else {
        return svg.to_owned();
    };
    format!(
        "{}<svg width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" xmlns=\"http://www.w3.org/2000/svg\">{}",
        &svg[..start],
        &svg[end + 1..]
    )
}

/// The box around `text` in a `font`-pixel Times face (layout-rs counts a
/// full em per character, twice what Times needs).
fn text_box(text: &str, font: usize) -> Point {
    let cols = text
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1)
        .max(1);
    let rows = text.lines().count().max(1);
    Point::new(
        cols as f64 * font as f64 * 0.55 + 16.0,
        rows as f64 * font as f64 * 1.25 + 10.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_trace::stages::graph::{GraphNode, Latency};

    fn sample() -> GraphSnapshot {
        let node = |id: &str, kind| GraphNode {
            id: id.into(),
            kind,
        };
        let edge = |c: &str, s: &str, p: &str, n, e, avg, p95| GraphEdge {
            client: c.into(),
            server: s.into(),
            protocol: p.into(),
            via: Vec::new(),
            requests: n,
            errors: e,
            latency_ms: Latency {
                avg,
                p50: avg,
                p95,
                p99: p95,
            },
        };
        GraphSnapshot {
            nodes: vec![
                node("api-gateway", NodeKind::Service),
                node("auth-service", NodeKind::Service),
                node("postgresql 127.0.0.1:5432", NodeKind::Database),
                node("user", NodeKind::External),
            ],
            edges: vec![
                edge("api-gateway", "auth-service", "http", 1234, 0, 12.34, 30.1),
                edge(
                    "api-gateway",
                    "postgresql 127.0.0.1:5432",
                    "postgresql",
                    7,
                    1,
                    0.432,
                    0.9,
                ),
                edge("user", "api-gateway", "http", 1234, 12, 150.0, 420.0),
            ],
            mesh: Default::default(),
        }
    }

    #[test]
    fn text_is_the_seeds_form() {
        assert_eq!(
            text(&sample()),
            "api-gateway calls:\n  → auth-service via HTTP (avg: 12.3ms, p95: 30.1ms, count: 1,234, errors: 0)\n  → postgresql 127.0.0.1:5432 via PostgreSQL (avg: 0.43ms, p95: 0.90ms, count: 7, errors: 1)\n\nuser calls:\n  → api-gateway via HTTP (avg: 150ms, p95: 420ms, count: 1,234, errors: 12)\n"
        );
        assert_eq!(text(&GraphSnapshot::default()), "no requests seen\n");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn collapsed_proxies_are_named_on_the_edge() {
        let mut g = sample();
        g.edges[0].via = vec!["out".into(), "in".into()];
        assert!(
            text(&g).contains("  → auth-service via HTTP through out, in (avg: 12.3ms"),
            "{}",
            text(&g)
        );
        assert!(
            dot(&g).contains("[label=\"HTTP through out, in\\n1,234 req"),
            "{}",
            dot(&g)
        );
    }

    #[test]
    fn dot_labels_every_edge_and_quotes_names() {
        let d = dot(&sample());
        assert!(d.starts_with("digraph zt_trace {"));
        assert!(d.contains(
            "\"api-gateway\" -> \"auth-service\" [label=\"HTTP\\n1,234 req, 0 err\\navg 12.3ms p95 30.1ms\"];"
        ));
        assert!(d.contains("\"postgresql 127.0.0.1:5432\" [shape=cylinder"));
        assert!(d.contains("color=red"));
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn svg_draws_every_node_and_edge_label() {
        let s = svg(&sample());
        assert!(s.starts_with("<svg") || s.contains("<svg"), "{s}");
        for needle in [
            "api-gateway",
            "auth-service",
            "postgresql 127.0.0.1:5432",
            "1,234 req, 12 err",
        ] {
            assert!(s.contains(needle), "{needle} missing");
        }
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(svg(&GraphSnapshot::default()).contains("no requests seen"));
    }

    fn with_mesh() -> GraphSnapshot {
        use zt_trace::span_core::mesh::{MeshMember, MeshPod, MeshReport};
        use zt_trace::span_core::proxy::ProxyKind;
        let mut g = sample();
        g.nodes.push(GraphNode {
            id: "nginx".into(),
            kind: NodeKind::Service,
        });
        let member = |service: &str, pid, proxy| MeshMember {
            service: service.into(),
            pid,
            proxy,
        };
        g.mesh = MeshReport {
            pods: vec![MeshPod {
                net_ns: 4026532300,
                pod_uid: None,
                mesh: "nginx".into(),
                sidecars: vec![member("nginx", 10, Some(ProxyKind::Nginx))],
                apps: vec![member("auth-service", 12, None)],
                inbound: 1234,
                outbound: 0,
            }],
            dropped: 0,
        };
        g
    }

    #[test]
    fn the_mesh_is_said_in_every_form() {
        let g = with_mesh();
        let line =
            "netns:4026532300: nginx sidecar nginx for auth-service (1234 requests in, 0 out)";
        let t = text(&g);
        assert!(
            t.ends_with(&format!(
                "\nmesh (pods whose traffic goes through a sidecar):\n  {line}\n"
            )),
            "{t}"
        );
        let d = dot(&g);
        assert!(
            d.contains("  subgraph cluster_pod0 {\n    label=\"pod netns:4026532300 (nginx sidecar nginx)\";\n    style=dashed;\n    \"auth-service\";\n    \"nginx\";\n  }\n"),
            "{d}"
        );
        let s = svg(&g);
        assert!(s.contains(line), "{s}");
        assert!(s.contains("<text x=\"10\""), "{s}");
        let j: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        assert_eq!(j["mesh"]["pods"][0]["mesh"], "nginx");
        let back: GraphSnapshot = serde_json::from_str(&g.to_json()).unwrap();
        assert_eq!(back, g, "the JSON reads back with its mesh");
        // No mesh: nothing said, and no `mesh` key in the JSON.
        let plain = sample();
        assert!(!text(&plain).contains("mesh"));
        assert!(!dot(&plain).contains("cluster"));
        assert!(!plain.to_json().contains("\"mesh\""));
    }

    #[test]
    fn svg_bytes_are_the_same_every_time() {
        let first = svg(&sample());
        for _ in 0..20 {
            assert_eq!(svg(&sample()), first);
        }
        let s = sort_style("<svg><style>\n.b { x }\n.a { y }\n</style></svg>");
        assert_eq!(s, "<svg><style>\n.a { y }\n.b { x }\n</style></svg>");
    }
}
