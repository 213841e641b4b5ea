//! `Probes::wait_batch` with the real probes: a trickle of records does
//! not end the wait, the ring filling up does, an exec does, the waker
//! does. Needs root: skipped with a message otherwise, and a failure when
//! ZT_REQUIRE_BPF=1 (CI).
//!
//! Other processes of the host write records too (and may exec), so each
//! check retries until it sees what it expects, up to a deadline. Only one
//! looks at a duration, and not as a speed: a 20 s poll that returned in
//! under 10 s was woken by a record rather than by its timeout.

mod common;
use common::require_bpf;

use ebpf_probes::{BatchEnd, Probes};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAKEUP: u64 = 64 << 10;

fn drain(p: &mut Probes) {
    while p.poll(Duration::ZERO, |_| {}).unwrap() > 0 {}
}

/// A loopback TCP pair in a child that sends `n` bytes, in writes of
/// `chunk`, each time a line comes on its stdin (after `pause` seconds);
/// it prints `ready` first.
fn sender(n: usize, chunk: usize) -> Child {
    sender_after(n, chunk, 0.0)
}

fn sender_after(n: usize, chunk: usize, pause: f64) -> Child {
    let script = format!(
        r#"
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
print("ready", flush=True)
for line in sys.stdin:
    time.sleep({pause})
    left = {n}
    while left > 0:
        k = min(left, {chunk})
        cli.sendall(b"x" * k)
        got = 0
        while got < k:
            got += len(conn.recv(k - got))
        left -= k
    print("sent", flush=True)
"#
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

/// The probes with a small wake-up threshold (`None`: not root, skipped).
fn probes() -> Option<Probes> {
    if !require_bpf() {
        return None;
    }
    let p = Probes::builder().wakeup_bytes(WAKEUP).load();
    Some(p.expect("load probes"))
}

fn send(child: &mut Child) {
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
}

#[test]
fn a_batch_wait_ends_on_a_full_ring_an_exec_or_the_waker_not_on_a_trickle() {
    let Some(mut probes) = probes() else {
        return;
    };
    assert!(
        probes.ring_queued_bytes().is_some(),
        "ring positions mapped"
    );

    // A trickle: a few small records, far below the threshold, wait for
    // the timeout (retried when something else forced a wake-up).
    let mut small = sender(64, 64);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut trickle = None;
    while Instant::now() < deadline {
        drain(&mut probes);
        send(&mut small);
        let end = probes.wait_batch(Duration::from_millis(300), None).unwrap();
        let queued = probes.ring_queued_bytes().unwrap();
        if end == BatchEnd::Timeout && queued > 0 && queued < WAKEUP / 2 {
            trickle = Some(queued);
            break;
        }
    }
    assert!(
        trickle.is_some(),
        "records arriving one by one never waited for the timeout"
    );
    small.kill().ok();
    small.wait().ok();

    // The ring filling up: 256 KiB in 4 KiB writes (two records each, with
    // their captured payload) end the wait long before its 60 s.
    let mut big = sender(256 << 10, 4096);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut full = false;
    while Instant::now() < deadline && !full {
        drain(&mut probes);
        send(&mut big);
        let end = probes.wait_batch(Duration::from_secs(60), None).unwrap();
        full = end == BatchEnd::Full && probes.ring_queued_bytes().unwrap() >= WAKEUP / 2;
        // Let the sender finish before the next round.
        let mut line = String::new();
        BufReader::new(big.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
    }
    assert!(full, "a filling ring never ended the wait");
    big.kill().ok();
    big.wait().ok();

    // An exec forces a wake-up (the ring is nearly empty).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut forced = false;
    while Instant::now() < deadline && !forced {
        drain(&mut probes);
        let mut child = Command::new("sleep").arg("0.2").spawn().expect("sleep");
        let end = probes.wait_batch(Duration::from_secs(20), None).unwrap();
        forced = end == BatchEnd::Forced;
        child.wait().ok();
    }
    assert!(forced, "an exec never ended the wait");

    // The waker.
    // SAFETY: a new eventfd, owned here.
    let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) };
    drain(&mut probes);
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a valid buffer to the eventfd.
    assert_eq!(
        unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&efd),
                one.as_ptr().cast(),
                8,
            )
        },
        8
    );
    let end = probes
        .wait_batch(Duration::from_secs(20), Some(efd.as_fd()))
        .unwrap();
    assert_eq!(end, BatchEnd::Waker);
}

/// While the reader batches, records do not wake it one by one (the
/// probes' `reader_lazy`); a poll that then finds the ring empty must turn
/// that off before it sleeps, or it sleeps through every record until its
/// timeout. The records come 0.3 s into a 20 s poll: a poll woken by them
/// returns long before its timeout.
#[test]
fn a_poll_after_a_batch_wait_is_woken_by_the_next_record() {
    let Some(mut probes) = probes() else {
        return;
    };
    let mut late = sender_after(64, 64, 0.3);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut woken = None;
    while Instant::now() < deadline && woken.is_none() {
        drain(&mut probes);
        // Lazy from here on; the other processes' records may still fill
        // the ring meanwhile: then try again.
        probes.wait_batch(Duration::from_millis(1), None).unwrap();
        if probes.ring_queued_bytes() != Some(0) {
            continue;
        }
        send(&mut late);
        let t = Instant::now();
        let n = probes.poll(Duration::from_secs(20), |_| {}).unwrap();
        let took = t.elapsed();
        let mut line = String::new();
        BufReader::new(late.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if n > 0 {
            woken = Some(took);
        }
    }
    let took = woken.expect("the poll returned records");
    assert!(
        took < Duration::from_secs(10),
        "the poll slept through the records until its timeout ({took:?})"
    );
    late.kill().ok();
    late.wait().ok();
}
