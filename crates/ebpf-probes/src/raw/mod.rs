//! Ring-buffer records as the C programs write them (src/bpf/zt_events.h),
//! and their decoding into [`span_core::Event`]s.
//!
//! Records are decoded in ring order by a [`Decoder`], which keeps what the
//! kernel sends only once: a thread's comm and start time, a connection's
//! addresses. Decoding is pure: `zt-trace replay` decodes recorded records
//! with the same code, without root. Event logs of older formats (3 and 4,
//! one self-contained record per event) are read by [`legacy`].

use bytes::Bytes;
use span_core::{
    ConnClose, ConnEnd, ConnEndKind, ConnEvent, DataEvent, Direction, Event, ProcessInfo, Role,
    SockTuple, Source, TaskEvent, TlsBind,
};

pub mod legacy;
use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

pub const EV_DATA: u32 = 1;
pub const EV_CONN_OPEN: u32 = 2;
pub const EV_CONN_CLOSE: u32 = 3;
pub const EV_PROC_EXEC: u32 = 4;
pub const EV_PROC_EXIT: u32 = 5;
pub const EV_TLS_BIND: u32 = 6;
/// Prefix of a data record: its thread's comm and start time.
pub const EV_THREAD: u32 = 7;
/// Prefix of a data record: its connection's addresses.
pub const EV_CONN_INFO: u32 = 8;
pub const EV_THREAD_EXIT: u32 = 9;
pub const EV_CONN_GONE: u32 = 10;
/// A goroutine was created (go.bpf.h).
pub const EV_TASK_START: u32 = 11;
/// A goroutine ended.
pub const EV_TASK_END: u32 = 12;
/// The peer closed (FIN) or reset (RST) a traced connection.
pub const EV_CONN_END: u32 = 13;
/// The agent itself connected: its connection's addresses (never traced).
pub const EV_OWN_CONN: u32 = 14;

/// Upper bound of the per-call capture (`ZT_MAX_CAPTURE`).
pub const MAX_CAPTURE: u32 = 8192;

/// Indices of the kernel's per-CPU drop counters (`enum zt_drop`).
pub const DROP_REASONS: &[&str] = &[
    "ringbuf_full_data",
    "ringbuf_full_control",
    "inflight_table_full",
    "conn_table_full",
    "iovec_truncated",
    "user_read_failed",
    "emit_tail_call_failed",
    "tls_unbound",
    "scratch_busy",
    "filter_match_table_full",
    "go_goroutine_untracked",
];
/// Number of counter slots in the `drops` map.
pub const DROP_SLOTS: u32 = 11;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTuple {
    pub family: u16,
    pub lport: u16,
    pub rport: u16,
    pub pad: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDataEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    pub conn_id: u64,
    pub enter_ns: u64,
    pub exit_ns: u64,
    pub bytes: u64,
    pub seq: u32,
    pub captured: u32,
    pub direction: u8,
    pub source: u8,
    pub role: u8,
    pub call: u8,
    pub pad: u32,
    pub ssl: u64,
    pub ctx: u64,
    pub task: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTaskEvent {
    pub kind: u32,
    pub pid: u32,
    pub task: u64,
    pub parent: u64,
    pub ts: u64,
}

/// Prefix of a data record: the thread's details (`zt_thread_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawThreadInfo {
    pub kind: u32,
    pub tid: u32,
    pub start_ns: u64,
    pub comm: [u8; 16],
}

/// Prefix of a data record: the connection's addresses (`zt_conn_info`);
/// a [`RawThreadInfo`] always follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawConnInfo {
    pub kind: u32,
    pub pad: u32,
    pub conn_id: u64,
    pub tuple: RawTuple,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawThreadExit {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub pad: u32,
}

/// `zt_conn_end`: how the peer ended a connection, how far its bytes go
/// and how far the process had read them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawConnEnd {
    pub kind: u32,
    /// 0: FIN, 1: RST.
    pub how: u8,
    pub pad: [u8; 3],
    pub conn_id: u64,
    pub ts: u64,
    pub peer_end_seq: u32,
    pub read_seq: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawConnGone {
    pub kind: u32,
    pub pad: u32,
    pub conn_id: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawConnEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    pub conn_id: u64,
    pub ts: u64,
    pub role: u8,
    pub pad: [u8; 7],
    pub tuple: RawTuple,
    pub ssl: u64,
}

