//! `zt-trace demo`: start a small set of services on loopback, send them
//! requests, and show what zt-trace sees in the dashboard (the plain report
//! when stdout is not a terminal), or, with `--output`, print the traces,
//! then the service graph they drew.
//! Needs root, python3, and for the catalog service (an N+1 on MariaDB, a
//! repeated Redis read, a failing query) the servers
//! scripts/start-servers.sh starts.

use crate::dashboard;
use crate::graph::{render, GraphFormat};
use crate::output::OutputFormat;
use crate::run;
use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zt_trace::GraphSnapshot;

const SERVICE_PY: &str = include_str!("../../../tests/topology/service.py");
const CATALOG_PY: &str = include_str!("../../../tests/topology/catalog.py");
const LOADGEN_PY: &str = include_str!("../../../tests/topology/loadgen.py");

const MARIADB_PORT: u16 = 3306;
const REDIS_PORT: u16 = 6379;

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

fn wait_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!("demo service {what} exited ({st}) before listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("demo service {what} on port {port} did not start")
}

fn reachable(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// What to show.
pub struct DemoOptions {
    /// Requests per load batch (`--output`: in all).
    pub requests: usize,
    /// Print traces (the old demo) instead of the dashboard.
    pub output: Option<OutputFormat>,
    pub plain: bool,
    pub interval_s: f64,
    pub duration_s: Option<f64>,
    /// How the service graph is printed at the end (`--output`).
    pub graph_format: GraphFormat,
    /// Also write the raw event log here.
    pub record: Option<PathBuf>,
    /// Also write the demo's service graph (JSON) here at the end.
    pub graph_file: Option<PathBuf>,
}

pub fn demo(o: DemoOptions) -> Result<()> {
    // The options are checked before anything starts.
    let settings = settings(&o)?;
    let dir = std::env::temp_dir().join(format!("zt-trace-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_demo(&dir, &o, settings);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The demo services: gateway -> auth, users -> profile, catalog (-> MariaDB,
/// Redis) when the servers are up. Returns the children and the gateway's
/// port.
fn start_services(dir: &Path) -> Result<(Children, u16, bool)> {
    let service = dir.join("service.py");
    std::fs::write(&service, SERVICE_PY)?;
    let catalog_py = dir.join("catalog.py");
    std::fs::write(&catalog_py, CATALOG_PY)?;
    let (gw, auth, users, profile) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let with_catalog = reachable(MARIADB_PORT) && reachable(REDIS_PORT);
    let catalog = free_port()?;
    let mut gw_down = vec![format!("auth={auth}"), format!("users={users}")];
    if with_catalog {
        gw_down.push(format!("catalog={catalog}"));
    } else {
        eprintln!(
            "zt-trace demo: MariaDB (:{MARIADB_PORT}) or Redis (:{REDIS_PORT}) is not running: no catalog service (start them with scripts/start-servers.sh)"
        );
    }
    let mut topology: Vec<(&str, u16, PathBuf, Vec<String>)> = vec![
        (
            "profile",
            profile,
            service.clone(),
            vec!["profile".into(), profile.to_string()],
        ),
        (
            "users",
            users,
            service.clone(),
            vec![
                "users".into(),
                users.to_string(),
                format!("profile={profile}"),
            ],
        ),
        (
            "auth",
            auth,
            service.clone(),
            vec!["auth".into(), auth.to_string()],
        ),
    ];
    if with_catalog {
        topology.push((
            "catalog",
            catalog,
            catalog_py,
            vec![
                catalog.to_string(),
                MARIADB_PORT.to_string(),
                REDIS_PORT.to_string(),
            ],
        ));
    }
    let mut gw_args = vec!["gateway".to_owned(), gw.to_string()];
    gw_args.extend(gw_down);
    topology.push(("gateway", gw, service, gw_args));
    let mut children = Children(Vec::new());
    for (name, port, script, args) in topology {
        let child = Command::new("python3")
            .arg(&script)
            .args(&args)
            .env("OTEL_SERVICE_NAME", name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 (the demo services need it)")?;
        children.0.push(child);
        let last = children.0.len() - 1;
        wait_port(port, &mut children.0[last], name)?;
    }
    Ok((children, gw, with_catalog))
}

fn loadgen(dir: &Path, gw: u16, requests: usize, prefix: &str) -> Result<Child> {
    Command::new("python3")
        .arg(dir.join("loadgen.py"))
        .args([
            gw.to_string(),
            requests.to_string(),
            "4".into(),
            prefix.to_owned(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the load generator")
}

/// The demo's settings from its options, validated.
fn settings(o: &DemoOptions) -> Result<Settings> {
    if !(1..=1_000_000).contains(&o.requests) {
        bail!(
            "invalid option: requests (--requests) is {}: it must be from 1 to 1000000",
            o.requests
        );
    }
    let mut s = Settings::default();
    s.assemble.trace_linger_ms = 300;
    s.output.record = o.record.clone();
    s.output.duration_s = o.duration_s;
    s.dashboard.interval_s = o.interval_s;
    if let Some(output) = o.output {
        s.output.format = output;
    }
    s.validate()?;
    Ok(s)
}

fn run_demo(dir: &Path, o: &DemoOptions, mut settings: Settings) -> Result<()> {
    std::fs::write(dir.join("loadgen.py"), LOADGEN_PY)?;
    let (children, gw, with_catalog) = start_services(dir)?;
    eprintln!(
        "zt-trace demo: gateway :{gw} -> auth, users -> profile{}",
        if with_catalog {
            ", catalog -> mariadb, redis"
        } else {
            ""
        }
    );
    if o.output.is_some() {
        eprintln!("zt-trace demo: sending {} requests", o.requests);
        let tracer = run::builder(&settings, crate::Stage::Full)?
            .graph(settings.graph.config())
            .start()?;
        let graph = tracer.graph().context("no graph")?;
        run::stop_on_signals(tracer.stop_handle())?;
        let mut load = loadgen(dir, gw, o.requests, "demo")?;
        // Until the load is done (or Ctrl-C), then let the last traces
        // finish lingering.
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
        let g = demo_graph(&graph.lock().totals().with_mesh(&stats.mesh));
        write_graph(&g, o.graph_file.as_deref())?;
        if o.graph_format == GraphFormat::Text {
            println!("\nService graph:");
        }
        print!("{}", render(&g, o.graph_format));
        return Ok(());
    }
    // Only the demo's services: the host may be busy with other traffic,
    // which would crowd them out of the views (the load generator's
    // processes come and go; the gateway's requests are then roots).
    settings.capture.pids = children.0.iter().map(Child::id).collect();
    settings.validate()?;
    let stop = dashboard::stop_flag()?;
    let mut feed = dashboard::data::Feed::start(&settings, None)?;
    // Load in batches until the dashboard closes.
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let (dir, done, requests) = (dir.to_owned(), done.clone(), o.requests.max(1));
        std::thread::spawn(move || {
            let mut batch = 0u32;
            while !done.load(Ordering::Relaxed) {
                batch += 1;
                let Ok(mut child) = loadgen(&dir, gw, requests, &format!("d{batch:03}-")) else {
                    return;
                };
                while !done.load(Ordering::Relaxed) && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let shown = dashboard::show(&mut feed, &settings, o.plain, &stop);
    done.store(true, Ordering::Relaxed);
    let _ = load.join();
    let graph = feed.graph();
    let stats = feed.shutdown()?;
    run::print_summary(&stats);
    let g = demo_graph(&graph.lock().totals().with_mesh(&stats.mesh));
    write_graph(&g, o.graph_file.as_deref())?;
    // The full-screen dashboard is gone with its alternate screen: end
    // with the demo's graph on the terminal (a plain report already
    // printed it in its graph section).
    if !o.plain && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!("\nService graph of the demo:");
        print!("{}", render(&g, GraphFormat::Text));
    }
    shown
}

/// The demo's part of the graph: edges from its own services (to each
/// other, the load generator's and the databases). Other processes on the
/// host traced meanwhile are left out.
fn demo_graph(g: &GraphSnapshot) -> GraphSnapshot {
    let ours = ["loadgen", "gateway", "auth", "users", "profile", "catalog"];
    let mut g = g.clone();
    g.edges.retain(|e| ours.contains(&e.client.as_str()));
    let used: std::collections::HashSet<String> = g
        .edges
        .iter()
        .flat_map(|e| [e.client.clone(), e.server.clone()])
        .collect();
    g.nodes.retain(|n| used.contains(&n.id));
    g
}

fn write_graph(g: &GraphSnapshot, path: Option<&Path>) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, g.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
