//! Uprobes as `uprobe_multi` links (Linux 6.6+), loaded outside aya.
//!
//! Why: a perf-event uprobe (what aya 0.14 attaches) is unregistered under
//! the kernel's global `event_mutex`, each waiting there for an RCU Tasks
//! Trace grace period (~60 ms here), so a tracer holding 18 of them took
//! over a second to stop whatever the number of threads closing them
//! (BENCHMARKS.md "Where the second goes: uprobes"). A `uprobe_multi` link
//! carries one program on any number of offsets of one file, takes no
//! global mutex and waits for one grace period when it is closed; closed
//! from several threads at once, the waits overlap.
//!
//! aya 0.14 cannot load a program for such a link (`UProbe::load` gives the
//! kernel no expected attach type, and the kernel requires
//! `BPF_TRACE_UPROBE_MULTI`), so the uprobe programs are loaded here: the
//! same ELF parsed again with aya-obj, CO-RE and calls relocated the way aya
//! does it, map references pointed at the maps aya created (so both halves
//! share every map), then `BPF_PROG_LOAD` and `BPF_LINK_CREATE` directly.
//! On a kernel without uprobe_multi the loader falls back to aya's
//! perf-event uprobes (see `loader.rs`).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use aya::maps::Map;
use aya::{Btf, Ebpf};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};
use aya_obj::{Function, Object, ProgramSection};

/// `BPF_F_UPROBE_MULTI_RETURN`: the link's offsets are function entries
/// whose returns are probed.
const UPROBE_MULTI_RETURN: u32 = aya_obj::generated::BPF_F_UPROBE_MULTI_RETURN;

/// A uprobe program loaded for `uprobe_multi` links.
#[derive(Debug)]
pub(crate) struct MultiProgram {
    pub fd: OwnedFd,
    /// A `uretprobe` section: its links probe returns.
    pub ret: bool,
}

/// Why a uprobe program could not be loaded for multi links.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MultiError {
    #[error("parsing the BPF object again: {0}")]
    Parse(String),
    #[error("program {0} is not in the BPF object")]
    Missing(String),
    #[error("map {0} was not created by the loader")]
    Map(String),
    #[error("loading {name}: {source}{log}")]
    Load {
        name: String,
        source: io::Error,
        /// The verifier's log, when it said anything.
        log: String,
    },
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<RawFd> {
    // SAFETY: attr is a valid, zero-initialised bpf_attr whose pointer
    // members point at buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as RawFd)
    }
}

/// The file descriptor of a map aya created.
fn map_fd(map: &Map) -> RawFd {
    macro_rules! fd {
        ($($v:ident),*) => {
            match map { $(Map::$v(m) => m.fd().as_fd().as_raw_fd(),)* }
        };
    }
    fd!(
        Array,
        ArrayOfMaps,
        BloomFilter,
        CgroupArray,
        CgroupStorage,
        CgrpStorage,
        CpuMap,
        DevMap,
        DevMapHash,
        HashMap,
        HashOfMaps,
        InodeStorage,
        LpmTrie,
        LruHashMap,
        PerCpuArray,
        PerCpuCgroupStorage,
        PerCpuHashMap,
        PerCpuLruHashMap,
        PerfEventArray,
        ProgramArray,
        Queue,
        ReusePortSockArray,
        RingBuf,
        SockHash,
        SockMap,
        SkStorage,
        Stack,
        StackTraceMap,
        Unsupported,
        XskMap
    )
}

/// Load `names` (uprobe or uretprobe sections of the object `data`) for
/// multi links, their map references bound to the maps `bpf` created from
/// the same object. Call before any map is taken out of `bpf`.
pub(crate) fn load(
    data: &[u8],
    bpf: &Ebpf,
    btf: &Btf,
    names: &[&str],
) -> Result<HashMap<String, MultiProgram>, MultiError> {
    let mut obj = Object::parse(data).map_err(|e| MultiError::Parse(e.to_string()))?;
    // The object's own BTF, fixed up for this kernel as aya does: the
    // kernel wants func_info for programs with subprograms.
    let prog_btf = match aya::features().btf() {
        Some(features) => match obj
            .fixup_and_sanitize_btf(features)
            .map_err(|e| MultiError::Parse(e.to_string()))?
        {
            Some(b) => Some(load_btf(&b.to_bytes()).map_err(|source| MultiError::Load {
                name: "the object's BTF".into(),
                source,
                log: String::new(),
            })?),
            None => None,
        },
        None => None,
    };
    obj.relocate_btf(btf)
        .map_err(|e| MultiError::Parse(e.to_string()))?;
    let fds: HashMap<&str, RawFd> = bpf.maps().map(|(n, m)| (n, map_fd(m))).collect();
    let defs = obj.maps.clone();
    let mut bound = Vec::with_capacity(defs.len());
    for (name, def) in &defs {
        let fd = *fds
            .get(name.as_str())
            .ok_or_else(|| MultiError::Map(name.clone()))?;
        bound.push((name.as_str(), fd, def));
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    obj.relocate_maps(bound.into_iter(), &text_sections)
        .map_err(|e| MultiError::Parse(e.to_string()))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| MultiError::Parse(e.to_string()))?;

    let mut out = HashMap::new();
    for &name in names {
        let prog = obj
            .programs
            .get(name)
            .ok_or_else(|| MultiError::Missing(name.to_owned()))?;
        let ret = matches!(prog.section, ProgramSection::URetProbe { .. });
        let func = obj
            .functions
            .get(&prog.function_key())
            .ok_or_else(|| MultiError::Missing(name.to_owned()))?;
        let fd = load_one(name, func, &prog.license, prog_btf.as_ref())?;
        out.insert(name.to_owned(), MultiProgram { fd, ret });
    }
    Ok(out)
}