pub const PATH_LEN: usize = 256;
pub const ARGS_LEN: usize = 512;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawProcEvent {
    pub kind: u32,
    pub pid: u32,
    pub ppid: u32,
    pub args_len: u32,
    pub ts: u64,
    pub comm: [u8; 16],
    pub filename: [u8; PATH_LEN],
    pub args: [u8; ARGS_LEN],
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record too short: {len} bytes, need {need} for kind {kind}")]
    Short { kind: u32, len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("bad field {field}: {value}")]
    BadField { field: &'static str, value: u64 },
    /// A data record longer or shorter than its header and the bytes it
    /// says it captured (the kernel writes exactly those).
    #[error("data record of {len} bytes, but its header and captured bytes make {want}")]
    Length { len: usize, want: usize },
    /// A data record of a thread whose details were never received (or
    /// were forgotten): its comm and start time are unknown.
    #[error("data of thread {pid}/{tid}, whose details are unknown")]
    UnknownThread { pid: u32, tid: u32 },
    /// A data record of a connection whose addresses were never received
    /// (or were forgotten).
    #[error("data of connection {0}, whose addresses are unknown")]
    UnknownConnection(u64),
}

pub(crate) fn read<T: Copy>(buf: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: buf.len(),
            need,
        });
    }
    // SAFETY: the length was checked, T is a plain-old-data #[repr(C)]
    // struct of integers and byte arrays (every bit pattern is valid), and
    // read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Kind of a raw record (its first u32), if it has one.
