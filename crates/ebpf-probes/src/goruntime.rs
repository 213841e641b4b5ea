//! What the goroutine probes (`bpf/go.bpf.h`) need from a Go executable:
//! where to put them and where the current goroutine is.
//!
//! - **Function bounds** of a few runtime and `net/http` functions, from
//!   the symbol table (`.symtab`) or, in stripped binaries (`-ldflags "-s
//!   -w"`, `strip`), from the Go runtime's own function table
//!   (`.gopclntab`, which every Go binary keeps because tracebacks need it).
//! - **Every `RET` of `runtime.newproc1`**, found by decoding its machine
//!   code (iced-x86): return probes (uretprobes) rewrite the return address
//!   on the stack, which breaks Go, whose goroutine stacks move and are
//!   walked by the runtime; a probe on each `RET` sees the result in RAX
//!   without touching the stack.
//! - **The TLS slot of the current `g`**: Go keeps the running goroutine in
//!   thread-local storage at a fixed offset from the FS base. The offset is
//!   read from the runtime's own code (the `MOV FS:[disp]` instructions of
//!   `runtime.mcall`, `runtime.systemstack` and `runtime.morestack`) and,
//!   when the symbol table has `runtime.tlsg` (external linking: cgo), also
//!   computed from it and the `PT_TLS` segment; the two must agree.
//!   Internally linked binaries use -8; cgo binaries whose C code has
//!   thread-locals of its own use another offset (both are tested).
//!
//! Only amd64 binaries of Go 1.18 or later are accepted: they pass
//! arguments in registers (RAX, RBX, RCX, ...; Go 1.17's register ABI) and
//! their `newproc1(fn, callergp, callerpc)` takes the creating goroutine as
//! its second argument (RBX); Go 1.17 and older have another signature and
//! another function table format (refused with a message saying so).

use crate::elfsym::Mapped;
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Goroutine creation: entry (creator in RBX) and every RET (new g in RAX).
pub const NEWPROC1: &str = "runtime.newproc1";
/// newproc1 makes the new g runnable with `casgstatus(newg, _Gdead,
/// _Grunnable)` (RAX, RBX = 6, RCX = 1; `_Gwaiting` = 4 for goroutines
/// created parked in later releases) before it returns.
const CASGSTATUS: &str = "runtime.casgstatus";
/// Goroutine exit, on the exiting goroutine (R14 = g at entry).
pub const GOEXIT1: &str = "runtime.goexit1";
/// HTTP/1 client: the caller's goroutine hands a request to the
/// connection's write loop (`req *transportRequest` in RBX; its first field
/// is the `*Request`).
pub const PERSIST_ROUND_TRIP: &str = "net/http.(*persistConn).roundTrip";
/// The connection's write loop goroutine starts.
pub const WRITE_LOOP: &str = "net/http.(*persistConn).writeLoop";
/// The write loop writes one request (receiver `*Request` in RAX).
pub const REQUEST_WRITE: &str = "net/http.(*Request).write";

/// Runtime functions that read or write the `g` TLS slot.
const TLS_USERS: &[&str] = &[
    "runtime.mcall",
    "runtime.systemstack",
    "runtime.systemstack.abi0",
    "runtime.morestack",
    "runtime.morestack.abi0",
];

/// Newest Go release whose function table layout and `newproc1` signature
/// were checked against its source.
const NEWEST_CHECKED_MINOR: u32 = 24;

