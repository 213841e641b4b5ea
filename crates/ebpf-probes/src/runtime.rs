//! Which language runtime an executable carries, when it matters for
//! linking: runtimes that run many tasks on few OS threads (Go, tokio,
//! Node.js's event loop) make "the one request this thread is serving"
//! prove nothing, so span-core never links their calls by thread.
//!
//! Detection reads the executable's ELF headers (and, for tokio, one
//! read-only string section), never the whole file, and is cached per file
//! (device, inode): one look per binary, not per process.

use crate::elfsym::Mapped;
use object::{Object, ObjectSection, ObjectSymbol};
use span_core::{Runtime, RuntimeKind};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Marker of the Go build-info blob (`.go.buildinfo`, Go 1.13 and later).
const GO_BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Strings a binary that runs a tokio runtime carries: the default name of
/// its worker threads in older tokio releases (`tokio-runtime-worker`;
/// tokio 1.54 says `tokio-rt-worker`, which the compiler builds from
/// immediates in code rather than keeping it in read-only data: not
/// findable), and a message of the runtime's own (tokio 1.x; found in a
/// tokio 1.54 release build, tests/topology/tokio).
const TOKIO_MARKERS: &[&[u8]] = &[b"tokio-runtime-worker", b"context of a Tokio 1.x runtime"];
/// Cached files before the cache is emptied (bounded memory).
const CACHE_LIMIT: usize = 4096;

/// Runtime detection with a per-file cache.
#[derive(Default)]
pub struct Detector {
    cache: HashMap<(u64, u64), Option<Runtime>>,
}

impl Detector {
    /// The runtime of process `pid`'s executable (`/proc/<pid>/exe`, which
    /// works for deleted files and other mount namespaces too).
    pub fn of_process(&mut self, pid: u32) -> Option<Runtime> {
        self.of_file(Path::new(&format!("/proc/{pid}/exe")))
    }

    /// The runtime of the executable at `path`; `None` when it is none of
    /// the multiplexing runtimes, or unreadable.
    pub fn of_file(&mut self, path: &Path) -> Option<Runtime> {
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.dev(), meta.ino());
        if let Some(r) = self.cache.get(&key) {
            return r.clone();
        }
        let found = detect(path);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, found.clone());
        found
    }
}

/// Inspect one executable (uncached).
pub fn detect(path: &Path) -> Option<Runtime> {
    let map = Mapped::open(path).ok()?;
    let data = map.bytes();
    let obj = object::File::parse(data).ok()?;
    if let Some(info) = obj.section_by_name(".go.buildinfo") {
        let version = info.data().ok().and_then(|b| go_version(&obj, b));
        return Some(Runtime {
            kind: RuntimeKind::Go,
            version,
        });
    }
    // Go binaries built without build info still carry the runtime's
    // function table.
    if obj.section_by_name(".gopclntab").is_some() {
        return Some(Runtime {
            kind: RuntimeKind::Go,
            version: None,
        });
    }
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_node = matches!(base.as_str(), "node" | "nodejs")
        || obj
            .dynamic_symbols()
            .any(|s| s.is_definition() && s.name() == Ok("uv_run"));
    if is_node {
        return Some(Runtime {
            kind: RuntimeKind::Node,
            version: None,
        });
    }
    let tokio = obj
        .sections()
        .filter(|s| matches!(s.name(), Ok(".rodata" | ".data.rel.ro")))
        .filter_map(|s| s.data().ok())
        .any(|b| {
            TOKIO_MARKERS
                .iter()
                .any(|m| memchr::memmem::find(b, m).is_some())
        });
    tokio.then_some(Runtime {
        kind: RuntimeKind::Tokio,
        version: None,
    })
}

/// The Go version from `.go.buildinfo`: inline in Go 1.18+ (flag bit 2:
/// length-prefixed strings at offset 32), else through two pointers to Go
/// string headers (`runtime.buildVersion`, then the module info).
pub(crate) fn go_version(obj: &object::File<'_>, info: &[u8]) -> Option<String> {
    if info.len() < 32 || !info.starts_with(GO_BUILDINFO_MAGIC) {
        return None;
    }
    let ptr_size = usize::from(info[14]);
    let flags = info[15];
    let big_endian = flags & 1 != 0;
    if flags & 2 != 0 {
        let (len, n) = uvarint(&info[32..])?;
        let start = 32 + n;
        let s = info.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        return valid_version(s);
    }
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let read_ptr = |b: &[u8]| -> Option<u64> {
        let b = b.get(..ptr_size)?;
        Some(match (ptr_size, big_endian) {
            (8, false) => u64::from_le_bytes(b.try_into().ok()?),
            (8, true) => u64::from_be_bytes(b.try_into().ok()?),
            (_, false) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
            (_, true) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
        })
    };
    // A Go string header at `addr`: (data pointer, length).
    let header = read_ptr(&info[16..])?;
    let hdr = read_at(obj, header, 2 * ptr_size)?;
    let data = read_ptr(hdr)?;
    let len = usize::try_from(read_ptr(&hdr[ptr_size..])?).ok()?;
    if len > 64 {
        return None;
    }
    valid_version(read_at(obj, data, len)?)
}

/// `len` bytes at virtual address `addr`, from the section holding them.
fn read_at<'a>(obj: &object::File<'a>, addr: u64, len: usize) -> Option<&'a [u8]> {
    obj.sections().find_map(|s| {
        let off = addr.checked_sub(s.address())?;
        if off >= s.size() {
            return None;
        }
        let data = s.data().ok()?;
        let off = usize::try_from(off).ok()?;
        data.get(off..off.checked_add(len)?)
    })
}

fn valid_version(s: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(s).ok()?;
    (s.starts_with("go") && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Go's unsigned varint: 7 bits per byte, low first.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarints() {
        assert_eq!(uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn plain_c_binaries_are_no_multiplexing_runtime() {
        let mut d = Detector::default();
        assert_eq!(d.of_file(Path::new("/bin/sleep")), None);
        assert_eq!(d.of_file(Path::new("/bin/sh")), None);
        assert_eq!(d.of_file(Path::new("/nonexistent/zt")), None);
        assert_eq!(d.cache.len(), 2);
    }

    #[test]
    fn node_by_name() {
        if Path::new("/usr/bin/node").exists() {
            let r = detect(Path::new("/usr/bin/node")).unwrap();
            assert_eq!(r.kind, RuntimeKind::Node);
        }
    }

    /// Go binaries built here with the system Go (if installed): with and
    /// without symbols and DWARF, the runtime and its version are found.
    #[test]
    fn go_binaries_stripped_or_not() {
        let Ok(out) = std::process::Command::new("go").arg("version").output() else {
            eprintln!("SKIP go_binaries_stripped_or_not: no go toolchain");
            return;
        };
        let want = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        let dir = std::env::temp_dir().join(format!("zt-go-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("main.go");
        std::fs::write(
            &src,
            "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hi\") }\n",
        )
        .unwrap();
        for (name, flags) in [("plain", ""), ("stripped", "-s -w")] {
            let bin = dir.join(name);
            let st = std::process::Command::new("go")
                .args(["build", "-ldflags", flags, "-o"])
                .arg(&bin)
                .arg(&src)
                .env("GOCACHE", dir.join("cache"))
                .env("GO111MODULE", "off")
                .status()
                .unwrap();
            assert!(st.success(), "go build {name}");
            let r = detect(&bin).unwrap_or_else(|| panic!("{name}: not detected"));
            assert_eq!(r.kind, RuntimeKind::Go, "{name}");
            assert_eq!(r.version.as_deref(), Some(want.as_str()), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
