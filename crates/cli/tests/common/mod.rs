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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let tree = hop("loadgen", "gateway", route, gateway, gw_children);
    (gateway, tree)
}

/// Check every request of the load against the spans. Returns the shapes by rid.
pub fn check_topology(spans: &[Value], load: &[Value], what: &str) -> BTreeMap<String, Vec<Shape>> {
    let traces = by_trace(spans);
    let mut failures = Vec::new();
    let mut shapes = BTreeMap::new();
    for req in load {
        let rid = req["rid"].as_str().unwrap();
        let n = req["n"].as_u64().unwrap() as usize;
        let (want_status, want_shape) = expected_topology(n);
        if req["status"].as_u64() != Some(want_status as u64) {
            failures.push(format!(
                "{rid}: client got {} not {want_status}",
                req["status"]
            ));
            continue;
        }
        let needle = format!("rid={rid}");
        let carries = |s: &Value| attr_str(s, "url.query").split('&').any(|kv| kv == needle);
        let ids: BTreeSet<&String> = traces
            .iter()
            .filter(|(_, ss)| ss.iter().any(|s| carries(s)))
            .map(|(id, _)| id)
            .collect();
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