/// The probe points of one Go executable. Offsets are file offsets (what
/// a uprobe is attached at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    pub path: PathBuf,
    /// e.g. `go1.19.8` (from `.go.buildinfo`), if recorded.
    pub version: Option<String>,
    /// Offset of the current `g` from the FS base (negative).
    pub tls_g_offset: i64,
    /// Where to probe newproc1's entry (its stack-check branch, see
    /// [`entry_point`]; RBX still holds the creator there).
    pub newproc1: u64,
    /// Every `CALL runtime.casgstatus` in newproc1 (the new g in RAX; the
    /// probe keeps the `_Gdead -> _Grunnable/_Gwaiting` one).
    pub newg_calls: Vec<u64>,
    /// Every RET of newproc1 (the new g in RAX): used only when no
    /// casgstatus call is found (a RET is single-stepped by the kernel,
    /// a CALL is emulated: ~15-30 us against ~1 us per hit here).
    pub newproc1_rets: Vec<u64>,
    /// Where to probe goexit1's entry (its stack-check branch).
    pub goexit1: u64,
    /// `net/http` client hand-off points, when the binary has all three.
    pub http: Option<HttpClient>,
    /// Where the function bounds came from.
    pub functions_from: FunctionSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpClient {
    pub persist_round_trip: u64,
    pub write_loop: u64,
    pub request_write: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionSource {
    Symtab,
    Pclntab,
}

/// Why a file gets no goroutine probes.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not an ELF file this tracer can read: {1}")]
    Parse(PathBuf, object::Error),
    #[error("{0}: not an amd64 executable (goroutine tracking supports linux/amd64 only)")]
    NotAmd64(PathBuf),
    #[error("{0}: not a Go executable (no .gopclntab or .go.buildinfo)")]
    NotGo(PathBuf),
    #[error("{0}: {1} is older than Go 1.18 (stack-based or different newproc1 arguments): goroutines are not tracked, its calls stay unlinked")]
    TooOld(PathBuf, String),
    #[error("{0}: {1} is newer than the newest Go checked (go1.{NEWEST_CHECKED_MINOR}): goroutines are not tracked")]
    TooNew(PathBuf, String),
    #[error("{0}: Go function table: {1}")]
    Pclntab(PathBuf, String),
    #[error("{0}: defines no {1}")]
    Missing(PathBuf, &'static str),
    #[error("{0}: {1}")]
    Code(PathBuf, String),
    #[error("{0}: TLS slot of g: {1}")]
    Tls(PathBuf, String),
}

/// A function's address range [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncRange {
    pub start: u64,
    pub end: u64,
}

/// Analyse the Go executable at `path` (read through a read-only mapping).
pub fn analyze(path: &Path) -> Result<GoBinary, GoError> {
    let map = Mapped::open(path).map_err(|e| GoError::Io(path.to_owned(), e))?;
    analyze_bytes(path, map.bytes())
}