pub fn record_kind(buf: &[u8]) -> Option<u32> {
    buf.get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Connection addresses kept at most (the kernel's connection table holds
/// 65,536; connections that end without a close call and without reaching
/// TCP_CLOSE while traced are evicted, least recently used first).
const MAX_CONNS: usize = 1 << 18;
/// Threads kept at most per process (exits normally remove them).
const MAX_THREADS_PER_PROCESS: usize = 1 << 16;

#[derive(Clone, Debug)]
struct ThreadInfo {
    start_ns: u64,
    comm: Arc<str>,
}

/// Counters of the decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Connection addresses evicted to stay within bounds.
    pub conns_evicted: u64,
    /// Threads forgotten to stay within bounds.
    pub threads_evicted: u64,
}

/// Decodes ring-buffer records in the order the kernel wrote them. It keeps
/// the details the kernel sends once (see zt_events.h): each thread's comm
/// and start time until the thread exits, each connection's addresses until
/// it is closed or reaches TCP_CLOSE. Memory is bounded.
#[derive(Default)]
pub struct Decoder {
    threads: HashMap<u32, HashMap<u32, ThreadInfo>>,
    /// conn_id -> (addresses, last use)
    conns: HashMap<u64, (SockTuple, u64)>,
    uses: u64,
    stats: DecoderStats,
    /// The last [`EV_OWN_CONN`] decoded, until taken.
    own_conn: Option<(SockTuple, u64)>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// The agent's own connection announced by the record just decoded
    /// (its addresses as the agent sees them, and when), if it was one.
    pub fn take_own_conn(&mut self) -> Option<(SockTuple, u64)> {
        self.own_conn.take()
    }

    /// Decode one record. `Ok(None)`: a record that only updates what the
    /// decoder keeps (a thread or connection that ended), or announces one
    /// of the agent's own connections ([`Decoder::take_own_conn`]).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<Event>, DecodeError> {
        let kind = record_kind(buf).ok_or(DecodeError::Short {
            kind: 0,
            len: buf.len(),
            need: 4,
        })?;
        match kind {
            EV_CONN_INFO => {
                let c: RawConnInfo = read(buf, kind)?;
                let rest = &buf[std::mem::size_of::<RawConnInfo>()..];
                if record_kind(rest) != Some(EV_THREAD) {
                    return Err(DecodeError::BadField {
                        field: "conn_info_next",
                        value: record_kind(rest).unwrap_or(0) as u64,
                    });
                }
                let tuple = tuple(&c.tuple)?;
                // Both prefixes are checked before anything is kept.
                let (thread, data) = split_thread(rest)?;
                let pid = data_pid(data)?;
                self.keep_conn(c.conn_id, tuple);
                self.keep_thread(pid, &thread);
                self.data(data).map(Some)
            }
            EV_THREAD => {
                let (thread, data) = split_thread(buf)?;
                let pid = data_pid(data)?;
                self.keep_thread(pid, &thread);
                self.data(data).map(Some)
            }
            EV_DATA => self.data(buf).map(Some),
            EV_THREAD_EXIT => {
                let r: RawThreadExit = read(buf, kind)?;
                if let Some(t) = self.threads.get_mut(&r.pid) {
                    t.remove(&r.tid);
                    if t.is_empty() {
                        self.threads.remove(&r.pid);
                    }
                }
                Ok(None)
            }
            EV_CONN_GONE => {
                let r: RawConnGone = read(buf, kind)?;
                self.conns.remove(&r.conn_id);
                Ok(None)
            }
            EV_CONN_END => {
                let r: RawConnEnd = read(buf, kind)?;
                let how = match r.how {
                    0 => ConnEndKind::PeerClosed,
                    1 => ConnEndKind::PeerReset,
                    v => {
                        return Err(DecodeError::BadField {
                            field: "how",
                            value: v as u64,
                        })
                    }
                };
                Ok(Some(Event::ConnEnd(ConnEnd {
                    conn_id: r.conn_id,
                    ts: r.ts,
                    how,
                    peer_end_seq: r.peer_end_seq,
                    read_seq: r.read_seq,
                })))
            }
            EV_OWN_CONN => {
                let r: RawConnEvent = read(buf, kind)?;
                self.own_conn = Some((tuple(&r.tuple)?, r.ts));
                Ok(None)
            }
            EV_CONN_OPEN | EV_CONN_CLOSE | EV_TLS_BIND => {
                let r: RawConnEvent = read(buf, kind)?;
                if kind == EV_CONN_CLOSE {
                    self.conns.remove(&r.conn_id);
                    return Ok(Some(Event::ConnClose(ConnClose {
                        pid: r.pid,
                        fd: r.fd,
                        conn_id: r.conn_id,
                        ts: r.ts,
                    })));
                }
                let t = tuple(&r.tuple)?;
                if r.conn_id != 0 && r.tuple.family != 0 {
                    self.keep_conn(r.conn_id, t);
                }
                if kind == EV_TLS_BIND {
                    Ok(Some(Event::TlsBind(TlsBind {
                        pid: r.pid,
                        ssl: r.ssl,
                        conn_id: r.conn_id,
                        role: role(r.role),
                        tuple: t,
                        ts: r.ts,
                    })))
                } else {
                    Ok(Some(Event::ConnOpen(ConnEvent {
                        pid: r.pid,
                        tid: r.tid,
                        fd: r.fd,
                        conn_id: r.conn_id,
                        role: role(r.role),
                        tuple: t,
                        ts: r.ts,
                    })))
                }
            }
            EV_PROC_EXEC => {
                let r: RawProcEvent = read(buf, kind)?;
                let n = (r.args_len as usize).min(ARGS_LEN);
                let args = r.args[..n]
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                Ok(Some(Event::Process(ProcessInfo {
                    pid: r.pid,
                    ppid: r.ppid,
                    ts: r.ts,
                    comm: cstr(&r.comm),
                    exe: cstr(&r.filename),
                    args,
                    service_name: None,
                    resource_attributes: Vec::new(),
                    cgroup: None,
                    net_ns: None,
                    runtime: None,
                })))
            }
            EV_TASK_START | EV_TASK_END => {
                let r: RawTaskEvent = read(buf, kind)?;
                let t = TaskEvent {
                    pid: r.pid,
                    task: r.task,
                    parent: r.parent,
                    ts: r.ts,
                };
                Ok(Some(if kind == EV_TASK_START {
                    Event::TaskStart(t)
                } else {
                    Event::TaskEnd(t)
                }))
            }
            EV_PROC_EXIT => {
                let r: RawProcEvent = read(buf, kind)?;
                self.threads.remove(&r.pid);
                Ok(Some(Event::ProcessExit {
                    pid: r.pid,
                    ts: r.ts,
                }))
            }
            k => Err(DecodeError::UnknownKind(k)),
        }
    }

    fn keep_thread(&mut self, pid: u32, t: &RawThreadInfo) {
        let threads = self.threads.entry(pid).or_default();
        if threads.len() >= MAX_THREADS_PER_PROCESS && !threads.contains_key(&t.tid) {
            // Exits were lost: start over for this process (its threads
            // announce themselves again only when their comm changes, so
            // their data is counted undecodable rather than misattributed).
            self.stats.threads_evicted += threads.len() as u64;
            threads.clear();
        }
        threads.insert(
            t.tid,
            ThreadInfo {
                start_ns: t.start_ns,
                comm: cstr_shared(&t.comm),
            },
        );
    }

    fn keep_conn(&mut self, conn_id: u64, t: SockTuple) {
        self.uses += 1;
        if self.conns.len() >= MAX_CONNS && !self.conns.contains_key(&conn_id) {
            // Least recently used quarter out.
            let mut last: Vec<u64> = self.conns.values().map(|(_, u)| *u).collect();
            let cut = MAX_CONNS / 4;
            last.select_nth_unstable(cut);
            let threshold = last[cut];
            let before = self.conns.len();
            self.conns.retain(|_, (_, u)| *u > threshold);
            self.stats.conns_evicted += (before - self.conns.len()) as u64;
        }
        self.conns.insert(conn_id, (t, self.uses));
    }

    fn data(&mut self, buf: &[u8]) -> Result<Event, DecodeError> {
        let kind = EV_DATA;
        if record_kind(buf) != Some(EV_DATA) {
            return Err(DecodeError::BadField {
                field: "data_kind",
                value: record_kind(buf).unwrap_or(0) as u64,
            });
        }
        let r: RawDataEvent = read(buf, kind)?;
        let payload = data_payload(buf, std::mem::size_of::<RawDataEvent>(), r.captured)?;
        let (direction, source) = (direction(r.direction)?, source(r.source)?);
        let thread = self.threads.get(&r.pid).and_then(|t| t.get(&r.tid)).ok_or(
            DecodeError::UnknownThread {
                pid: r.pid,
                tid: r.tid,
            },
        )?;
        let tuple = if r.conn_id == 0 {
            // TLS data whose socket was not known yet: bound later by TlsBind.
            UNSPECIFIED
        } else {
            self.uses += 1;
            let (t, last) = self
                .conns
                .get_mut(&r.conn_id)
                .ok_or(DecodeError::UnknownConnection(r.conn_id))?;
            *last = self.uses;
            *t
        };
        Ok(Event::Data(DataEvent {
            pid: r.pid,
            tid: r.tid,
            thread_start_ns: thread.start_ns,
            comm: thread.comm.clone(),
            fd: r.fd,
            conn_id: r.conn_id,
            role: role(r.role),
            tuple,
            direction,
            source,
            enter_ns: r.enter_ns,
            exit_ns: r.exit_ns,
            bytes: r.bytes,
            seq: r.seq,
            payload,
            ssl: r.ssl,
            exec_ctx: r.ctx,
            task: r.task,
        }))
    }
}

