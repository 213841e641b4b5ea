//! Loads the real probes and checks that the data events of a real Go
//! program carry the goroutine that made each call, and that goroutine
//! starts name their creators. Needs root (skipped with a message
//! otherwise, a failure when ZT_REQUIRE_BPF=1) and a Go toolchain (skipped
//! with a message when missing).

use ebpf_probes::{goruntime, procfs, raw, Probes};
use span_core::{Direction, Event, TaskEvent};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn require_bpf() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("ZT_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("ZT_REQUIRE_BPF=1 but not running as root");
        }
        eprintln!("SKIP: needs root to load eBPF programs (ZT_REQUIRE_BPF=1 makes this a failure)");
        return false;
    }
    true
}

/// Waits for a line on stdin (the probes are ready), then: goroutine A
/// (created by main) writes "tag-A" to a TCP connection and creates B,
/// which writes "tag-B" and creates C, which writes "tag-C" and makes an
/// HTTP/1 GET through net/http's client to a server in the same program
/// (the request is written by the connection's write loop goroutine, on
/// C's behalf). Then main writes "tag-M" itself.
const PROGRAM: &str = r#"package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	done := make(chan struct{})
	go func() { // A
		conn.Write([]byte("tag-A"))
		go func() { // B
			conn.Write([]byte("tag-B"))
			go func() { // C
				conn.Write([]byte("tag-C"))
				resp, err := http.Get("http://" + hl.Addr().String() + "/from-c")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				close(done)
			}()
		}()
	}()
	<-done
	conn.Write([]byte("tag-M"))
	conn.Close()
	fmt.Println("done")
}
"#;

fn build(dir: &Path, flags: &[&str], cgo: bool) -> Option<PathBuf> {
    if !Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.go"), PROGRAM).unwrap();
    let out = dir.join("prog");
    let st = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg("main.go")
        .current_dir(dir)
        .env("GO111MODULE", "off")
        .env("GOCACHE", std::env::temp_dir().join("zt-go-build-cache"))
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .status()
        .unwrap();
    assert!(st.success(), "go build");
    Some(out)
}

fn run_case(name: &str, flags: &[&str], cgo: bool) {
    let dir = std::env::temp_dir().join(format!("zt-goroutines-{name}-{}", std::process::id()));
    let Some(bin) = build(&dir, flags, cgo) else {
        eprintln!("SKIP {name}: no go toolchain (apt-get install golang-go)");
        return;
    };
    let analysis = goruntime::analyze(&bin).expect("analyse");
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .load()
        .expect("load probes");
    assert!(probes.attach_go(&analysis).expect("attach"));
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run go program");
    let pid = child.id();
    // Registered before it does anything traced.
    std::thread::sleep(Duration::from_millis(200));
    let ticks = procfs::start_ticks(pid).expect("start time");
    probes
        .track_go_process(pid, analysis.tls_g_offset, ticks)
        .expect("track");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let st = child.wait().unwrap();
    assert!(st.success());

    let mut events = Vec::new();
    let mut decoder = raw::Decoder::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        probes
            .poll(Duration::from_millis(50), |rec| {
                if let Ok(Some(ev)) = decoder.decode(rec) {
                    if ev.pid() == pid {
                        events.push(ev);
                    }
                }
            })
            .unwrap();
    }
    let starts: HashMap<u64, TaskEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskStart(t) => Some((t.task, *t)),
            _ => None,
        })
        .collect();
    let ends: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskEnd(t) => Some(t.task),
            _ => None,
        })
        .collect();
    let task_of = |tag: &str| -> u64 {
        let d = events
            .iter()
            .find_map(|e| match e {
                Event::Data(d)
                    if d.direction == Direction::Egress && d.payload == tag.as_bytes() =>
                {
                    Some(d)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no data event for {tag}"));
        d.task
    };
    let (a, b, c, m) = (
        task_of("tag-A"),
        task_of("tag-B"),
        task_of("tag-C"),
        task_of("tag-M"),
    );
    eprintln!(
        "{name}: tasks A={a} B={b} C={c} main={m}; {} starts, {} ends; g at FS{:+}",
        starts.len(),
        ends.len(),
        analysis.tls_g_offset
    );
    // The probes were attached before the program started: even the main
    // goroutine (created by the runtime's bootstrap on g0, so with no
    // creator) has a task. Each start names its creator.
    assert!(
        m != 0 && a != 0 && b != 0 && c != 0,
        "{name}: {m} {a} {b} {c}"
    );
    assert!(a != b && b != c && a != c && m != a);
    assert_eq!(
        starts[&m].parent, 0,
        "{name}: main has no creating goroutine"
    );
    assert_eq!(starts[&a].parent, m, "{name}: A created by main");
    assert_eq!(starts[&b].parent, a, "{name}: B created by A");
    assert_eq!(starts[&c].parent, b, "{name}: C created by B");
    assert!(starts[&a].ts < starts[&b].ts && starts[&b].ts < starts[&c].ts);
    for t in [a, b, c] {
        assert!(ends.contains(&t), "{name}: task {t} ended");
    }
    // net/http: the GET is written by the connection's write loop, on C's
    // behalf; the server's handler runs on its own goroutine.
    let get = events
        .iter()
        .find_map(|e| match e {
            Event::Data(d)
                if d.direction == Direction::Egress && d.payload.starts_with(b"GET /from-c") =>
            {
                Some(d)
            }
            _ => None,
        })
        .expect("GET captured");
    assert_eq!(get.task, c, "{name}: the request is written for C");
    let served = events
        .iter()
        .find_map(|e| match e {
            Event::Data(d)
                if d.direction == Direction::Egress && d.payload.starts_with(b"HTTP/1.1 200") =>
            {
                Some(d.task)
            }
            _ => None,
        })
        .expect("response captured");
    assert!(
        served != 0 && served != c,
        "{name}: the server answers from its own goroutine"
    );
    assert_eq!(probes.drops().get("ringbuf_full_control"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn go_data_events_carry_their_goroutine() {
    if !require_bpf() {
        return;
    }
    run_case("plain", &[], false);
    run_case("stripped", &["-ldflags", "-s -w"], false);
    run_case("cgo", &[], true);
}