fn analyze_bytes(path: &Path, data: &[u8]) -> Result<GoBinary, GoError> {
    let p = || path.to_owned();
    let obj = object::File::parse(data).map_err(|e| GoError::Parse(p(), e))?;
    if obj.architecture() != object::Architecture::X86_64 || !obj.is_little_endian() {
        return Err(GoError::NotAmd64(p()));
    }
    let pcln = obj.section_by_name(".gopclntab");
    if pcln.is_none() && obj.section_by_name(".go.buildinfo").is_none() {
        return Err(GoError::NotGo(p()));
    }
    let version = obj
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .and_then(|b| crate::runtime::go_version(&obj, b));
    if let Some(v) = &version {
        match go_minor(v) {
            Some(m) if m < 18 => return Err(GoError::TooOld(p(), v.clone())),
            Some(m) if m > NEWEST_CHECKED_MINOR => return Err(GoError::TooNew(p(), v.clone())),
            _ => {}
        }
    }
    let mut wanted: Vec<&str> = vec![
        NEWPROC1,
        CASGSTATUS,
        GOEXIT1,
        PERSIST_ROUND_TRIP,
        WRITE_LOOP,
        REQUEST_WRITE,
    ];
    wanted.extend_from_slice(TLS_USERS);
    let (funcs, functions_from) = match symtab_functions(&obj, &wanted) {
        Some(f) if f.contains_key(NEWPROC1) => (f, FunctionSource::Symtab),
        _ => {
            // Position-independent executables keep the table in
            // .data.rel.ro, with run-time relocations: only their symbol
            // table is used.
            let pcln = pcln.ok_or_else(|| {
                GoError::Pclntab(
                    p(),
                    "no .gopclntab section and no symbol table (a stripped position-independent executable)"
                        .into(),
                )
            })?;
            let bytes = pcln.data().map_err(|e| GoError::Parse(p(), e))?;
            let table = Pclntab::parse(bytes).map_err(|e| match e {
                PclnError::Old(magic) => GoError::TooOld(
                    p(),
                    format!("a Go binary (function table magic {magic:#x})"),
                ),
                PclnError::Bad(m) => GoError::Pclntab(p(), m),
            })?;
            let text = |r: FuncRange| bytes_at(&obj, r.start, r.end - r.start);
            (table.functions(&wanted, &text), FunctionSource::Pclntab)
        }
    };
    let range = |name: &'static str| funcs.get(name).copied().ok_or(GoError::Missing(p(), name));
    let newproc1 = range(NEWPROC1)?;
    let goexit1 = range(GOEXIT1)?;
    let code = |r: FuncRange| -> Result<&[u8], GoError> {
        bytes_at(&obj, r.start, r.end - r.start).ok_or_else(|| {
            GoError::Code(
                p(),
                format!("function at {:#x} is not in the file", r.start),
            )
        })
    };
    let newproc1_code = code(newproc1)?;
    let newproc1_rets = ret_addresses(newproc1_code, newproc1.start)
        .map_err(|e| GoError::Code(p(), format!("{NEWPROC1}: {e}")))?;
    if newproc1_rets.is_empty() {
        return Err(GoError::Code(p(), format!("{NEWPROC1} has no RET")));
    }
    let newg_calls = match funcs.get(CASGSTATUS) {
        Some(c) => calls_to(newproc1_code, newproc1.start, c.start),
        None => Vec::new(),
    };
    let entry = |r: FuncRange| -> Result<u64, GoError> { Ok(entry_point(code(r)?, r.start)) };
    let tls_g_offset = tls_offset(&obj, data, &funcs, &code).map_err(|e| GoError::Tls(p(), e))?;
    let off = |addr: u64| {
        file_offset(&obj, addr)
            .ok_or_else(|| GoError::Code(p(), format!("address {addr:#x} is not in the file")))
    };
    let http = match (
        funcs.get(PERSIST_ROUND_TRIP),
        funcs.get(WRITE_LOOP),
        funcs.get(REQUEST_WRITE),
    ) {
        (Some(a), Some(b), Some(c)) => Some(HttpClient {
            persist_round_trip: off(entry(*a)?)?,
            write_loop: off(entry(*b)?)?,
            request_write: off(entry(*c)?)?,
        }),
        _ => None,
    };
    Ok(GoBinary {
        path: p(),
        version,
        tls_g_offset,
        newproc1: off(entry(newproc1)?)?,
        newg_calls: newg_calls.into_iter().map(off).collect::<Result<_, _>>()?,
        newproc1_rets: newproc1_rets
            .into_iter()
            .map(off)
            .collect::<Result<_, _>>()?,
        goexit1: off(entry(goexit1)?)?,
        http,
        functions_from,
    })
}

/// `go1.19.8` -> 19.
fn go_minor(v: &str) -> Option<u32> {
    let rest = v.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Bounds of the `wanted` functions from the ELF symbol table (None if it
/// has none).
fn symtab_functions(obj: &object::File<'_>, wanted: &[&str]) -> Option<HashMap<String, FuncRange>> {
    let mut out = HashMap::new();
    let mut any = false;
    for s in obj.symbols() {
        any = true;
        if s.kind() != SymbolKind::Text || s.size() == 0 {
            continue;
        }
        let Ok(name) = s.name() else { continue };
        if wanted.contains(&name) {
            out.insert(
                name.to_owned(),
                FuncRange {
                    start: s.address(),
                    end: s.address() + s.size(),
                },
            );
        }
    }
    any.then_some(out)
}

/// The file bytes at virtual address `addr`, `len` long.
fn bytes_at<'a>(obj: &object::File<'a>, addr: u64, len: u64) -> Option<&'a [u8]> {
    obj.sections().find_map(|s| {
        let off = addr.checked_sub(s.address())?;
        if off.checked_add(len)? > s.size() {
            return None;
        }
        let data = s.data().ok()?;
        let off = usize::try_from(off).ok()?;
        data.get(off..off.checked_add(usize::try_from(len).ok()?)?)
    })
}

/// File offset of virtual address `addr` (in a section with file bytes).
fn file_offset(obj: &object::File<'_>, addr: u64) -> Option<u64> {
    obj.sections().find_map(|s| {
        let (file_off, file_len) = s.file_range()?;
        let d = addr.checked_sub(s.address())?;
        (d < file_len).then_some(file_off + d)
    })
}

