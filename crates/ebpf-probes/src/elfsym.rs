//! Symbol file offsets for uprobes, resolved in one pass over an ELF file.
//!
//! Attaching by symbol name makes the loader parse the whole file and scan
//! its symbol tables once per probe: for a large binary such as `node` (10
//! probes, ~100k symbols) that took 0.6 s here, during which no event was
//! read. This resolves every wanted symbol in a single scan, and can run on
//! a helper thread ([`Resolver`]) so the event loop never waits for it.

use object::{Object, ObjectSection, ObjectSymbol};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Symbol name -> file offset of its first instruction.
pub type Offsets = HashMap<String, u64>;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not an ELF file this tracer can read: {1}")]
    Parse(PathBuf, object::Error),
}

/// File offsets of the `wanted` symbols defined in `path` (dynamic symbols
/// first, then the full symbol table, where local symbols live). Symbols
/// the file only imports are not "defined" and are left out, as are
/// missing ones.
pub fn resolve(path: &Path, wanted: &[&str]) -> Result<Offsets, ResolveError> {
    let map = Mapped::open(path).map_err(|e| ResolveError::Io(path.to_owned(), e))?;
    let obj =
        object::File::parse(map.bytes()).map_err(|e| ResolveError::Parse(path.to_owned(), e))?;
    let translate = matches!(
        obj.kind(),
        object::ObjectKind::Dynamic | object::ObjectKind::Executable
    );
    let mut out = Offsets::new();
    for sym in obj.dynamic_symbols().chain(obj.symbols()) {
        if out.len() == wanted.len() {
            break;
        }
        if !sym.is_definition() {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if !wanted.contains(&name) || out.contains_key(name) {
            continue;
        }
        let offset = if translate {
            let Some(index) = sym.section_index() else {
                continue;
            };
            let Ok(section) = obj.section_by_index(index) else {
                continue;
            };
            let Some((file_off, _)) = section.file_range() else {
                continue;
            };
            match sym.address().checked_sub(section.address()) {
                Some(d) => d + file_off,
                None => continue,
            }
        } else {
            sym.address()
        };
        out.insert(name.to_owned(), offset);
    }
    Ok(out)
}

/// A file mapped read-only: only the pages the symbol scan touches are
/// read (a 100 MB `node` binary resolves in a few ms instead of reading it
/// all).
pub(crate) struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    pub(crate) fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large"))?;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a fresh private read-only mapping of an open file; the
        // fd may be closed afterwards. If the file is truncated while mapped,
        // reads past its end fault: library files are replaced, not
        // truncated in place, by package managers.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open() mapped.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// What a file is to be probed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Tls,
    PythonContexts,
    /// A Go executable: goroutine probes ([`crate::goruntime`]).
    Go,
}

impl Target {
    pub fn symbols(self) -> Vec<&'static str> {
        let probes = match self {
            Target::Tls => crate::tls::TLS_PROBES,
            Target::PythonContexts => crate::pyctx::CTX_PROBES,
            Target::Go => &[],
        };
        let mut v: Vec<&'static str> = probes.iter().map(|p| p.1).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// What a file's probe points are.
#[derive(Debug)]
pub enum Resolution {
    Symbols(Offsets),
    Go(Box<crate::goruntime::GoBinary>),
}

/// Resolve `target`'s probe points in `path`.
pub fn resolve_target(path: &Path, target: Target) -> Result<Resolution, String> {
    match target {
        Target::Go => crate::goruntime::analyze(path)
            .map(|b| Resolution::Go(Box::new(b)))
            .map_err(|e| e.to_string()),
        _ => resolve(path, &target.symbols())
            .map(Resolution::Symbols)
            .map_err(|e| e.to_string()),
    }
}

/// Resolution done: the file, what for, and the probe points (or why not).
pub type Resolved = (PathBuf, Target, Result<Resolution, String>);

/// A helper thread resolving symbols off the event loop.
pub struct Resolver {
    /// Jobs submitted and not yet collected through `done`.
    outstanding: usize,
    tx: Option<mpsc::Sender<(PathBuf, Target)>>,
    rx: mpsc::Receiver<Resolved>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resolver {
    pub fn spawn() -> std::io::Result<Resolver> {
        let (tx, jobs) = mpsc::channel::<(PathBuf, Target)>();
        let (done, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("zt-symbols".into())
            .spawn(move || {
                for (path, target) in jobs {
                    let r = resolve_target(&path, target);
                    if done.send((path, target, r)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Resolver {
            outstanding: 0,
            tx: Some(tx),
            rx,
            thread: Some(thread),
        })
    }

    pub fn submit(&mut self, path: PathBuf, target: Target) {
        if let Some(tx) = &self.tx {
            if tx.send((path, target)).is_ok() {
                self.outstanding += 1;
            }
        }
    }

    /// Resolutions finished so far.
    pub fn done(&mut self) -> Vec<Resolved> {
        let done: Vec<Resolved> = self.rx.try_iter().collect();
        self.outstanding = self.outstanding.saturating_sub(done.len());
        done
    }

    /// Whether submitted files are still being resolved.
    pub fn busy(&self) -> bool {
        self.outstanding > 0
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_defined_symbols_and_skips_imports() {
        // This test binary defines `main` and imports `malloc` from libc.
        let me = std::env::current_exe().unwrap();
        let got = resolve(&me, &["main", "malloc", "no_such_symbol_zt"]).unwrap();
        assert!(got.get("main").is_some_and(|o| *o > 0), "{got:?}");
        assert!(
            !got.contains_key("malloc"),
            "imports are not definitions: {got:?}"
        );
        assert!(!got.contains_key("no_such_symbol_zt"));
    }

    #[test]
    fn errors_name_the_file() {
        let e = resolve(Path::new("/nonexistent/zt"), &["x"]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/zt"));
        let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let e = resolve(&toml, &["x"]).unwrap_err();
        assert!(e.to_string().contains("not an ELF"), "{e}");
    }
}
