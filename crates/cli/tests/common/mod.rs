//! Shared helpers of the end-to-end tests: root detection, the tracer and
//! test services as child processes that are always cleaned up, and checks
//! on the spans the tracer printed.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether root-only tests can run here. With ZT_REQUIRE_BPF=1 (CI), not
/// being root is a failure instead of a skip.
pub fn require_root(test: &str) -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("ZT_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: ZT_REQUIRE_BPF=1 but not running as root");
    }
    eprintln!(
        "SKIP {test}: needs root to load eBPF programs (ZT_REQUIRE_BPF=1 makes this a failure)"
    );
    false
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn zt_trace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zt-trace"))
}

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGINT, then wait for exit (SIGKILL after `grace`).
    pub fn interrupt(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers), SIGKILL if it
    /// lingers.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound then released).
/// A loopback port nobody listens on, never one this test process was
/// given before: the kernel may hand the same free port to two binds in a
/// row once the first listener is closed, and two services of one topology
/// told the same port would have the second fail to start while
/// `wait_port` saw the first answer (CI once sent a gateway's load to its
/// inventory service, which answered 404).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port}");
}

/// Start a topology service (tests/topology/service.py).
pub fn service(name: &str, port: u16, downstream: &[(&str, u16)]) -> Proc {
    script_service("service.py", name, port, downstream)
}

/// A topology service with extra environment (e.g. ZT_TLS_CERT/ZT_TLS_KEY).
pub fn service_env(
    name: &str,
    port: u16,
    downstream: &[(&str, u16)],
    env: &[(&str, &str)],
) -> Proc {
    script_service_env("service.py", name, port, downstream, env)
}

/// Start `tests/topology/<script> NAME PORT [down=port...]` (inventory.py
/// takes only the port).
pub fn script_service(script: &str, name: &str, port: u16, downstream: &[(&str, u16)]) -> Proc {
    script_service_env(script, name, port, downstream, &[])
}

pub fn script_service_env(
    script: &str,
    name: &str,
    port: u16,
    downstream: &[(&str, u16)],
    env: &[(&str, &str)],
) -> Proc {
    let path = repo_root().join("tests/topology").join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(path);
    if script == "service.py" {
        cmd.arg(name);
    }
    cmd.arg(port.to_string());
    for (n, p) in downstream {
        cmd.arg(format!("{n}={p}"));
    }
    cmd.envs(env.iter().copied());
    cmd.env("OTEL_SERVICE_NAME", name)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd.spawn().expect("python3");
    let p = Proc {
        name: name.into(),
        child,
    };
    wait_port(port, name);
    p
}

