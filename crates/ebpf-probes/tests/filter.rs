//! In-kernel filters, with the real probes and real loopback traffic. Needs
//! root: skipped with a message otherwise, a failure with ZT_REQUIRE_BPF=1.
//!
//! The test process is the agent (never traced) and runs an echo server;
//! clients are bash processes talking to it through /dev/tcp, started under
//! different names (a symlink to bash gives another comm), executables (a
//! copy of bash), cgroups and ports. Each client sends numbered messages
//! tagged with its name; the test collects the client-side data events that
//! reach user space and checks which tags (and which numbers) got through.

mod common;
use common::require_bpf;

use ebpf_probes::{raw, Filter, Probes};
use span_core::{Direction, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An echo server on 127.0.0.1 (in the agent's own process: never traced).
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || echo(s));
        }
    });
    port
}

fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("zt-filter-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client process, killed when dropped. It waits for a line on stdin,
/// then sends `count` messages `zt-<tag>-<i>;` to `port`, one every
/// `every_ms`, reading each echo back. With `subshell`, the traffic comes
/// from a forked child of the exec'd process.
struct Client {
    child: Child,
    tag: String,
}

impl Client {
    fn start(program: &Path, tag: &str, port: u16, count: u32, every_ms: u32) -> Client {
        Self::start_opts(program, tag, port, count, every_ms, false)
    }

    fn start_opts(
        program: &Path,
        tag: &str,
        port: u16,
        count: u32,
        every_ms: u32,
        subshell: bool,
    ) -> Client {
        let body = format!(
            r#"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 3
               i=1
               while [ $i -le {count} ]; do
                 msg="zt-{tag}-$i;"
                 printf '%s' "$msg" >&3
                 read -r -N ${{#msg}} -t 5 reply <&3 || exit 4
                 [ {every_ms} -gt 0 ] && sleep 0.{every_ms:03}
                 i=$((i + 1))
               done"#
        );
        let script = if subshell {
            format!("read go; ( {body} ); exit $?")
        } else {
            format!("read go; {body}")
        };
        let child = Command::new(program)
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Client {
            child,
            tag: tag.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn go(&mut self) {
        common::say_go(&mut self.child);
    }

    fn wait_ok(&mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "client {} failed: {st}", self.tag);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Message numbers of each tag seen leaving a client (egress data events).
#[derive(Default)]
struct Seen {
    decoder: raw::Decoder,
    by_tag: BTreeMap<String, BTreeSet<u32>>,
    /// (tag, number) -> how many events carried it.
    count: BTreeMap<(String, u32), u32>,
}

impl Seen {
    fn poll(&mut self, probes: &mut Probes, for_ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(for_ms);
        loop {
            let Seen {
                decoder,
                by_tag,
                count,
            } = self;
            probes
                .poll(Duration::from_millis(20), |rec| {
                    let Ok(Some(Event::Data(d))) = decoder.decode(rec) else {
                        return;
                    };
                    if d.direction != Direction::Egress {
                        return;
                    }
                    let text = String::from_utf8_lossy(&d.payload);
                    for msg in text.split(';').filter(|m| m.starts_with("zt-")) {
                        if let Some((tag, n)) = msg[3..].rsplit_once('-') {
                            if let Ok(n) = n.parse() {
                                by_tag.entry(tag.to_owned()).or_default().insert(n);
                                *count.entry((tag.to_owned(), n)).or_default() += 1;
                            }
                        }
                    }
                })
                .unwrap();
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    fn numbers(&self, tag: &str) -> BTreeSet<u32> {
        self.by_tag.get(tag).cloned().unwrap_or_default()
    }
}

fn bash() -> PathBuf {
    PathBuf::from("/bin/bash")
        .canonicalize()
        .expect("bash is installed")
}

/// A symlink to bash named `name`: processes exec'd through it get that
/// comm, and bash's executable.
fn bash_named(dir: &TempDir, name: &str) -> PathBuf {
    let p = dir.0.join(name);
    std::os::unix::fs::symlink(bash(), &p).unwrap();
    p
}

/// Run clients to completion (they were started and are waiting), then
/// collect what reached user space.
fn run(probes: &mut Probes, clients: &mut [&mut Client]) -> Seen {
    let mut seen = Seen::default();
    for c in clients.iter_mut() {
        c.go();
    }
    for c in clients.iter_mut() {
        c.wait_ok();
    }
    seen.poll(probes, 300);
    seen
}

fn all(n: u32) -> BTreeSet<u32> {
    (1..=n).collect()
}

#[test]
fn pid_filter_includes_and_excludes() {
    if !require_bpf() {
        return;
    }
    let port = echo_server();
    let mut a = Client::start(&bash(), "pid-a", port, 3, 0);
    let mut b = Client::start(&bash(), "pid-b", port, 3, 0);
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(Filter::new().include_pid(a.pid()))
        .load()
        .expect("load probes");
    let seen = run(&mut probes, &mut [&mut a, &mut b]);
    assert_eq!(seen.numbers("pid-a"), all(3), "included pid traced");
    assert!(seen.numbers("pid-b").is_empty(), "other pid not traced");

    let mut a = Client::start(&bash(), "pid-a2", port, 3, 0);
    let mut b = Client::start(&bash(), "pid-b2", port, 3, 0);
    probes
        .set_filter(&Filter::new().exclude_pid(a.pid()))
        .unwrap();
    let seen = run(&mut probes, &mut [&mut a, &mut b]);
    assert!(seen.numbers("pid-a2").is_empty(), "excluded pid not traced");
    assert_eq!(seen.numbers("pid-b2"), all(3), "others traced");
}

/// comm is matched at exec: a process started after the filter was set is
/// covered, and so is one already running when it is set (/proc scan).
#[test]
fn comm_filter_matches_at_exec_and_for_running_processes() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("comm");
    let port = echo_server();
    let running = Client::start(&bash_named(&dir, "ztf-run"), "comm-run", port, 3, 0);
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(
            Filter::new()
                .include_comm("ztf-inc")
                .include_comm("ztf-run"),
        )
        .load()
        .expect("load probes");
    let mut running = running;
    let mut later = Client::start(&bash_named(&dir, "ztf-inc"), "comm-inc", port, 3, 0);
    let mut other = Client::start(&bash_named(&dir, "ztf-other"), "comm-other", port, 3, 0);
    let seen = run(&mut probes, &mut [&mut running, &mut later, &mut other]);
    assert_eq!(seen.numbers("comm-inc"), all(3), "started after the filter");
    assert_eq!(
        seen.numbers("comm-run"),
        all(3),
        "running before the filter"
    );
    assert!(seen.numbers("comm-other").is_empty());

    probes
        .set_filter(&Filter::new().exclude_comm("ztf-exc"))
        .unwrap();
    let mut exc = Client::start(&bash_named(&dir, "ztf-exc"), "comm-exc", port, 3, 0);
    let mut other = Client::start(&bash_named(&dir, "ztf-oth2"), "comm-oth2", port, 3, 0);
    let seen = run(&mut probes, &mut [&mut exc, &mut other]);
    assert!(seen.numbers("comm-exc").is_empty(), "excluded comm");
    assert_eq!(seen.numbers("comm-oth2"), all(3));
}

/// Executables are matched by file identity at exec, and a forked child
/// (bash's subshell) inherits its parent's match.
#[test]
fn exe_filter_matches_the_file_and_forked_children() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("exe");
    let copy = dir.0.join("bash-copy");
    std::fs::copy(bash(), &copy).unwrap();
    let port = echo_server();
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(Filter::new().include_exe(&copy))
        .load()
        .expect("load probes");
    let mut inc = Client::start_opts(&copy, "exe-copy", port, 3, 0, true);
    let mut other = Client::start_opts(&bash(), "exe-bash", port, 3, 0, true);
    let seen = run(&mut probes, &mut [&mut inc, &mut other]);
    assert_eq!(seen.numbers("exe-copy"), all(3), "the copy (in a subshell)");
    assert!(seen.numbers("exe-bash").is_empty(), "bash itself");

    probes
        .set_filter(&Filter::new().exclude_exe(&copy))
        .unwrap();
    let mut exc = Client::start(&copy, "exe-copy2", port, 3, 0);
    let mut other = Client::start(&bash(), "exe-bash2", port, 3, 0);
    let seen = run(&mut probes, &mut [&mut exc, &mut other]);
    assert!(seen.numbers("exe-copy2").is_empty());
    assert_eq!(seen.numbers("exe-bash2"), all(3));
}

/// A cgroup v2 directory the test creates; processes in it are moved back
/// to the root and it is removed when dropped.
struct Cgroup {
    path: PathBuf,
    root: PathBuf,
}

impl Cgroup {
    fn new(root: &Path, name: &str) -> Cgroup {
        let path = root.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("create a cgroup");
        Cgroup {
            path,
            root: root.to_owned(),
        }
    }
    fn add(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn cgroup_filter_covers_the_subtree() {
    if !require_bpf() {
        return;
    }
    let Some(root) = ebpf_probes::cgroup2_mount() else {
        assert!(
            std::env::var("ZT_REQUIRE_BPF").as_deref() != Ok("1"),
            "no cgroup v2 hierarchy mounted"
        );
        eprintln!("SKIP: no cgroup v2 hierarchy mounted");
        return;
    };
    let cg = Cgroup::new(&root, "zt-filter-test");
    let sub = cg.path.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let port = echo_server();
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(Filter::new().include_cgroup(&cg.path))
        .load()
        .expect("load probes");
    let mut inside = Client::start(&bash(), "cg-in", port, 3, 0);
    let mut deeper = Client::start(&bash(), "cg-sub", port, 3, 0);
    let mut outside = Client::start(&bash(), "cg-out", port, 3, 0);
    cg.add(inside.pid());
    std::fs::write(sub.join("cgroup.procs"), deeper.pid().to_string()).unwrap();
    let seen = run(&mut probes, &mut [&mut inside, &mut deeper, &mut outside]);
    assert_eq!(seen.numbers("cg-in"), all(3), "in the cgroup");
    assert_eq!(seen.numbers("cg-sub"), all(3), "in a child cgroup");
    assert!(seen.numbers("cg-out").is_empty(), "outside");

    // Relative to the mount, and excluded.
    let rel = cg.path.strip_prefix(&root).unwrap().to_owned();
    probes
        .set_filter(&Filter::new().exclude_cgroup(&rel))
        .unwrap();
    let mut inside = Client::start(&bash(), "cg-in2", port, 3, 0);
    let mut outside = Client::start(&bash(), "cg-out2", port, 3, 0);
    cg.add(inside.pid());
    let seen = run(&mut probes, &mut [&mut inside, &mut outside]);
    assert!(seen.numbers("cg-in2").is_empty(), "excluded subtree");
    assert_eq!(seen.numbers("cg-out2"), all(3));
    drop(probes);
    let _ = std::fs::remove_dir(&sub);
}

#[test]
fn port_filters_by_either_end() {
    if !require_bpf() {
        return;
    }
    let p1 = echo_server();
    let p2 = echo_server();
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(Filter::new().include_port(p1))
        .load()
        .expect("load probes");
    let mut c1 = Client::start(&bash(), "port-1", p1, 3, 0);
    let mut c2 = Client::start(&bash(), "port-2", p2, 3, 0);
    let seen = run(&mut probes, &mut [&mut c1, &mut c2]);
    assert_eq!(seen.numbers("port-1"), all(3), "included port (remote end)");
    assert!(seen.numbers("port-2").is_empty());

    probes
        .set_filter(&Filter::new().exclude_remote_port(p1))
        .unwrap();
    let mut c1 = Client::start(&bash(), "port-1b", p1, 3, 0);
    let mut c2 = Client::start(&bash(), "port-2b", p2, 3, 0);
    let seen = run(&mut probes, &mut [&mut c1, &mut c2]);
    assert!(seen.numbers("port-1b").is_empty(), "excluded remote port");
    assert_eq!(seen.numbers("port-2b"), all(3));

    // A local-port include does not match the client's (ephemeral) end.
    probes
        .set_filter(&Filter::new().include_local_port(p1))
        .unwrap();
    let mut c1 = Client::start(&bash(), "port-1c", p1, 3, 0);
    let seen = run(&mut probes, &mut [&mut c1]);
    assert!(seen.numbers("port-1c").is_empty(), "p1 is the remote end");
}

/// A change made while clients are sending takes effect for their next
/// calls, and a client included before and after loses nothing.
#[test]
fn live_changes_take_effect_and_lose_nothing_that_stays_included() {
    if !require_bpf() {
        return;
    }
    let port = echo_server();
    let n = 150;
    let mut stay = Client::start(&bash(), "live-stay", port, n, 25);
    let mut flip = Client::start(&bash(), "live-flip", port, n, 25);
    let both = Filter::new()
        .include_pid(stay.pid())
        .include_pid(flip.pid());
    let only_stay = Filter::new().include_pid(stay.pid());
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(only_stay.clone())
        .load()
        .expect("load probes");
    let mut seen = Seen::default();
    stay.go();
    flip.go();
    seen.poll(&mut probes, 500);
    assert!(
        seen.numbers("live-flip").is_empty(),
        "flip excluded at first"
    );

    probes.set_filter(&both).unwrap();
    seen.poll(&mut probes, 500);
    assert!(
        !seen.numbers("live-flip").is_empty(),
        "flip included after the change"
    );

    // Flapping between filters that both include `stay`.
    for _ in 0..6 {
        probes.set_filter(&only_stay).unwrap();
        seen.poll(&mut probes, 50);
        probes.set_filter(&both).unwrap();
        seen.poll(&mut probes, 50);
    }

    probes.set_filter(&only_stay).unwrap();
    // A call in flight at the change finishes under the filter it started
    // with: give it a moment, then nothing more of flip may arrive.
    seen.poll(&mut probes, 200);
    let cut = *seen.numbers("live-flip").iter().max().unwrap();
    assert!(
        cut < n - 10,
        "flip still had messages to send ({cut} of {n})"
    );
    stay.wait_ok();
    flip.wait_ok();
    seen.poll(&mut probes, 300);
    assert_eq!(
        seen.numbers("live-flip").iter().max(),
        Some(&cut),
        "flip's traffic stopped at the change"
    );
    assert_eq!(
        seen.numbers("live-stay"),
        all(n),
        "no message of a client included throughout was lost"
    );
    assert!(
        seen.count
            .iter()
            .filter(|((t, _), _)| t == "live-stay")
            .all(|(_, c)| *c == 1),
        "each message once"
    );
    assert_eq!(probes.drops().events_lost(), 0);
}
