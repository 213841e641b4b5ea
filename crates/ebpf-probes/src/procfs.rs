//! What names a process, read from /proc.

use span_core::ProcessInfo;
use std::fs;

/// Read `/proc/<pid>`: comm, exe, argv, parent, cgroup and
/// `OTEL_SERVICE_NAME` from the environment. `None` if the process is gone.
pub fn read_process(pid: u32, ts: u64) -> Option<ProcessInfo> {
    let base = format!("/proc/{pid}");
    let comm = fs::read_to_string(format!("{base}/comm"))
        .ok()?
        .trim_end()
        .to_owned();
    let exe = fs::read_link(format!("{base}/exe"))
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
        .unwrap_or_default();
    let args = fs::read(format!("{base}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let ppid = fs::read_to_string(format!("{base}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PPid:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0);
    Some(ProcessInfo {
        pid,
        ppid,
        ts,
        comm,
        exe,
        args,
        service_name: service_name_from_env(pid),
        cgroup: fs::read_to_string(format!("{base}/cgroup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            }),
    })
}

/// `OTEL_SERVICE_NAME`, or `service.name` inside `OTEL_RESOURCE_ATTRIBUTES`.
pub fn service_name_from_env(pid: u32) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut from_attrs = None;
    for var in env.split(|c| *c == 0) {
        if let Some(v) = var.strip_prefix(b"OTEL_SERVICE_NAME=") {
            let v = String::from_utf8_lossy(v).trim().to_owned();
            if !v.is_empty() {
                return Some(v);
            }
        } else if let Some(v) = var.strip_prefix(b"OTEL_RESOURCE_ATTRIBUTES=") {
            from_attrs = String::from_utf8_lossy(v)
                .split(',')
                .find_map(|kv| {
                    kv.trim()
                        .strip_prefix("service.name=")
                        .map(|s| s.trim().to_owned())
                })
                .filter(|s| !s.is_empty());
        }
    }
    from_attrs
}

/// Pids of every process now running.
pub fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let p = read_process(me, 5).expect("own /proc entry");
        assert_eq!(p.pid, me);
        assert!(!p.comm.is_empty());
        assert!(!p.args.is_empty());
        assert!(p.exe.contains('/'));
        assert!(read_process(u32::MAX - 1, 0).is_none());
        assert!(all_pids().contains(&me));
    }

    #[test]
    fn service_name_from_a_child_environment() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env("OTEL_SERVICE_NAME", "checkout")
            .spawn()
            .unwrap();
        // Right after exec the environment can read empty (the agent reads
        // it again later for that reason); it shows up within moments.
        let mut name = None;
        for _ in 0..200 {
            name = read_process(child.id(), 0).unwrap().service_name;
            if name.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(name.as_deref(), Some("checkout"));
    }
}