/// The payload of a data record whose header is `hdr` bytes long and says
/// `captured` bytes follow: at most [`MAX_CAPTURE`], and exactly those
/// (the kernel writes nothing after them).
pub(crate) fn data_payload(buf: &[u8], hdr: usize, captured: u32) -> Result<Bytes, DecodeError> {
    if captured > MAX_CAPTURE {
        return Err(DecodeError::BadField {
            field: "captured",
            value: captured as u64,
        });
    }
    let want = hdr + captured as usize;
    if buf.len() != want {
        return Err(DecodeError::Length {
            len: buf.len(),
            want,
        });
    }
    Ok(Bytes::copy_from_slice(&buf[hdr..]))
}

pub(crate) fn direction(v: u8) -> Result<Direction, DecodeError> {
    match v {
        0 => Ok(Direction::Egress),
        1 => Ok(Direction::Ingress),
        v => Err(DecodeError::BadField {
            field: "direction",
            value: v as u64,
        }),
    }
}

pub(crate) fn source(v: u8) -> Result<Source, DecodeError> {
    match v {
        0 => Ok(Source::Syscall),
        1 => Ok(Source::Tls),
        2 => Ok(Source::Sendfile),
        v => Err(DecodeError::BadField {
            field: "source",
            value: v as u64,
        }),
    }
}

