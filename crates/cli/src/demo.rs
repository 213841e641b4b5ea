//! `zt-trace demo`: start a small set of services on loopback, trace them,
//! print the traces, then the service graph they drew. Needs root and
//! python3.

use crate::graph::{render, GraphFormat};
use crate::output::OutputFormat;
use crate::run;
use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICE_PY: &str = include_str!("../../../tests/topology/service.py");
const LOADGEN_PY: &str = include_str!("../../../tests/topology/loadgen.py");

/// Children killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("demo service on port {port} did not start")
}

pub fn demo(
    requests: usize,
    output: OutputFormat,
    graph: GraphFormat,
    record: Option<std::path::PathBuf>,
    graph_file: Option<std::path::PathBuf>,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("zt-trace-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_demo(&dir, requests, output, graph, record, graph_file);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_demo(
    dir: &Path,
    requests: usize,
    output: OutputFormat,
    graph_format: GraphFormat,
    record: Option<std::path::PathBuf>,
    graph_file: Option<std::path::PathBuf>,
) -> Result<()> {
    let service = dir.join("service.py");
    std::fs::write(&service, SERVICE_PY)?;
    std::fs::write(dir.join("loadgen.py"), LOADGEN_PY)?;
    let (gw, auth, users, profile) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let topology: [(&str, u16, Vec<String>); 4] = [
        ("profile", profile, vec![]),
        ("users", users, vec![format!("profile={profile}")]),
        ("auth", auth, vec![]),
        (
            "gateway",
            gw,
            vec![format!("auth={auth}"), format!("users={users}")],
        ),
    ];
    let mut children = Children(Vec::new());
    for (name, port, down) in &topology {
        let child = Command::new("python3")
            .arg(&service)
            .arg(name)
            .arg(port.to_string())
            .args(down)
            .env("OTEL_SERVICE_NAME", name)
            .stdout(Stdio::null())
            .spawn()
            .context("starting python3 (the demo services need it)")?;
        children.0.push(child);
        wait_port(*port)?;
    }
    eprintln!(
        "zt-trace demo: gateway :{gw} -> auth :{auth}, users :{users} -> profile :{profile}; sending {requests} requests"
    );

    let mut settings = Settings::default();
    settings.assemble.trace_linger_ms = 300;
    settings.output.format = output;
    settings.output.record = record;
    settings.validate()?;
    let tracer = run::builder(&settings, crate::Stage::Full)?
        .graph(settings.graph.config())
        .start()?;
    let graph = tracer.graph().context("no graph")?;
    run::stop_on_signals(tracer.stop_handle())?;
    let mut load = Command::new("python3")
        .arg(dir.join("loadgen.py"))
        .args([
            gw.to_string(),
            requests.to_string(),
            "4".into(),
            "demo".into(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the load generator")?;
    // Until the load is done (or Ctrl-C), then let the last traces finish
    // lingering.
    while load.try_wait()?.is_none() {
        if tracer.wait_timeout(Some(Duration::from_millis(50))) {
            break;
        }
    }
    tracer.wait_timeout(Some(Duration::from_millis(800)));
    let _ = load.kill();
    let _ = load.wait();
    let stats = tracer.shutdown()?;
    run::print_summary(&stats);
    // The graph of this run. Other processes on the host traced meanwhile
    // are left out: only edges between the demo's own services.
    let mut g = graph.lock().totals();
    let ours = ["loadgen", "gateway", "auth", "users", "profile"];
    g.edges
        .retain(|e| ours.contains(&e.client.as_str()) && ours.contains(&e.server.as_str()));
    g.nodes.retain(|n| ours.contains(&n.id.as_str()));
    if let Some(path) = graph_file {
        std::fs::write(&path, g.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if graph_format == GraphFormat::Text {
        println!("\nService graph:");
    }
    print!("{}", render(&g, graph_format));
    Ok(())
}