/// The tracer, started with `args`, stdout captured to a file; returns once
/// its probes are attached.
pub struct Tracer {
    pub proc: Proc,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Tracer {
    pub fn start(dir: &Path, args: &[&str]) -> Tracer {
        Tracer::start_with(dir, args, |_| {})
    }

    /// `start`, with `configure` adjusting the command (environment...)
    /// first.
    pub fn start_with(dir: &Path, args: &[&str], configure: impl FnOnce(&mut Command)) -> Tracer {
        let stdout = dir.join("tracer.out");
        let stderr = dir.join("tracer.err");
        let mut cmd = Command::new(zt_trace_bin());
        configure(&mut cmd);
        let child = cmd
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("ZT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("zt-trace");
        let mut t = Tracer {
            proc: Proc {
                name: "zt-trace".into(),
                child,
            },
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let err = std::fs::read_to_string(&t.stderr).unwrap_or_default();
            if err.contains("tracing (Ctrl-C to stop)") {
                break;
            }
            if let Ok(Some(st)) = t.proc.child.try_wait() {
                panic!("zt-trace exited early ({st}):\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "zt-trace did not attach in time:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// Wait until the tracer's log mentions `needle` (probes attached to a
    /// process started after the tracer: symbol resolution runs beside the
    /// event loop and takes a while on a large binary). Panics after
    /// `secs` seconds with the log.
    pub fn wait_log(&mut self, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if err.contains(needle) {
                return;
            }
            if let Ok(Some(st)) = self.proc.child.try_wait() {
                panic!("zt-trace exited ({st}) before logging {needle:?}:\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "zt-trace did not log {needle:?} within {secs} s:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT and wait; returns (stdout, stderr).
    pub fn stop(mut self) -> (String, String) {
        let st = self.proc.interrupt(Duration::from_secs(60));
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(
            st.is_some_and(|s| s.success()),
            "zt-trace failed: {st:?}\n{err}"
        );
        (out, err)
    }
}

/// Run a command to completion, returning stdout lines.
pub fn run_lines(cmd: &mut Command) -> Vec<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "{cmd:?} failed: {st}");
    out.lines().map(str::to_owned).collect()
}

pub fn parse_spans(json_lines: &str) -> Vec<Value> {
    BufReader::new(json_lines.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

pub fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].get(key)
}

pub fn attr_str<'a>(span: &'a Value, key: &str) -> &'a str {
    attr(span, key).and_then(Value::as_str).unwrap_or("")
}

/// Spans grouped by trace id.
pub fn by_trace(spans: &[Value]) -> HashMap<String, Vec<&Value>> {
    let mut m: HashMap<String, Vec<&Value>> = HashMap::new();
    for s in spans {
        m.entry(s["trace_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(s);
    }
    m
}

/// A span tree in comparable form: "service KIND name status" with sorted children.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub label: String,
    pub children: Vec<Shape>,
}

impl Shape {
    pub fn new(label: impl Into<String>, mut children: Vec<Shape>) -> Shape {
        children.sort();
        Shape {
            label: label.into(),
            children,
        }
    }
}

pub fn label(span: &Value) -> String {
    let status = attr(span, "http.response.status_code")
        .or_else(|| attr(span, "rpc.grpc.status_code"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| {
            if span["status_code"] == "ERROR" {
                "ERROR".into()
            } else {
                "-".into()
            }
        });
    format!(
        "{} {} {} {}",
        span["service_name"].as_str().unwrap(),
        span["kind"].as_str().unwrap(),
        span["name"].as_str().unwrap(),
        status
    )
}

/// The shape of a trace, from its root(s). Also checks that every child
/// nests inside its parent in time.
pub fn shape_of(spans: &[&Value]) -> Result<Vec<Shape>, String> {
    let by_id: BTreeMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), *s))
        .collect();
    let mut kids: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut roots = Vec::new();
    for s in spans {
        let p = s["parent_span_id"].as_str().unwrap();
        if p.is_empty() || !by_id.contains_key(p) {
            roots.push(*s);
        } else {
            kids.entry(p).or_default().push(s);
            let parent = by_id[p];
            let (ps, pe) = (
                parent["start_time_unix_nano"].as_u64().unwrap(),
                parent["end_time_unix_nano"].as_u64().unwrap(),
            );
            let (cs, ce) = (
                s["start_time_unix_nano"].as_u64().unwrap(),
                s["end_time_unix_nano"].as_u64().unwrap(),
            );
            if cs < ps || ce > pe || cs > ce {
                return Err(format!(
                    "span {} [{cs},{ce}] does not nest in its parent {} [{ps},{pe}]",
                    label(s),
                    label(parent)
                ));
            }
        }
    }
    fn build(s: &Value, kids: &BTreeMap<&str, Vec<&Value>>) -> Shape {
        let children = kids
            .get(s["span_id"].as_str().unwrap())
            .map(|v| v.iter().map(|c| build(c, kids)).collect())
            .unwrap_or_default();
        Shape::new(label(s), children)
    }
    let mut out: Vec<Shape> = roots.iter().map(|r| build(r, &kids)).collect();
    out.sort();
    Ok(out)
}

/// Expected outcome of request `n` (see tests/topology/service.py).
pub fn expected_topology(n: usize) -> (u16, Shape) {
    expected_topology_via(n, "loadgen", None)
}

/// Expected outcome of request `n` sent by service `client`, through the
/// proxy service `proxy` (its SERVER span, then its CLIENT span, between
/// the client and the gateway) when given.
pub fn expected_topology_via(n: usize, client: &str, proxy: Option<&str>) -> (u16, Shape) {
    let route = "GET /api/users/{id}";
    let auth = if n % 10 == 3 { 401 } else { 200 };
    let profile = if n % 10 == 7 { 404 } else { 200 };
    let users = if profile == 200 { 200 } else { 502 };
    let gateway = if auth != 200 {
        auth
    } else if users == 200 {
        200
    } else {
        502
    };
    let hop = |caller: &str, callee: &str, name: &str, status: u16, below: Vec<Shape>| {
        Shape::new(
            format!("{caller} CLIENT {name} {status}"),
            vec![Shape::new(
                format!("{callee} SERVER {name} {status}"),
                below,
            )],
        )
    };
    let mut gw_children = vec![hop("gateway", "auth", "GET /validate", auth, vec![])];
    if auth == 200 {
        let profile_hop = hop("users", "profile", "GET /profile/{id}", profile, vec![]);
        gw_children.push(hop(
            "gateway",
            "users",
            "GET /users/{id}",
            users,
            vec![profile_hop],
        ));
    }
    let tree = match proxy {
        None => hop(client, "gateway", route, gateway, gw_children),
        Some(px) => hop(
            client,
            px,
            route,
            gateway,
            vec![hop(px, "gateway", route, gateway, gw_children)],
        ),
    };
    (gateway, tree)
}

/// Check every request of the load against the spans. Returns the shapes by rid.
pub fn check_topology(spans: &[Value], load: &[Value], what: &str) -> BTreeMap<String, Vec<Shape>> {
    check_topology_via(spans, load, what, "loadgen", None)
}

/// [`check_topology`] for a load sent by `client` through `proxy`.
pub fn check_topology_via(
    spans: &[Value],
    load: &[Value],
    what: &str,
    client: &str,
    proxy: Option<&str>,
) -> BTreeMap<String, Vec<Shape>> {
    let traces = by_trace(spans);
    // The traces holding a span that carries each `rid=` (one pass).
    let mut with_rid: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for s in spans {
        for kv in attr_str(s, "url.query").split('&') {
            if let Some(r) = kv.strip_prefix("rid=") {
                with_rid
                    .entry(r)
                    .or_default()
                    .insert(s["trace_id"].as_str().unwrap());
            }
        }
    }
    let mut failures = Vec::new();
    let mut shapes = BTreeMap::new();
    for req in load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        let (want_status, want_shape) = expected_topology_via(n, client, proxy);
        if req["status"].as_u64() != Some(want_status as u64) {
            failures.push(format!(
                "{rid}: client got {} not {want_status}",
                req["status"]
            ));
            continue;
        }
        let needle = format!("rid={rid}");
        let carries = |s: &Value| attr_str(s, "url.query").split('&').any(|kv| kv == needle);
        let ids = with_rid.get(rid).cloned().unwrap_or_default();
        if ids.len() != 1 {
            failures.push(format!("{rid}: in {} traces, want exactly 1", ids.len()));
            continue;
        }
        let trace = &traces[*ids.iter().next().unwrap()];
        if let Some(stray) = trace.iter().find(|s| !carries(s)) {
            failures.push(format!(
                "{rid}: trace holds a span of another request: {stray}"
            ));
            continue;
        }
        match shape_of(trace) {
            Err(e) => failures.push(format!("{rid}: {e}")),
            Ok(got) if got != vec![want_shape.clone()] => {
                failures.push(format!("{rid}: tree\n{got:#?}\nwant\n{want_shape:#?}"))
            }
            Ok(got) => {
                shapes.insert(rid.to_owned(), got);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} requests wrong; first ones:\n{}",
        failures.len(),
        load.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    shapes
}

/// Whether any string attribute of the span mentions `rid` (URLs, gRPC
/// metadata, SQL comments, Redis keys all carry it).
pub fn mentions(span: &Value, rid: &str) -> bool {
    span["attributes"].as_object().is_some_and(|m| {
        m.values()
            .any(|v| v.as_str().is_some_and(|s| s.contains(rid)))
    })
}

/// Generate the gRPC code once, before several services import it at once.
pub fn grpc_codegen() {
    let st = Command::new("python3")
        .current_dir(repo_root().join("tests/topology"))
        .args(["-c", "import grpc_gen; grpc_gen.load()"])
        .status()
        .expect("python3");
    assert!(
        st.success(),
        "grpc code generation failed (pip install grpcio grpcio-tools)"
    );
}

/// The database and cache servers must be up (scripts/start-servers.sh).
pub fn require_servers() {
    for (what, port) in [("MariaDB", 3306), ("PostgreSQL", 5432), ("Redis", 6379)] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "{what} is not listening on 127.0.0.1:{port}: run scripts/start-servers.sh (CI does)"
        );
    }
}

/// A self-signed certificate and key for 127.0.0.1/localhost in `dir`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl req failed");
    (cert, key)
}

/// A scratch directory of a test, removed (with what the test wrote in
/// it) when dropped. Declare it before the processes that use it, so they
/// are stopped first.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Keep it for a look when the test failed and ZT_KEEP_TEMP is set.
        if !(std::thread::panicking() && std::env::var_os("ZT_KEEP_TEMP").is_some()) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("zt-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// tests/topology/loadgen.py against `port`: `n` requests, `c` at a time,
/// ground-truth ids `prefix` + index; one JSON object per request.
pub fn loadgen(port: u16, n: usize, c: usize, prefix: &str, env: &[(&str, &str)]) -> Vec<Value> {
    run_lines(
        Command::new("python3")
            .arg(repo_root().join("tests/topology/loadgen.py"))
            .args([
                port.to_string(),
                n.to_string(),
                c.to_string(),
                prefix.into(),
            ])
            .envs(env.iter().copied()),
    )
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// The tracer's summary lines (`zt-trace: ...`) from its stderr.
pub fn summary(err: &str) -> String {
    err.lines()
        .filter(|l| l.starts_with("zt-trace:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fails listing the first few failures, out of `n` checked.
pub fn assert_no_failures(failures: &[String], n: usize) {
    assert!(
        failures.is_empty(),
        "{} of {n} wrong; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

/// nginx (1 worker, foreground) terminating TLS on `port` and proxying to
/// the plain-HTTP `backend`; with `h2`, HTTP/2 on the TLS side (ALPN h2)
/// and HTTP/1.1 upstream.
pub fn nginx_tls_proxy(dir: &Path, port: u16, backend: u16, h2: bool) -> Proc {
    let (cert, key) = self_signed_cert(dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    let (listen, upstream) = if h2 {
        ("ssl http2", " proxy_http_version 1.1;")
    } else {
        ("ssl", "")
    };
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; pid {d}/nginx.pid; error_log {d}/logs/error.log; daemon off;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off;\n\
               server {{ listen 127.0.0.1:{port} {listen}; ssl_certificate {c}; ssl_certificate_key {k};\n\
                 location / {{ proxy_pass http://127.0.0.1:{backend};{upstream} }} }} }}\n",
            d = dir.display(),
            c = cert.display(),
            k = key.display()
        ),
    )
    .unwrap();
    let nginx = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx");
    let p = Proc {
        name: "nginx".into(),
        child: nginx,
    };
    wait_port(port, "nginx");
    p
}

/// Build a Go program of tests/topology/go (stdlib only, no module: works
/// offline) into `dir`; `ldflags` e.g. "-s -w" for a stripped binary.
pub fn go_build(dir: &Path, src: &str, ldflags: &str) -> PathBuf {
    go_build_env(dir, src, ldflags, &[])
}

/// `go_build` with extra environment (e.g. `CGO_ENABLED`).
pub fn go_build_env(dir: &Path, src: &str, ldflags: &str, env: &[(&str, &str)]) -> PathBuf {
    let out = dir.join(src.trim_end_matches(".go"));
    let st = Command::new("go")
        .args(["build", "-ldflags", ldflags, "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/topology/go").join(src))
        .envs(env.iter().copied())
        .env("GO111MODULE", "off")
        .current_dir(dir)
        .status()
        .expect("go (apt-get install golang-go)");
    assert!(st.success(), "go build {src} failed");
    out
}

/// The ground-truth id a span carries in its URL query (`rid=...`).
pub fn rid_of(span: &Value) -> Option<&str> {
    attr_str(span, "url.query")
        .split('&')
        .find_map(|kv| kv.strip_prefix("rid="))
}

/// Parent edges checked against the ground truth: every span whose parent
/// is among `spans` must carry the same request id as its parent. Returns
/// the wrong edges, described.
pub fn wrong_edges(spans: &[Value]) -> Vec<String> {
    wrong_edges_where(spans, |_| true)
}

/// The spans' `process.pid`.
pub fn pid_of(span: &Value) -> Option<u64> {
    span["resource"]["process.pid"].as_u64()
}

/// [`wrong_edges`], checking only edges with `ours` at one end or the
/// other: the tracer sees the whole host, and other tests running at the
/// same time carry their ids elsewhere (SQL comments, gRPC metadata) where
/// this URL-based check cannot see them.
pub fn wrong_edges_where(spans: &[Value], ours: impl Fn(&Value) -> bool) -> Vec<String> {
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let mut wrong = Vec::new();
    for s in spans {
        let p = s["parent_span_id"].as_str().unwrap_or("");
        let Some(parent) = by_id.get(p) else { continue };
        if !ours(s) && !ours(parent) {
            continue;
        }
        if rid_of(s) != rid_of(parent) {
            wrong.push(format!(
                "{} ({:?}, {}) has parent {} ({:?})",
                label(s),
                rid_of(s),
                attr_str(s, "zt.link.reason"),
                label(parent),
                rid_of(parent)
            ));
        }
    }
    wrong
}

/// One listening address of a test proxy, where it forwards to, and
/// whether it replaces the request id with one of its own (nginx
/// `proxy_set_header X-Request-Id $request_id`, HAProxy
/// `http-request set-header X-Request-Id %[uuid()]`).
#[derive(Clone, Debug)]
pub struct Route {
    /// `ADDR:PORT` to listen on.
    pub listen: String,
    /// `ADDR:PORT` to forward to.
    pub upstream: String,
    pub new_request_id: bool,
}

impl Route {
    /// 127.0.0.1:`port` to 127.0.0.1:`backend`.
    pub fn local(port: u16, backend: u16, new_request_id: bool) -> Route {
        Route {
            listen: format!("127.0.0.1:{port}"),
            upstream: format!("127.0.0.1:{backend}"),
            new_request_id,
        }
    }
}

/// Wait until the proxy listens on every route (inside `ns` if given).
fn wait_routes(routes: &[Route], ns: Option<&NetNs>, what: &str) {
    for r in routes {
        let (addr, port) = r.listen.rsplit_once(':').unwrap();
        let port: u16 = port.parse().unwrap();
        match ns {
            Some(ns) => ns.wait_port(addr, port, what),
            None => wait_port(port, what),
        }
    }
}

/// nginx (`workers` worker processes, foreground), inside `ns` if given,
/// proxying each route. nginx passes the client's headers on unchanged
/// (X-Request-Id and X-Forwarded-For included) unless a route replaces the
/// id.
pub fn nginx_gateway(dir: &Path, workers: u32, routes: &[Route], ns: Option<&NetNs>) -> Proc {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    let mut servers = String::new();
    for r in routes {
        servers.push_str(&format!(
            "  server {{ listen {}; location / {{ proxy_pass http://{};{} }} }}\n",
            r.listen,
            r.upstream,
            if r.new_request_id {
                " proxy_set_header X-Request-Id $request_id;"
            } else {
                ""
            }
        ));
    }
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers}; pid {d}/nginx.pid; error_log {d}/logs/error.log; daemon off;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off;\n{servers}}}\n",
            d = dir.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(dir);
    let p = spawn_in_netns(cmd, ns.map(|n| n.name.as_str()), "nginx");
    wait_routes(routes, ns, "nginx");
    p
}

/// HAProxy (foreground), inside `ns` if given, proxying each route; like
/// nginx, it passes the client's headers on unchanged unless a route
/// replaces the id.
pub fn haproxy_gateway(dir: &Path, routes: &[Route], ns: Option<&NetNs>) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("haproxy.cfg");
    let mut text = format!(
        "global\n  maxconn 4096\n  pidfile {d}/haproxy.pid\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n",
        d = dir.display()
    );
    for (i, r) in routes.iter().enumerate() {
        text.push_str(&format!(
            "frontend f{i}\n  bind {}\n{}  default_backend b{i}\nbackend b{i}\n  server s{i} {}\n",
            r.listen,
            if r.new_request_id {
                "  http-request set-header X-Request-Id %[uuid()]\n"
            } else {
                ""
            },
            r.upstream
        ));
    }
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new("haproxy");
    cmd.arg("-f").arg(&conf).arg("-db");
    let p = spawn_in_netns(cmd, ns.map(|n| n.name.as_str()), "haproxy");
    wait_routes(routes, ns, "haproxy");
    p
}

/// Spawn `cmd`, inside network namespace `netns` when given (`ip netns
/// exec`), as a [`Proc`].
pub fn spawn_in_netns(cmd: Command, netns: Option<&str>, name: &str) -> Proc {
    let mut cmd = match netns {
        None => cmd,
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(cmd.get_program());
            c.args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            c
        }
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Proc {
        name: name.into(),
        child,
    }
}

/// tests/topology/proxyload.py against `port` on 127.0.0.1 (`mode`: id,
/// noid, same or users).
pub fn proxyload(port: u16, n: usize, c: usize, prefix: &str, mode: &str) -> Vec<Value> {
    proxyload_at(None, &format!("127.0.0.1:{port}"), n, c, prefix, mode)
}

/// tests/topology/proxyload.py against `addr` (`HOST:PORT`), inside `ns`
/// if given.
pub fn proxyload_at(
    ns: Option<&NetNs>,
    addr: &str,
    n: usize,
    c: usize,
    prefix: &str,
    mode: &str,
) -> Vec<Value> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, "python3"]);
            c
        }
        None => Command::new("python3"),
    };
    cmd.arg(repo_root().join("tests/topology/proxyload.py"))
        .args([
            addr.to_owned(),
            n.to_string(),
            c.to_string(),
            prefix.into(),
            mode.into(),
        ]);
    run_lines(&mut cmd)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// tests/topology/truth.py on `port`, logging to `dir/truth.log`.
pub fn truth_backend(dir: &Path, port: u16) -> (Proc, PathBuf) {
    let log = dir.join("truth.log");
    let child = Command::new("python3")
        .arg(repo_root().join("tests/topology/truth.py"))
        .arg(port.to_string())
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let p = Proc {
        name: "truth".into(),
        child,
    };
    wait_port(port, "truth");
    (p, log)
}

/// Run `ip ARGS`, panicking with its error output if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace made by the test (`ip netns add`), deleted on drop
/// (also when the test panics); veth ends inside it go with it. Declare it
/// before the processes started in it, so they are stopped first.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// `zt-<tag>-<pid>`, with its loopback up.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("zt-{tag}-{}", std::process::id());
        // A leftover of a crashed run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Spawn `cmd` inside the namespace.
    pub fn spawn(&self, cmd: Command, what: &str) -> Proc {
        spawn_in_netns(cmd, Some(&self.name), what)
    }

    /// Wait until something inside the namespace listens on `addr:port`.
    pub fn wait_port(&self, addr: &str, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.name, "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} did not listen on {addr}:{port} in {}", self.name);
    }

    /// Inode of the namespace (what /proc/<pid>/ns/net of its processes
    /// names).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("namespace file")
            .ino()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair joining namespaces `a` and `b`, `a_addr` and `b_addr`
/// (CIDR, a private range) on its ends. Both ends live inside the
/// namespaces, so deleting them deletes the pair; an end left in the host
/// namespace by a failure midway is deleted on drop.
pub struct Veth {
    host_end: String,
}

impl Veth {
    pub fn new(a: &NetNs, a_addr: &str, b: &NetNs, b_addr: &str, tag: &str) -> Veth {
        let (ea, eb) = (format!("zva{tag}"), format!("zvb{tag}"));
        let _ = Command::new("ip").args(["link", "del", &ea]).output();
        ip(&["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
        let v = Veth {
            host_end: ea.clone(),
        };
        for (ns, end, addr) in [(a, &ea, a_addr), (b, &eb, b_addr)] {
            ip(&["link", "set", end, "netns", &ns.name]);
            ip(&["-n", &ns.name, "addr", "add", addr, "dev", end]);
            ip(&["-n", &ns.name, "link", "set", end, "up"]);
        }
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Gone with its namespace normally; this only catches a half-made pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_end])
            .stderr(Stdio::null())
            .output();
    }
}

/// tests/topology/service.py NAME PORT [DOWN=PORT...] inside `ns`, named
/// by OTEL_SERVICE_NAME.
pub fn service_in(ns: &NetNs, name: &str, port: u16, downstream: &[(&str, u16)]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/topology/service.py"))
        .arg(name)
        .arg(port.to_string());
    for (n, p) in downstream {
        cmd.arg(format!("{n}={p}"));
    }
    cmd.env("OTEL_SERVICE_NAME", name);
    let p = ns.spawn(cmd, name);
    ns.wait_port("127.0.0.1", port, name);
    p
}

/// Cgroups made by the test under the cgroup2 mount, in a directory of its
/// own; removed (deepest first) on drop, also on panic. Declare it before
/// the processes started in it, so they are stopped first.
pub struct TestCgroups {
    pub root: PathBuf,
    made: Vec<PathBuf>,
}

impl TestCgroups {
    pub fn new(cgroup2: &Path, tag: &str) -> TestCgroups {
        let root = cgroup2.join(format!("zt-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("creating a test cgroup (root, cgroup v2)");
        TestCgroups {
            made: vec![root.clone()],
            root,
        }
    }

    /// Create `rel` (nested path) below the test's cgroup; returns it.
    pub fn make(&mut self, rel: &str) -> PathBuf {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|c| !c.is_empty()) {
            p.push(part);
            if !p.exists() {
                std::fs::create_dir(&p).expect("creating a test cgroup");
                self.made.push(p.clone());
            }
        }
        p
    }

    /// `cmd` will start inside cgroup `cg`: the child moves itself there
    /// between fork and exec, so its exec (and everything after) happens in
    /// the cgroup.
    pub fn start_in(cmd: &mut Command, cg: &Path) {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(
            cg.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: the closure only calls open/write/close (async-signal-safe)
        // on a path built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for p in self.made.iter().rev() {
            // Processes still inside (a test that failed early) go to the
            // root cgroup first, so the directory can be removed.
            if let Ok(pids) = std::fs::read_to_string(p.join("cgroup.procs")) {
                if let Some(top) = self.root.parent() {
                    for pid in pids.lines() {
                        let _ = std::fs::write(top.join("cgroup.procs"), pid);
                    }
                }
            }
            let _ = std::fs::remove_dir(p);
        }
    }
}