const UNSPECIFIED: SockTuple = SockTuple {
    local: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
};

/// A thread prefix and what follows it (a data record).
fn split_thread(buf: &[u8]) -> Result<(RawThreadInfo, &[u8]), DecodeError> {
    let t: RawThreadInfo = read(buf, EV_THREAD)?;
    Ok((t, &buf[std::mem::size_of::<RawThreadInfo>()..]))
}

/// The pid of a data record (checked to be one).
fn data_pid(data: &[u8]) -> Result<u32, DecodeError> {
    let r: RawDataEvent = read(data, EV_DATA)?;
    if r.kind != EV_DATA {
        return Err(DecodeError::BadField {
            field: "data_kind",
            value: r.kind as u64,
        });
    }
    Ok(r.pid)
}

pub(crate) fn role(r: u8) -> Role {
    match r {
        1 => Role::Client,
        2 => Role::Server,
        _ => Role::Unknown,
    }
}

pub(crate) fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// [`cstr`] as a shared string, in one allocation.
pub(crate) fn cstr_shared(b: &[u8]) -> Arc<str> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    Arc::from(&*String::from_utf8_lossy(&b[..end]))
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener accepting an IPv4 peer)
/// become plain IPv4, so both ends of a connection describe it alike.
pub(crate) fn addr(family: u16, raw: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        10 => {
            let v6 = Ipv6Addr::from(*raw);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        f => {
            return Err(DecodeError::BadField {
                field: "family",
                value: f as u64,
            })
        }
    };
    Ok(SocketAddr::new(ip, port))
}

pub(crate) fn tuple(t: &RawTuple) -> Result<SockTuple, DecodeError> {
    if t.family == 0 {
        // TLS binding whose socket was not known.
        return Ok(UNSPECIFIED);
    }
    Ok(SockTuple {
        local: addr(t.family, &t.laddr, t.lport)?,
        remote: addr(t.family, &t.raddr, t.rport)?,
    })
}

/// Encode a data record exactly as the kernel does (for tests and tools):
/// the optional connection and thread prefixes, the header, the payload.
/// (The kernel sends a connection prefix only together with a thread one.)
pub fn encode_data(
    conn: Option<&RawConnInfo>,
    thread: Option<&RawThreadInfo>,
    r: &RawDataEvent,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(c) = conn {
        let mut c = *c;
        c.kind = EV_CONN_INFO;
        out.extend_from_slice(as_bytes(&c));
    }
    if let Some(t) = thread {
        let mut t = *t;
        t.kind = EV_THREAD;
        out.extend_from_slice(as_bytes(&t));
    }
    let mut r = *r;
    r.kind = EV_DATA;
    r.captured = payload.len() as u32;
    out.extend_from_slice(as_bytes(&r));
    out.extend_from_slice(payload);
    out
}