/// Addresses of every RET in `code` (the machine code of one function,
/// starting at `start`), decoding instruction by instruction. Go puts no
/// data in function bodies (jump tables live in read-only data), so a
/// linear decode sees every instruction; an undecodable byte is an error,
/// never skipped.
pub fn ret_addresses(code: &[u8], start: u64) -> Result<Vec<u64>, String> {
    let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut rets = Vec::new();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            return Err(format!("undecodable instruction at {:#x}", ins.ip()));
        }
        if matches!(ins.mnemonic(), Mnemonic::Ret | Mnemonic::Retf) {
            rets.push(ins.ip());
        }
    }
    Ok(rets)
}

/// Where to probe a Go function's entry so the kernel emulates the probed
/// instruction instead of single-stepping it: the conditional branch of
/// its stack check (`CMP RSP, [R14+16]; JBE`, or `LEA R12, [RSP-n]; CMP
/// R12, [R14+16]; JBE` for large frames), which comes before anything
/// writes an argument register or R14. Single-stepping costs a debug trap
/// (~15-30 us per hit on this VM, against ~1 us for an emulated branch).
/// A function without that prologue is probed at its first instruction.
pub fn entry_point(code: &[u8], start: u64) -> u64 {
    let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    for _ in 0..3 {
        if !dec.can_decode() {
            break;
        }
        dec.decode_out(&mut ins);
        match ins.mnemonic() {
            Mnemonic::Cmp => {}
            Mnemonic::Lea if matches!(ins.op0_register(), Register::R12 | Register::R13) => {}
            m if is_jcc(m) && ins.op0_kind() == OpKind::NearBranch64 => return ins.ip(),
            _ => break,
        }
    }
    start
}

fn is_jcc(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Jbe
            | Mnemonic::Jb
            | Mnemonic::Jae
            | Mnemonic::Ja
            | Mnemonic::Je
            | Mnemonic::Jne
            | Mnemonic::Jl
            | Mnemonic::Jle
            | Mnemonic::Jg
            | Mnemonic::Jge
    )
}

/// Addresses of the direct calls to `target` in `code`.
fn calls_to(code: &[u8], start: u64, target: u64) -> Vec<u64> {
    let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut out = Vec::new();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.mnemonic() == Mnemonic::Call
            && ins.op0_kind() == OpKind::NearBranch64
            && ins.near_branch64() == target
        {
            out.push(ins.ip());
        }
    }
    out
}

/// Whether `code` (starting at `start`) calls or jumps to `target`.
fn branches_to(code: &[u8], start: u64, target: u64) -> bool {
    let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            return false;
        }
        if matches!(ins.mnemonic(), Mnemonic::Call | Mnemonic::Jmp)
            && ins.op0_kind() == OpKind::NearBranch64
            && ins.near_branch64() == target
        {
            return true;
        }
    }
    false
}

/// How a function addresses the `g` slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsAccess {
    /// `FS:[disp]`: local-exec TLS, offset known from the code.
    Absolute(i64),
    /// `FS:[reg]`: initial-exec TLS (PIE), offset loaded from the GOT at
    /// run time.
    ViaRegister,
}

/// FS-relative memory operands in `code`.
fn fs_accesses(code: &[u8], start: u64) -> Result<Vec<TlsAccess>, String> {
    let mut dec = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut out = Vec::new();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            return Err(format!("undecodable instruction at {:#x}", ins.ip()));
        }
        let has_mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
        if !has_mem || ins.memory_segment() != Register::FS {
            continue;
        }
        if ins.memory_base() == Register::None && ins.memory_index() == Register::None {
            out.push(TlsAccess::Absolute(ins.memory_displacement64() as i64));
        } else {
            out.push(TlsAccess::ViaRegister);
        }
    }
    Ok(out)
}

