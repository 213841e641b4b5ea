//! What a new process costs the source after its exec: library rescans
//! and environment reads of its /proc entry are scheduled, and dropped
//! when the process exits (a short-lived command would otherwise cost four
//! rescans and two environment reads for nothing). Needs root: skipped
//! with a message otherwise, and a failure when ZT_REQUIRE_BPF=1 (CI).

mod common;
use common::require_bpf;

use ebpf_probes::{LiveSource, Probes};
use span_core::Event;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_looks_at_a_process_that_exited_are_dropped() {
    if !require_bpf() {
        return;
    }
    let probes = Probes::builder().load().expect("load probes");
    // With the TLS probes, every exec schedules library rescans up to 5 s
    // later, besides the environment reads.
    let mut source = LiveSource::new(probes, true);
    let mut living = Command::new("sleep").arg("30").spawn().expect("sleep");
    let mut short = Command::new("true").spawn().expect("true");
    short.wait().unwrap();
    let (living_pid, short_pid) = (living.id(), short.id());

    let (mut execd, mut exited, mut living_execd) = (false, false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !(execd && exited && living_execd) {
        source
            .poll(Duration::from_millis(50), |ev| match ev {
                Event::Process(p) if p.pid == short_pid => execd = true,
                Event::Process(p) if p.pid == living_pid => living_execd = true,
                Event::ProcessExit { pid, .. } if pid == short_pid => exited = true,
                _ => {}
            })
            .unwrap();
    }
    assert!(execd && exited && living_execd, "execs and the exit seen");
    assert_eq!(
        source.pending_followups(short_pid),
        0,
        "nothing left to look at for a process that exited"
    );
    assert!(
        source.pending_followups(living_pid) > 0,
        "a living process is looked at again"
    );
    living.kill().ok();
    living.wait().ok();
}
