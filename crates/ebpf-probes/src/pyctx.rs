//! Finding CPython runtimes to attach the execution-context probes to
//! (`pyctx.bpf.h`).
//!
//! `context_run` and `context_tp_dealloc` are local symbols: they are in the
//! symbol table (`.symtab`) of a libpython that is not stripped (pyenv,
//! python.org and most distribution builds of `libpython3.X.so`), not in its
//! dynamic symbols. A stripped interpreter simply gets no context probes:
//! its spans are linked as without them.

use std::path::{Path, PathBuf};

/// (program, symbol, is return probe). Return probes first, so no entry is
/// seen without its return being watched.
pub(crate) const CTX_PROBES: &[(&str, &str, bool)] = &[
    ("zt_ctx_ret", "context_run", true),
    ("zt_ctx_run", "context_run", false),
    ("zt_ctx_dealloc", "context_tp_dealloc", false),
];

pub(crate) const CTX_PROGRAMS: &[&str] = &["zt_ctx_run", "zt_ctx_ret", "zt_ctx_dealloc"];

/// Whether a file name looks like a CPython 3 runtime: `libpython3.X.so*`,
/// or an interpreter executable (`python3`, `python3.11`) that may carry it
/// statically.
pub fn is_python_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    (name.starts_with("libpython3") && name.contains(".so"))
        || (name.starts_with("python3")
            && name[7..].chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Python runtimes a process maps or runs, as paths usable from here.
pub fn process_candidates(pid: u32) -> Vec<PathBuf> {
    crate::tls::process_files(pid, is_python_candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates() {
        for yes in [
            "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libpython3.12.so",
            "/usr/bin/python3.11",
            "/usr/bin/python3",
        ] {
            assert!(is_python_candidate(Path::new(yes)), "{yes}");
        }
        for no in [
            "/usr/bin/python3-config",
            "/usr/lib/libpython2.7.so",
            "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311.so",
            "/usr/bin/node",
        ] {
            assert!(!is_python_candidate(Path::new(no)), "{no}");
        }
    }
}