/// The offset of the `g` slot from the FS base: from the runtime's code,
/// checked against `runtime.tlsg` and `PT_TLS` when the symbol table has
/// them (and taken from them for PIE, whose code loads it from the GOT).
fn tls_offset<'a>(
    obj: &object::File<'a>,
    data: &[u8],
    funcs: &HashMap<String, FuncRange>,
    code: &dyn Fn(FuncRange) -> Result<&'a [u8], GoError>,
) -> Result<i64, String> {
    let mut seen = Vec::new();
    for name in TLS_USERS {
        if let Some(r) = funcs.get(*name) {
            let bytes = code(*r).map_err(|e| e.to_string())?;
            seen.extend(fs_accesses(bytes, r.start)?);
        }
    }
    let from_symbols = tlsg_offset(obj, data);
    let absolute: Vec<i64> = seen
        .iter()
        .filter_map(|a| match a {
            TlsAccess::Absolute(d) => Some(*d),
            TlsAccess::ViaRegister => None,
        })
        .collect();
    let via_register = seen.contains(&TlsAccess::ViaRegister);
    match (absolute.first(), via_register, from_symbols) {
        (Some(&first), false, sym) => {
            if absolute.iter().any(|d| *d != first) {
                return Err(format!("the runtime uses several g offsets: {absolute:?}"));
            }
            if let Some(s) = sym {
                if s != first {
                    return Err(format!(
                        "the code says {first} but runtime.tlsg and PT_TLS say {s}"
                    ));
                }
            }
            if !(-(1 << 20)..0).contains(&first) {
                return Err(format!("implausible offset {first}"));
            }
            Ok(first)
        }
        (_, true, Some(s)) if absolute.is_empty() => Ok(s),
        (_, true, None) => Err(
            "position-independent executable (g loaded through the GOT) without runtime.tlsg in a symbol table \
             and with C thread-locals: build without -buildmode=pie or keep the symbol table"
                .into(),
        ),
        (_, true, Some(_)) => Err("the runtime mixes TLS access models".into()),
        (None, false, _) => Err(format!("none of {TLS_USERS:?} accesses FS")),
    }
}

/// `runtime.tlsg`'s offset from the thread pointer: on x86-64 (TLS variant
/// II) the executable's TLS block ends at the thread pointer, so a TLS
/// symbol at `v` in a `PT_TLS` segment of `memsz` bytes aligned to `align`
/// is at `v - round_up(memsz, align)` (for a segment whose address is
/// aligned, as the Go and system linkers lay it out; None otherwise).
///
/// Without the symbol (a position-independent executable linked by Go
/// itself keeps none), a `PT_TLS` of exactly 8 bytes can only be the g slot
/// (Go's own linker puts nothing else in TLS): it is at 0.
fn tlsg_offset(obj: &object::File<'_>, data: &[u8]) -> Option<i64> {
    let tlsg = obj
        .symbols()
        .find(|s| s.kind() == SymbolKind::Tls && s.name() == Ok("runtime.tlsg"))
        .map(|s| s.address());
    let hdr = elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = hdr.endian().ok()?;
    let tls = hdr
        .program_headers(endian, data)
        .ok()?
        .iter()
        .find(|ph| ph.p_type(endian) == elf::PT_TLS)?;
    let (vaddr, memsz, align) = (
        tls.p_vaddr(endian),
        tls.p_memsz(endian),
        tls.p_align(endian).max(1),
    );
    if vaddr % align != 0 {
        return None;
    }
    let block = memsz.div_ceil(align) * align;
    let tlsg = match tlsg {
        Some(v) => v,
        None if memsz == 8 => 0,
        None => return None,
    };
    Some(tlsg as i64 - block as i64)
}

/// Why a function table could not be read.
#[derive(Debug)]
enum PclnError {
    /// A format older than Go 1.18's.
    Old(u32),
    Bad(String),
}

/// Go's runtime function table (`.gopclntab`), the Go 1.18+ formats
/// (magic 0xfffffff0 for 1.18-1.19, 0xfffffff1 for 1.20 and later; same
/// header): a header, the function name table, and `nfunc + 1` pairs of
/// (entry offset from the start of text, offset of the function's `_func`
/// record), each `_func` starting with its entry offset and name offset.
pub struct Pclntab<'a> {
    data: &'a [u8],
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    pcln: usize,
}