fn load_btf(raw: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: bpf_attr is plain data; all-zero is its default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_BTF_LOAD member of the union.
    let u = unsafe { &mut attr.__bindgen_anon_7 };
    u.btf = raw.as_ptr() as u64;
    u.btf_size = raw.len() as u32;
    let fd = sys_bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load_one(
    name: &str,
    func: &Function,
    license: &CString,
    btf: Option<&OwnedFd>,
) -> Result<OwnedFd, MultiError> {
    let insns: &[bpf_insn] = &func.instructions;
    let func_info = func.func_info.func_info_bytes();
    let line_info = func.line_info.line_info_bytes();
    let attempt = |log: &mut Vec<u8>| {
        // SAFETY: bpf_attr is plain data; all-zero is its default.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing the BPF_PROG_LOAD member of the union.
        let u = unsafe { &mut attr.__bindgen_anon_3 };
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
        u.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        u.insn_cnt = insns.len() as u32;
        u.insns = insns.as_ptr() as u64;
        u.license = license.as_ptr() as u64;
        for (d, s) in u.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        if let Some(btf) = btf {
            u.prog_btf_fd = btf.as_raw_fd() as u32;
            if func.func_info_rec_size > 0 {
                u.func_info = func_info.as_ptr() as u64;
                u.func_info_cnt = func.func_info.func_info.len() as u32;
                u.func_info_rec_size = func.func_info_rec_size as u32;
            }
            if func.line_info_rec_size > 0 {
                u.line_info = line_info.as_ptr() as u64;
                u.line_info_cnt = func.line_info.line_info.len() as u32;
                u.line_info_rec_size = func.line_info_rec_size as u32;
            }
        }
        if !log.is_empty() {
            u.log_level = 1;
            u.log_size = log.len() as u32;
            u.log_buf = log.as_mut_ptr() as u64;
        }
        sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    let first = attempt(&mut Vec::new());
    let err = match first {
        // SAFETY: the kernel returned a new file descriptor we own.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => e,
    };
    // Once more with the verifier's log, for the error message.
    let mut log = vec![0u8; 1 << 20];
    let log_text = match attempt(&mut log) {
        // SAFETY: as above (a load that failed once and passed now).
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(_) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "\nverifier log (last lines):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    };
    Err(MultiError::Load {
        name: name.to_owned(),
        source: err,
        log: log_text,
    })
}

/// Attach `prog` to `offsets` of `path` (every process running it) as one
/// link; closing the returned descriptor detaches all of them.
pub(crate) fn attach(prog: &MultiProgram, path: &Path, offsets: &[u64]) -> io::Result<OwnedFd> {
    attach_pid(prog, path, offsets, 0)
}

/// [`attach`], for process `pid` only (0: every process).
pub(crate) fn attach_pid(
    prog: &MultiProgram,
    path: &Path,
    offsets: &[u64],
    pid: u32,
) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // SAFETY: bpf_attr is plain data; all-zero is its default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_LINK_CREATE member of the union.
    let l = unsafe { &mut attr.link_create };
    l.__bindgen_anon_1.prog_fd = prog.fd.as_raw_fd() as u32;
    l.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    // SAFETY: writing the uprobe_multi member of the inner union.
    let m = unsafe { &mut l.__bindgen_anon_3.uprobe_multi };
    m.path = cpath.as_ptr() as u64;
    m.offsets = offsets.as_ptr() as u64;
    m.cnt = offsets.len() as u32;
    m.flags = if prog.ret { UPROBE_MULTI_RETURN } else { 0 };
    m.pid = pid;
    let fd = sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Put `prog` at `index` of the program array `map` (a tail-call table).
pub(crate) fn set_prog_array(map: &Map, index: u32, prog: &MultiProgram) -> io::Result<()> {
    let value = prog.fd.as_raw_fd() as u32;
    // SAFETY: bpf_attr is plain data; all-zero is its default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the map element member of the union.
    let e = unsafe { &mut attr.__bindgen_anon_2 };
    e.map_fd = map_fd(map) as u32;
    e.key = &raw const index as u64;
    e.__bindgen_anon_1.value = &raw const value as u64;
    sys_bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}
