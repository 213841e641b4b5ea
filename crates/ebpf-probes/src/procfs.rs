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

/// Local endpoints of this process's own TCP sockets (from its socket fds
/// and /proc/self/net/tcp{,6}).
pub fn own_tcp_endpoints() -> std::collections::HashSet<std::net::SocketAddr> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(rd) = fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                let t = t.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(i) = i.parse::<u64>() {
                        inodes.insert(i);
                    }
                }
            }
        }
    }
    let mut out = std::collections::HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            out.extend(tcp_table_endpoints(&text, &inodes));
        }
    }
    out
}

/// Local endpoints of the sockets of `inodes` in a /proc/net/tcp{,6} table.
fn tcp_table_endpoints(
    text: &str,
    inodes: &std::collections::HashSet<u64>,
) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
            continue;
        };
        if !inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i)) {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        // Each 32-bit word is printed as the host-order value of the
        // network-order bytes.
        let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
            .map(|i| {
                u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)
                    .ok()
                    .map(u32::to_ne_bytes)
            })
            .collect();
        let ip = match words.as_deref() {
            Some([w]) => IpAddr::V4(Ipv4Addr::from(*w)),
            Some([a, b, c, d]) => {
                let mut bytes = [0u8; 16];
                for (i, w) in [a, b, c, d].into_iter().enumerate() {
                    bytes[i * 4..i * 4 + 4].copy_from_slice(w);
                }
                let v6 = Ipv6Addr::from(bytes);
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => continue,
        };
        out.push(SocketAddr::new(ip, port));
    }
    out
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
    fn own_endpoints_include_a_socket_we_hold() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let l6 = std::net::TcpListener::bind("[::1]:0");
        let own = own_tcp_endpoints();
        assert!(own.contains(&l.local_addr().unwrap()), "{own:?}");
        assert!(own.contains(&c.local_addr().unwrap()), "{own:?}");
        if let Ok(l6) = l6 {
            assert!(own.contains(&l6.local_addr().unwrap()), "{own:?}");
        }
    }

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
