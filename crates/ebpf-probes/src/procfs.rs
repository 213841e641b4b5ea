//! What names a process, read from /proc.

use span_core::ProcessInfo;
use std::fs;

/// Read `/proc/<pid>`: comm, exe, argv, parent, cgroup, network namespace
/// and `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` from the
/// environment. `None` if the process is gone.
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
    let env = otel_env(pid);
    Some(ProcessInfo {
        pid,
        ppid,
        ts,
        comm,
        exe,
        args,
        service_name: env.service_name,
        resource_attributes: env.resource_attributes,
        net_ns: net_ns(pid),
        cgroup: fs::read_to_string(format!("{base}/cgroup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            }),
        // Set by the caller, which caches it per executable
        // (`runtime::Detector`).
        runtime: None,
    })
}

/// What a process's environment says about its identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name: Option<String>,
    /// The other pairs of `OTEL_RESOURCE_ATTRIBUTES` (`service.namespace`,
    /// `deployment.environment`, ...).
    pub resource_attributes: Vec<(String, String)>,
}

/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` of process `pid`
/// (empty if unreadable).
pub fn otel_env(pid: u32) -> OtelEnv {
    let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
        return OtelEnv::default();
    };
    let mut out = OtelEnv::default();
    let mut from_attrs = None;
    for var in env.split(|c| *c == 0) {
        if let Some(v) = var.strip_prefix(b"OTEL_SERVICE_NAME=") {
            let v = String::from_utf8_lossy(v).trim().to_owned();
            if !v.is_empty() {
                out.service_name = Some(v);
            }
        } else if let Some(v) = var.strip_prefix(b"OTEL_RESOURCE_ATTRIBUTES=") {
            let (name, attrs) =
                span_core::naming::parse_resource_attributes(&String::from_utf8_lossy(v));
            from_attrs = name;
            out.resource_attributes = attrs;
        }
    }
    out.service_name = out.service_name.or(from_attrs);
    out
}

/// `OTEL_SERVICE_NAME`, or `service.name` inside `OTEL_RESOURCE_ATTRIBUTES`.
pub fn service_name_from_env(pid: u32) -> Option<String> {
    otel_env(pid).service_name
}

/// Inode of the network namespace of `pid` (`/proc/<pid>/ns/net` reads
/// `net:[4026531840]`).
pub fn net_ns(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Local endpoints of this process's own sockets (getsockname on each fd
/// listed in /proc/self/fd: a few syscalls, no scan of the host's socket
/// table).
pub fn own_tcp_endpoints() -> std::collections::HashSet<std::net::SocketAddr> {
    let mut out = std::collections::HashSet::new();
    let Ok(rd) = fs::read_dir("/proc/self/fd") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(a) = sock_name(fd) {
            out.insert(a);
        }
    }
    out
}

/// The local address of socket `fd` (IPv4 or IPv6, v4-mapped unmapped).
fn sock_name(fd: i32) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    // SAFETY: sockaddr_storage is plain data; getsockname writes at most
    // `len` bytes into it and fails harmlessly on a non-socket fd.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd, (&raw mut ss).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(&raw const ss).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(&raw const ss).cast() };
            let v6 = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            Some(SocketAddr::new(ip, u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// When process `pid` started: `/proc/<pid>/stat` field 22, in clock
/// ticks since boot (what the goroutine probes compare with the kernel's
/// view, so a reused pid never inherits).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume
    // after the last ')'; field 3 (state) is the first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
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
    fn start_ticks_of_self_are_at_most_now() {
        let t = start_ticks(std::process::id()).expect("own stat");
        let up: f64 = fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            t > 0 && (t as f64) <= up * 100.0 + 1.0,
            "{t} ticks, uptime {up} s"
        );
        assert_eq!(start_ticks(u32::MAX), None);
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
    fn own_network_namespace() {
        let me = net_ns(std::process::id()).expect("own /proc/self/ns/net");
        assert!(me > 0);
        assert_eq!(
            read_process(std::process::id(), 0).unwrap().net_ns,
            Some(me)
        );
    }

    #[test]
    fn resource_attributes_from_a_child_environment() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=cart,service.namespace=shop,deployment.environment=prod",
            )
            .spawn()
            .unwrap();
        let mut env = OtelEnv::default();
        for _ in 0..200 {
            env = otel_env(child.id());
            if env.service_name.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(env.service_name.as_deref(), Some("cart"));
        assert_eq!(
            env.resource_attributes,
            vec![
                ("service.namespace".to_owned(), "shop".to_owned()),
                ("deployment.environment".to_owned(), "prod".to_owned())
            ]
        );
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
