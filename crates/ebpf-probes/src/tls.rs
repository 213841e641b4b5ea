//! Finding TLS libraries to attach the OpenSSL uprobes to.
//!
//! A uprobe is set on a file (inode), so attaching once to
//! `/lib/x86_64-linux-gnu/libssl.so.3` covers every process that maps it,
//! now or later. Libraries outside the usual directories (bundled in a
//! virtualenv, a container image) and binaries that carry OpenSSL themselves
//! (Node.js exports `SSL_read`/`SSL_write` from its own executable) are found
//! through `/proc/<pid>/maps` and `/proc/<pid>/exe`, through the process's own
//! root (`/proc/<pid>/root`), so container paths resolve.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// (program, symbol, is return probe). Missing symbols (`SSL_write_ex` in
/// OpenSSL 1.1.0) are skipped; `SSL_write`/`SSL_read` are required.
pub(crate) const TLS_PROBES: &[(&str, &str, bool)] = &[
    ("zt_ssl_write", "SSL_write", false),
    ("zt_ssl_ret", "SSL_write", true),
    ("zt_ssl_read", "SSL_read", false),
    ("zt_ssl_ret", "SSL_read", true),
    ("zt_ssl_write_ex", "SSL_write_ex", false),
    ("zt_ssl_ret", "SSL_write_ex", true),
    ("zt_ssl_read_ex", "SSL_read_ex", false),
    ("zt_ssl_ret", "SSL_read_ex", true),
    ("zt_ssl_set_fd", "SSL_set_fd", false),
    ("zt_ssl_free", "SSL_free", false),
];

/// Programs to load for TLS.
pub(crate) const TLS_PROGRAMS: &[&str] = &[
    "zt_ssl_write",
    "zt_ssl_write_ex",
    "zt_ssl_read",
    "zt_ssl_read_ex",
    "zt_ssl_ret",
    "zt_ssl_set_fd",
    "zt_ssl_free",
];

const LIB_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/usr/local/lib64",
];

/// Whether a file name looks like something carrying OpenSSL's API.
pub fn is_tls_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    (name.starts_with("libssl") && name.contains(".so")) || name == "node" || name == "nodejs"
}

/// libssl files in the usual library directories.
pub fn system_libraries() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in LIB_DIRS {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if is_tls_candidate(&p) && p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// TLS candidates a process maps or runs, as paths usable from here.
pub fn process_candidates(pid: u32) -> Vec<PathBuf> {
    process_files(pid, is_tls_candidate)
}

/// Files a process runs or maps that `want` accepts, as paths usable from
/// here (through the process's own root).
pub(crate) fn process_files(pid: u32, want: fn(&Path) -> bool) -> Vec<PathBuf> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut out = Vec::new();
    if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
        if want(&exe) {
            out.push(join_root(&root, &exe));
        }
    }
    if let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) {
        for line in maps.lines() {
            // address perms offset dev inode path
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            let p = Path::new(path);
            if path.starts_with('/') && want(p) {
                out.push(join_root(&root, p));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The executable of process `pid`, as a path usable from here (through
/// the process's own root).
pub(crate) fn process_exe(pid: u32) -> Option<PathBuf> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(join_root(Path::new(&format!("/proc/{pid}/root")), &exe))
}

fn join_root(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Files already handled, by (device, inode).
#[derive(Default)]
pub struct Seen(HashSet<(u64, u64)>);

impl Seen {
    /// True the first time this file is offered.
    pub fn first_time(&mut self, path: &Path) -> bool {
        match fs::metadata(path) {
            Ok(m) => self.0.insert((m.dev(), m.ino())),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates() {
        assert!(is_tls_candidate(Path::new(
            "/lib/x86_64-linux-gnu/libssl.so.3"
        )));
        assert!(is_tls_candidate(Path::new("/venv/lib/libssl-1b2c.so.1.1")));
        assert!(is_tls_candidate(Path::new("/usr/bin/node")));
        assert!(!is_tls_candidate(Path::new(
            "/lib/x86_64-linux-gnu/libcrypto.so.3"
        )));
        assert!(!is_tls_candidate(Path::new("/usr/bin/python3")));
        assert!(!is_tls_candidate(Path::new("/lib/libssl.a")));
    }

    #[test]
    fn seen_dedupes_by_inode() {
        let mut s = Seen::default();
        let me = std::env::current_exe().unwrap();
        assert!(s.first_time(&me));
        assert!(!s.first_time(&me));
        assert!(!s.first_time(Path::new("/nonexistent/x")));
    }
}