/// Encode any other record (`#[repr(C)]` mirror) as the kernel does.
pub fn encode<T: Copy>(r: &T) -> Vec<u8> {
    as_bytes(r).to_vec()
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a #[repr(C)] POD struct without padding bytes (asserted
    // by the layout tests), so all its bytes are initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The Rust mirrors must match the C layout in zt_events.h.
    #[test]
    fn layouts_match_c() {
        assert_eq!(size_of::<RawTuple>(), 40);
        assert_eq!(size_of::<RawDataEvent>(), 88);
        assert_eq!(offset_of!(RawDataEvent, task), 80);
        assert_eq!(size_of::<RawTaskEvent>(), 32);
        assert_eq!(offset_of!(RawDataEvent, conn_id), 16);
        assert_eq!(offset_of!(RawDataEvent, seq), 48);
        assert_eq!(offset_of!(RawDataEvent, direction), 56);
        assert_eq!(offset_of!(RawDataEvent, ssl), 64);
        assert_eq!(offset_of!(RawDataEvent, ctx), 72);
        assert_eq!(size_of::<RawThreadInfo>(), 32);
        assert_eq!(offset_of!(RawThreadInfo, comm), 16);
        assert_eq!(size_of::<RawConnInfo>(), 56);
        assert_eq!(offset_of!(RawConnInfo, tuple), 16);
        assert_eq!(size_of::<RawThreadExit>(), 16);
        assert_eq!(size_of::<RawConnGone>(), 16);
        assert_eq!(size_of::<RawConnEnd>(), 32);
        assert_eq!(offset_of!(RawConnEnd, conn_id), 8);
        assert_eq!(offset_of!(RawConnEnd, peer_end_seq), 24);
        assert_eq!(size_of::<RawConnEvent>(), 88);
        assert_eq!(offset_of!(RawConnEvent, tuple), 40);
        assert_eq!(offset_of!(RawConnEvent, ssl), 80);
        assert_eq!(size_of::<RawProcEvent>(), 24 + 16 + PATH_LEN + ARGS_LEN);
        assert_eq!(offset_of!(RawProcEvent, filename), 40);
    }

    fn v4_in_v6() -> RawTuple {
        let mut t = RawTuple {
            family: 10,
            lport: 8080,
            rport: 40000,
            ..Default::default()
        };
        // ::ffff:127.0.0.1 on both sides
        t.laddr[10] = 0xff;
        t.laddr[11] = 0xff;
        t.laddr[12..].copy_from_slice(&[127, 0, 0, 1]);
        t.raddr = t.laddr;
        t
    }

    fn thread(tid: u32, start_ns: u64, name: &[u8]) -> RawThreadInfo {
        let mut comm = [0u8; 16];
        comm[..name.len()].copy_from_slice(name);
        RawThreadInfo {
            tid,
            start_ns,
            comm,
            ..Default::default()
        }
    }

    fn conn(conn_id: u64) -> RawConnInfo {
        RawConnInfo {
            conn_id,
            tuple: v4_in_v6(),
            ..Default::default()
        }
    }

    fn sample() -> RawDataEvent {
        RawDataEvent {
            pid: 10,
            tid: 11,
            fd: 5,
            conn_id: 7,
            enter_ns: 1000,
            exit_ns: 2000,
            bytes: 18,
            seq: 0xfffffff0,
            direction: 1,
            role: 2,
            ..Default::default()
        }
    }

    fn data(ev: Option<Event>) -> DataEvent {
        match ev {
            Some(Event::Data(d)) => d,
            other => panic!("not data: {other:?}"),
        }
    }

    #[test]
    fn decodes_task_records_and_carries_the_task_of_data() {
        let mut dec = Decoder::new();
        let start = RawTaskEvent {
            kind: EV_TASK_START,
            pid: 10,
            task: 42,
            parent: 7,
            ts: 5,
        };
        match dec.decode(&encode(&start)).unwrap() {
            Some(Event::TaskStart(t)) => {
                assert_eq!((t.pid, t.task, t.parent, t.ts), (10, 42, 7, 5))
            }
            other => panic!("{other:?}"),
        }
        let end = RawTaskEvent {
            kind: EV_TASK_END,
            ..start
        };
        assert!(matches!(
            dec.decode(&encode(&end)).unwrap(),
            Some(Event::TaskEnd(_))
        ));
        let mut r = sample();
        r.task = 42;
        let d = data(
            dec.decode(&encode_data(
                Some(&conn(7)),
                Some(&thread(11, 99, b"go")),
                &r,
                b"x",
            ))
            .unwrap(),
        );
        assert_eq!(d.task, 42);
        assert!(dec.decode(&encode(&start)[..20]).is_err());
    }

    #[test]
    fn decodes_peer_ends() {
        let mut dec = Decoder::new();
        let mut r = RawConnEnd {
            kind: EV_CONN_END,
            how: 1,
            conn_id: 9,
            ts: 77,
            peer_end_seq: 1000,
            read_seq: 900,
            ..Default::default()
        };
        match dec.decode(&encode(&r)).unwrap() {
            Some(Event::ConnEnd(e)) => {
                assert_eq!(e.how, ConnEndKind::PeerReset);
                assert_eq!(
                    (e.conn_id, e.ts, e.peer_end_seq, e.read_seq),
                    (9, 77, 1000, 900)
                );
            }
            other => panic!("{other:?}"),
        }
        r.how = 0;
        assert!(matches!(
            dec.decode(&encode(&r)).unwrap(),
            Some(Event::ConnEnd(ConnEnd {
                how: ConnEndKind::PeerClosed,
                ..
            }))
        ));
        r.how = 7;
        assert!(dec.decode(&encode(&r)).is_err());
        assert!(dec.decode(&encode(&r)[..12]).is_err());
    }

    #[test]
    fn decodes_data_and_unmaps_v4_in_v6() {
        let mut dec = Decoder::new();
        let bytes = encode_data(
            Some(&conn(7)),
            Some(&thread(11, 99, b"python")),
            &sample(),
            b"GET / HTTP/1.1\r\n\r\n",
        );
        let d = data(dec.decode(&bytes).unwrap());
        assert_eq!(d.pid, 10);
        assert_eq!(&*d.comm, "python");
        assert_eq!(d.thread_start_ns, 99);
        assert_eq!(d.direction, Direction::Ingress);
        assert_eq!(d.role, Role::Server);
        assert_eq!(d.tuple.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(d.tuple.remote, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(&d.payload[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d.seq, 0xfffffff0);

        // The next call of the same thread on the same connection carries
        // neither prefix and decodes to the same details.
        let again = data(
            dec.decode(&encode_data(None, None, &sample(), b"x"))
                .unwrap(),
        );
        assert_eq!(
            (&*again.comm, again.thread_start_ns, again.tuple),
            ("python", 99, d.tuple)
        );
    }

    /// Details are forgotten exactly when the kernel says so, and data whose
    /// details are unknown is an error, never decoded with made-up ones.
    #[test]
    fn forgets_threads_and_connections_when_told() {
        let mut dec = Decoder::new();
        let plain = encode_data(None, None, &sample(), b"x");
        assert_eq!(
            dec.decode(&plain),
            Err(DecodeError::UnknownThread { pid: 10, tid: 11 })
        );
        // Thread known, connection not.
        dec.decode(&encode_data(
            None,
            Some(&thread(11, 99, b"a")),
            &sample(),
            b"x",
        ))
        .unwrap_err();
        assert_eq!(dec.decode(&plain), Err(DecodeError::UnknownConnection(7)));

        dec.decode(&encode_data(
            Some(&conn(7)),
            Some(&thread(11, 99, b"a")),
            &sample(),
            b"x",
        ))
        .unwrap();
        assert!(dec.decode(&plain).is_ok());

        // A renamed thread (prctl) sends its details again.
        let d = data(
            dec.decode(&encode_data(
                None,
                Some(&thread(11, 99, b"b")),
                &sample(),
                b"x",
            ))
            .unwrap(),
        );
        assert_eq!(&*d.comm, "b");

        // The socket reached TCP_CLOSE.
        let gone = encode(&RawConnGone {
            kind: EV_CONN_GONE,
            conn_id: 7,
            ..Default::default()
        });
        assert_eq!(dec.decode(&gone), Ok(None));
        assert_eq!(dec.decode(&plain), Err(DecodeError::UnknownConnection(7)));

        // The thread exited.
        dec.decode(&encode_data(
            Some(&conn(7)),
            Some(&thread(11, 99, b"a")),
            &sample(),
            b"x",
        ))
        .unwrap();
        let exit = encode(&RawThreadExit {
            kind: EV_THREAD_EXIT,
            pid: 10,
            tid: 11,
            pad: 0,
        });
        assert_eq!(dec.decode(&exit), Ok(None));
        assert_eq!(
            dec.decode(&plain),
            Err(DecodeError::UnknownThread { pid: 10, tid: 11 })
        );

        // A close record forgets the connection; an open record teaches it.
        let mut open = RawConnEvent {
            kind: EV_CONN_OPEN,
            pid: 10,
            tid: 11,
            conn_id: 7,
            role: 2,
            tuple: v4_in_v6(),
            ..Default::default()
        };
        assert_eq!(dec.decode(&gone), Ok(None));
        dec.decode(&encode_data(
            None,
            Some(&thread(11, 99, b"a")),
            &sample(),
            b"x",
        ))
        .unwrap_err();
        assert!(matches!(
            dec.decode(&encode(&open)),
            Ok(Some(Event::ConnOpen(_)))
        ));
        assert!(dec.decode(&plain).is_ok());
        open.kind = EV_CONN_CLOSE;
        assert!(matches!(
            dec.decode(&encode(&open)),
            Ok(Some(Event::ConnClose(c))) if c.conn_id == 7
        ));
        assert_eq!(dec.decode(&plain), Err(DecodeError::UnknownConnection(7)));
    }

    /// TLS plaintext not yet bound to a socket has no connection and no
    /// addresses (bound later by a TlsBind record).
    #[test]
    fn unbound_tls_data_has_unspecified_addresses() {
        let mut dec = Decoder::new();
        let mut r = sample();
        r.conn_id = 0;
        r.source = 1;
        let d = data(
            dec.decode(&encode_data(None, Some(&thread(11, 1, b"node")), &r, b"x"))
                .unwrap(),
        );
        assert_eq!(d.tuple, UNSPECIFIED);
        assert_eq!(d.source, Source::Tls);
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let mut dec = Decoder::new();
        let bytes = encode_data(
            Some(&conn(7)),
            Some(&thread(11, 99, b"a")),
            &sample(),
            b"hello",
        );
        assert!(matches!(
            dec.decode(&bytes[..100]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            dec.decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Length { .. })
        ));
        // Bytes after the captured ones: the kernel never writes them, so
        // the record is corrupt (found by the decode fuzz target: the
        // payload must be the record's end).
        let mut long = bytes.clone();
        long.push(b'!');
        let want = std::mem::size_of::<RawDataEvent>() + b"hello".len();
        assert_eq!(
            dec.decode(&long),
            Err(DecodeError::Length {
                len: want + 1,
                want
            })
        );
        // A connection prefix must be followed by a thread prefix.
        let mut bad = encode(&conn(7));
        bad[0] = EV_CONN_INFO as u8;
        bad.extend_from_slice(&encode_data(None, None, &sample(), b"x"));
        assert!(matches!(
            dec.decode(&bad),
            Err(DecodeError::BadField {
                field: "conn_info_next",
                ..
            })
        ));
        assert_eq!(
            dec.decode(&[99, 0, 0, 0]),
            Err(DecodeError::UnknownKind(99))
        );
        assert!(dec.decode(&[]).is_err());
    }

    #[test]
    fn connection_table_is_bounded() {
        let mut dec = Decoder::new();
        for id in 1..=(MAX_CONNS as u64 + 10) {
            dec.keep_conn(id, UNSPECIFIED);
        }
        assert!(dec.conns.len() <= MAX_CONNS);
        assert!(dec.stats().conns_evicted >= (MAX_CONNS / 4) as u64);
        // The most recent ones are kept.
        assert!(dec.conns.contains_key(&(MAX_CONNS as u64 + 10)));
    }

    /// The input that stopped the decode fuzz target (artifacts/decode/
    /// crash-ad8d0adb...): records as the target builds them (kind byte,
    /// length byte, bytes); any data event decoded from them must end the
    /// record, in every decoder.
    #[test]
    fn fuzz_crash_trailing_bytes_after_the_payload() {
        let data: &[u8] = &[
            1, 165, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
            255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 127, 255, 1, 0, 255, 255, 0, 0, 0, 0,
            255, 255, 255, 2, 0, 0, 0, 255, 255, 255, 165, 0, 165, 165, 165, 0, 0, 123, 123, 123,
            123, 123, 123, 123, 123, 123, 123, 123, 123, 123, 123, 123, 123, 123, 11, 46, 123, 4,
        ];
        let mut decoder = Decoder::new();
        let mut rest = data;
        let mut records = 0;
        while let [kind, len, tail @ ..] = rest {
            let n = (*len as usize).min(tail.len());
            let mut rec = u32::from(*kind).to_ne_bytes().to_vec();
            rec.extend_from_slice(&tail[..n]);
            rest = &tail[n..];
            records += 1;
            let mut events = vec![decoder.decode(&rec).ok().flatten()];
            for version in [3, 4] {
                events.push(legacy::decode(&rec, version).ok());
            }
            for ev in events.into_iter().flatten() {
                if let Event::Data(d) = ev {
                    assert!(rec.ends_with(&d.payload[..]), "{rec:?}");
                }
            }
        }
        assert!(records > 0);
    }
}
