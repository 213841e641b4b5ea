//! What in-kernel filters save (benches/filter_cost.sh): attach the capture
//! probes with a filter, drain the ring buffer until SIGINT/SIGTERM, and
//! print what reached user space, in total and on a given port. Or attach
//! two empty raw syscall tracepoint programs (the floor any syscall-based
//! capture pays).
//!
//! ```sh
//! filter_cost capture PORT [--exclude-port P] [--exclude-cgroup PATH] [--include-pid PID]
//! filter_cost empty OBJECT      # an object with SEC("tp_btf/sys_enter"), SEC("tp_btf/sys_exit")
//! ```
//! Prints `ready` once attached, and on exit one line:
//! `records N bytes B data_on_port D`.

use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};
use ebpf_probes::{raw, Filter, Probes};
use span_core::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    match args.first().map(String::as_str) {
        Some("empty") => empty(args.get(1).ok_or("empty OBJECT")?),
        Some("capture") => capture(&args[1..]),
        _ => Err("usage: filter_cost capture PORT [filters] | filter_cost empty OBJECT".into()),
    }
}

fn empty(obj: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut bpf = Ebpf::load_file(obj)?;
    let btf = Btf::from_sys_fs()?;
    let mut links = Vec::new();
    for (prog, tp) in [("empty_enter", "sys_enter"), ("empty_exit", "sys_exit")] {
        let p: &mut BtfTracePoint = bpf.program_mut(prog).ok_or(prog)?.try_into()?;
        p.load(tp, &btf)?;
        links.push(p.attach()?);
    }
    println!("ready");
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("records 0 bytes 0 data_on_port 0");
    Ok(())
}

fn capture(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = args.first().ok_or("capture PORT")?.parse()?;
    let mut filter = Filter::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or("option without a value")?;
        filter = match a.as_str() {
            "--exclude-port" => filter.exclude_port(v.parse()?),
            "--exclude-cgroup" => filter.exclude_cgroup(v),
            "--include-pid" => filter.include_pid(v.parse()?),
            o => return Err(format!("unknown option {o}").into()),
        };
    }
    let mut probes = Probes::builder()
        .tls(false)
        .contexts(false)
        .filter(filter)
        .load()?;
    println!("ready");
    let mut decoder = raw::Decoder::new();
    let (mut records, mut bytes, mut on_port) = (0u64, 0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) {
        probes.poll(Duration::from_millis(20), |rec| {
            records += 1;
            bytes += rec.len() as u64;
            if let Ok(Some(Event::Data(d))) = decoder.decode(rec) {
                if d.tuple.local.port() == port || d.tuple.remote.port() == port {
                    on_port += 1;
                }
            }
        })?;
    }
    println!("records {records} bytes {bytes} data_on_port {on_port}");
    Ok(())
}