impl<'a> Pclntab<'a> {
    fn parse(data: &'a [u8]) -> Result<Pclntab<'a>, PclnError> {
        let bad = |m: &str| PclnError::Bad(m.to_owned());
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?))
        };
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?))
        };
        let magic = u32_at(0).ok_or_else(|| bad("truncated header"))?;
        match magic {
            0xffff_fff0 | 0xffff_fff1 => {}
            0xffff_fffa | 0xffff_fffb => return Err(PclnError::Old(magic)),
            m => return Err(PclnError::Bad(format!("unknown magic {m:#x}"))),
        }
        if data.get(4..8) != Some(&[0, 0, 1, 8][..]) {
            return Err(bad(
                "not an amd64 table (pad, min instruction size, pointer size)",
            ));
        }
        let field = |i: usize| u64_at(8 + 8 * i).ok_or_else(|| bad("truncated header"));
        let as_usize = |v: u64| usize::try_from(v).map_err(|_| bad("offset out of range"));
        let nfunc = as_usize(field(0)?)?;
        let text_start = field(2)?;
        let funcnames = as_usize(field(3)?)?;
        let pcln = as_usize(field(7)?)?;
        if funcnames >= data.len() || pcln >= data.len() {
            return Err(bad("table offsets beyond the section"));
        }
        let ftab_len = nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .ok_or_else(|| bad("function count out of range"))?;
        if pcln.checked_add(ftab_len).is_none_or(|e| e > data.len()) {
            return Err(bad("function table beyond the section"));
        }
        Ok(Pclntab {
            data,
            nfunc,
            text_start,
            funcnames,
            pcln,
        })
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.data.get(o..o + 4)?.try_into().ok()?,
        ))
    }

    /// (entry offset, `_func` offset) of function `i` (`i <= nfunc`).
    fn ftab(&self, i: usize) -> Option<(u32, u32)> {
        let o = self.pcln + 8 * i;
        Some((self.u32_at(o)?, self.u32_at(o + 4)?))
    }

    /// Name of function `i`.
    fn name(&self, i: usize) -> Option<&'a str> {
        let (_, funcoff) = self.ftab(i)?;
        let f = self.pcln.checked_add(funcoff as usize)?;
        let nameoff = self.u32_at(f + 4)? as i32;
        let start = self.funcnames.checked_add(usize::try_from(nameoff).ok()?)?;
        let rest = self.data.get(start..)?;
        let end = memchr::memchr(0, rest)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// Every function: (name, [entry, next entry)). Entries that do not
    /// read back consistently (their `_func` names another entry) are
    /// skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, FuncRange)> + '_ {
        (0..self.nfunc).filter_map(move |i| {
            let (entry, funcoff) = self.ftab(i)?;
            let (next, _) = self.ftab(i + 1)?;
            let own = self.u32_at(self.pcln.checked_add(funcoff as usize)?)?;
            if own != entry || next <= entry {
                return None;
            }
            Some((
                self.name(i)?,
                FuncRange {
                    start: self.text_start + u64::from(entry),
                    end: self.text_start + u64::from(next),
                },
            ))
        })
    }

    /// The `wanted` functions. The table names a compiler-made ABI
    /// wrapper (an assembly caller's way into a Go function: it loads g
    /// into R14 and calls the function) like the function itself; of two
    /// entries with one name, the one the other calls is the function.
    fn functions(
        &self,
        wanted: &[&str],
        text: &dyn Fn(FuncRange) -> Option<&'a [u8]>,
    ) -> HashMap<String, FuncRange> {
        let mut all: HashMap<String, Vec<FuncRange>> = HashMap::new();
        for (n, r) in self.iter().filter(|(n, _)| wanted.contains(n)) {
            all.entry(n.to_owned()).or_default().push(r);
        }
        all.into_iter()
            .filter_map(|(n, v)| match v.as_slice() {
                [one] => Some((n, *one)),
                [a, b] => {
                    let calls = |from: FuncRange, to: FuncRange| {
                        text(from).is_some_and(|code| branches_to(code, from.start, to.start))
                    };
                    match (calls(*a, *b), calls(*b, *a)) {
                        (true, false) => Some((n, *b)),
                        (false, true) => Some((n, *a)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }
}

/// Read the function table of the Go executable at `path` (tests, tools).
pub fn pclntab_functions(path: &Path) -> Result<Vec<(String, FuncRange)>, GoError> {
    let p = || path.to_owned();
    let map = Mapped::open(path).map_err(|e| GoError::Io(p(), e))?;
    let obj = object::File::parse(map.bytes()).map_err(|e| GoError::Parse(p(), e))?;
    let s = obj
        .section_by_name(".gopclntab")
        .ok_or_else(|| GoError::NotGo(p()))?;
    let bytes = s.data().map_err(|e| GoError::Parse(p(), e))?;
    let t = Pclntab::parse(bytes).map_err(|e| GoError::Pclntab(p(), format!("{e:?}")))?;
    Ok(t.iter().map(|(n, r)| (n.to_owned(), r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn rets_are_decoded_not_scanned() {
        // mov eax, 0xc3c3c3c3 (C3 bytes inside an immediate); ret; int3; ret
        let code = [0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xcc, 0xc3];
        assert_eq!(ret_addresses(&code, 0x1000).unwrap(), vec![0x1005, 0x1007]);
        // An undecodable byte sequence is an error, not skipped.
        assert!(ret_addresses(&[0x0f, 0xff], 0).is_err());
    }

    #[test]
    fn entry_points_are_the_stack_check_branch() {
        // cmp rsp, [r14+0x10]; jbe +0x10; sub rsp, 0x48
        let small = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x10, 0x48, 0x83, 0xec, 0x48];
        assert_eq!(entry_point(&small, 0x1000), 0x1004);
        // lea r12, [rsp-0x230]; cmp r12, [r14+0x10]; jbe rel32
        let large = [
            0x4c, 0x8d, 0xa4, 0x24, 0xd0, 0xfd, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86,
            0x10, 0x00, 0x00, 0x00,
        ];
        assert_eq!(entry_point(&large, 0x2000), 0x200c);
        // mov rbx, rax first (writes an argument register): the entry.
        let other = [0x48, 0x89, 0xc3, 0x76, 0x10];
        assert_eq!(entry_point(&other, 0x3000), 0x3000);
    }

    #[test]
    fn fs_operands() {
        // mov r14, fs:[-8]; mov fs:[-8], rax; mov r14, fs:[r14]
        let code = [
            0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff, //
            0x64, 0x48, 0x89, 0x04, 0x25, 0xf8, 0xff, 0xff, 0xff, //
            0x64, 0x4d, 0x8b, 0x36,
        ];
        assert_eq!(
            fs_accesses(&code, 0).unwrap(),
            vec![
                TlsAccess::Absolute(-8),
                TlsAccess::Absolute(-8),
                TlsAccess::ViaRegister
            ]
        );
    }

    #[test]
    fn versions() {
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.21rc2"), Some(21));
        assert_eq!(go_minor("devel"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for len in [0, 3, 8, 16, 72, 200] {
            let mut b = vec![0xffu8; len];
            if len >= 8 {
                b[..8].copy_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
            }
            if let Ok(t) = Pclntab::parse(&b) {
                let _ = t.iter().count();
            }
        }
        assert!(analyze_bytes(Path::new("x"), b"\x7fELF garbage").is_err());
    }

    /// A Go program built here, in each way a Go service ships: plain
    /// (internally linked), stripped, cgo with C thread-locals (externally
    /// linked, another g offset), cgo stripped, and PIE.
    const PROGRAM: &str = r#"package main
// __thread long long zt_tls_a[5] = {1, 2, 3, 4, 5};
// __thread int zt_tls_b;
// static long long twice(int x) { zt_tls_b = x; return 2 * x + zt_tls_a[x % 5]; }
import "C"
import ("fmt"; "net/http")
func main() { go fmt.Println(C.twice(2)); _, _ = http.Get("http://127.0.0.1:1/") }
"#;

    fn go_available() -> bool {
        Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Build `src` as package main with `args` (CGO on iff `cgo`).
    fn build(dir: &Path, name: &str, src: &str, cgo: bool, args: &[&str]) -> PathBuf {
        let pkg = dir.join(format!("src-{name}"));
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("main.go"), src).unwrap();
        let out = dir.join(name);
        let st = Command::new("go")
            .arg("build")
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(".")
            .current_dir(&pkg)
            .env("GO111MODULE", "off")
            .env("GOCACHE", std::env::temp_dir().join("zt-go-build-cache"))
            .env("CGO_ENABLED", if cgo { "1" } else { "0" })
            .status()
            .unwrap();
        assert!(st.success(), "go build {name}");
        out
    }

    /// The symbol table's answer for `name`, from `go tool nm` (another
    /// reader than ours).
    fn nm_address(bin: &Path, name: &str) -> Option<u64> {
        let out = Command::new("go")
            .args(["tool", "nm"])
            .arg(bin)
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            let _kind = f.next()?;
            (f.next()? == name).then(|| u64::from_str_radix(addr, 16).ok())?
        })
    }

    #[test]
    fn go_binaries_every_way_they_ship() {
        if !go_available() {
            eprintln!(
                "SKIP go_binaries_every_way_they_ship: no go toolchain (apt-get install golang-go)"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("zt-goruntime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Removed at the end, also when an assertion fails (~100 MB).
        struct RemoveOnDrop(std::path::PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = RemoveOnDrop(dir.clone());
        let plain_src = PROGRAM
            .replace("import \"C\"\n", "")
            .replace("C.twice(2)", "2");
        let plain_src: String = plain_src
            .lines()
            .filter(|l| !l.starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let builds = [
            ("plain", plain_src.as_str(), false, vec![]),
            (
                "stripped",
                plain_src.as_str(),
                false,
                vec!["-ldflags", "-s -w"],
            ),
            ("cgo", PROGRAM, true, vec![]),
            ("cgostripped", PROGRAM, true, vec!["-ldflags", "-s -w"]),
            ("pie", plain_src.as_str(), true, vec!["-buildmode=pie"]),
        ];
        let mut got = HashMap::new();
        for (name, src, cgo, args) in &builds {
            let bin = build(&dir, name, src, *cgo, args);
            let g = analyze(&bin).unwrap_or_else(|e| panic!("{name}: {e}"));
            eprintln!(
                "{name}: {:?} g at FS{:+}, newproc1 at {:#x} with {} RET(s), functions from {:?}, http {}",
                g.version,
                g.tls_g_offset,
                g.newproc1,
                g.newproc1_rets.len(),
                g.functions_from,
                g.http.is_some()
            );
            assert!(g.http.is_some(), "{name}: net/http client functions");
            assert!(g.newproc1_rets.iter().all(|r| *r > g.newproc1), "{name}");
            assert!(
                !g.newg_calls.is_empty(),
                "{name}: casgstatus calls in newproc1"
            );
            got.insert(*name, (bin, g));
        }
        // Internally linked Go: -8. cgo with 52 bytes of C thread-locals
        // aligned to 16: runtime.tlsg at 40 in a 64-byte block, -24.
        assert_eq!(got["plain"].1.tls_g_offset, -8);
        assert_eq!(got["stripped"].1.tls_g_offset, -8);
        assert_eq!(got["cgo"].1.tls_g_offset, -24);
        assert_eq!(got["cgostripped"].1.tls_g_offset, -24);
        assert_eq!(got["pie"].1.tls_g_offset, -8);
        assert_eq!(got["plain"].1.functions_from, FunctionSource::Symtab);
        assert_eq!(got["stripped"].1.functions_from, FunctionSource::Pclntab);
        assert_eq!(got["cgostripped"].1.functions_from, FunctionSource::Pclntab);
        // Stripping changes nothing the probes use (same code, same layout).
        for (a, b) in [("plain", "stripped"), ("cgo", "cgostripped")] {
            let (x, y) = (&got[a].1, &got[b].1);
            assert_eq!(x.newproc1, y.newproc1, "{a}/{b}");
            assert_eq!(x.newproc1_rets, y.newproc1_rets, "{a}/{b}");
            assert_eq!(x.newg_calls, y.newg_calls, "{a}/{b}");
            assert_eq!(x.goexit1, y.goexit1, "{a}/{b}");
            assert_eq!(x.http, y.http, "{a}/{b}");
        }
        // The function table agrees with the symbol table (go tool nm) on
        // every function, in the unstripped binaries.
        assert_eq!(got["pie"].1.functions_from, FunctionSource::Symtab);
        for name in ["plain", "cgo"] {
            let bin = &got[name].0;
            let table = pclntab_functions(bin).unwrap();
            assert!(table.len() > 1000, "{name}: {} functions", table.len());
            for f in [
                NEWPROC1,
                GOEXIT1,
                REQUEST_WRITE,
                "main.main",
                "runtime.mcall",
            ] {
                let ours = table.iter().find(|(n, _)| n == f).map(|(_, r)| r.start);
                assert_eq!(ours, nm_address(bin, f), "{name}: {f}");
            }
        }
        // RETs found by decoding are the ones objdump shows, when it is here.
        if let Ok(out) = Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(format!("--disassemble={NEWPROC1}"))
            .arg(&got["plain"].0)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            let n = text
                .lines()
                .filter(|l| l.trim_end().ends_with("ret"))
                .count();
            if n > 0 {
                assert_eq!(n, got["plain"].1.newproc1_rets.len());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
