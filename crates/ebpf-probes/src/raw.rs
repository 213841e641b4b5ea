//! Ring-buffer records as the C programs write them (src/bpf/zt_events.h),
//! and their decoding into [`span_core::Event`]s.
//!
//! Decoding is pure: `zt-trace replay` decodes recorded records with the same
//! code, without root.

use bytes::Bytes;
use span_core::{
    ConnClose, ConnEvent, DataEvent, Direction, Event, ProcessInfo, Role, SockTuple, Source,
    TaskEvent, TlsBind,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const EV_DATA: u32 = 1;
pub const EV_CONN_OPEN: u32 = 2;
pub const EV_CONN_CLOSE: u32 = 3;
pub const EV_PROC_EXEC: u32 = 4;
pub const EV_PROC_EXIT: u32 = 5;
pub const EV_TLS_BIND: u32 = 6;
pub const EV_TASK_START: u32 = 7;
pub const EV_TASK_END: u32 = 8;

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
    "go_goroutine_untracked",
];
/// Number of counter slots in the `drops` map.
pub const DROP_SLOTS: u32 = 9;

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
    pub thread_start_ns: u64,
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
    pub tuple: RawTuple,
    pub comm: [u8; 16],
    pub ssl: u64,
    pub ctx: u64,
    pub task: u64,
}

/// Size of a data record header in event logs of format version 3 (before
/// `task`).
pub const DATA_HEADER_V3: usize = 144;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTaskEvent {
    pub kind: u32,
    pub pid: u32,
    pub task: u64,
    pub parent: u64,
    pub ts: u64,
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
    pub comm: [u8; 16],
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
}

fn read<T: Copy>(buf: &[u8], kind: u32) -> Result<T, DecodeError> {
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

/// Decode one ring-buffer record.
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    decode_layout(buf, std::mem::size_of::<RawDataEvent>())
}

/// Decode a record of an event log of format `version` (3: data headers
/// without `task`; 4: the current layout).
pub fn decode_version(buf: &[u8], version: u32) -> Result<Event, DecodeError> {
    if version == 3 {
        decode_layout(buf, DATA_HEADER_V3)
    } else {
        decode(buf)
    }
}

fn decode_layout(buf: &[u8], data_header: usize) -> Result<Event, DecodeError> {
    let kind = record_kind(buf).ok_or(DecodeError::Short {
        kind: 0,
        len: buf.len(),
        need: 4,
    })?;
    match kind {
        EV_DATA => {
            let r: RawDataEvent = if data_header == std::mem::size_of::<RawDataEvent>() {
                read(buf, kind)?
            } else {
                // An older, shorter header: the fields it has, then zeros.
                if buf.len() < data_header {
                    return Err(DecodeError::Short {
                        kind,
                        len: buf.len(),
                        need: data_header,
                    });
                }
                let mut full = vec![0u8; std::mem::size_of::<RawDataEvent>()];
                full[..data_header].copy_from_slice(&buf[..data_header]);
                read(&full, kind)?
            };
            let hdr = data_header;
            let captured = r.captured as usize;
            if r.captured > MAX_CAPTURE || buf.len() < hdr + captured {
                return Err(DecodeError::BadField {
                    field: "captured",
                    value: r.captured as u64,
                });
            }
            let direction = match r.direction {
                0 => Direction::Egress,
                1 => Direction::Ingress,
                v => {
                    return Err(DecodeError::BadField {
                        field: "direction",
                        value: v as u64,
                    })
                }
            };
            let source = match r.source {
                0 => Source::Syscall,
                1 => Source::Tls,
                2 => Source::Sendfile,
                v => {
                    return Err(DecodeError::BadField {
                        field: "source",
                        value: v as u64,
                    })
                }
            };
            Ok(Event::Data(DataEvent {
                pid: r.pid,
                tid: r.tid,
                thread_start_ns: r.thread_start_ns,
                comm: cstr(&r.comm),
                fd: r.fd,
                conn_id: r.conn_id,
                role: role(r.role),
                tuple: tuple(&r.tuple)?,
                direction,
                source,
                enter_ns: r.enter_ns,
                exit_ns: r.exit_ns,
                bytes: r.bytes,
                seq: r.seq,
                payload: Bytes::copy_from_slice(&buf[hdr..hdr + captured]),
                ssl: r.ssl,
                exec_ctx: r.ctx,
                task: r.task,
            }))
        }
        EV_CONN_OPEN | EV_CONN_CLOSE | EV_TLS_BIND => {
            let r: RawConnEvent = read(buf, kind)?;
            if kind == EV_TLS_BIND {
                Ok(Event::TlsBind(TlsBind {
                    pid: r.pid,
                    ssl: r.ssl,
                    conn_id: r.conn_id,
                    role: role(r.role),
                    tuple: tuple(&r.tuple)?,
                    ts: r.ts,
                }))
            } else if kind == EV_CONN_OPEN {
                Ok(Event::ConnOpen(ConnEvent {
                    pid: r.pid,
                    tid: r.tid,
                    fd: r.fd,
                    conn_id: r.conn_id,
                    role: role(r.role),
                    tuple: tuple(&r.tuple)?,
                    ts: r.ts,
                }))
            } else {
                Ok(Event::ConnClose(ConnClose {
                    pid: r.pid,
                    fd: r.fd,
                    conn_id: r.conn_id,
                    ts: r.ts,
                }))
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
            Ok(Event::Process(ProcessInfo {
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
            }))
        }
        EV_TASK_START | EV_TASK_END => {
            let r: RawTaskEvent = read(buf, kind)?;
            let t = TaskEvent {
                pid: r.pid,
                task: r.task,
                parent: r.parent,
                ts: r.ts,
            };
            Ok(if kind == EV_TASK_START {
                Event::TaskStart(t)
            } else {
                Event::TaskEnd(t)
            })
        }
        EV_PROC_EXIT => {
            let r: RawProcEvent = read(buf, kind)?;
            Ok(Event::ProcessExit {
                pid: r.pid,
                ts: r.ts,
            })
        }
        k => Err(DecodeError::UnknownKind(k)),
    }
}

fn role(r: u8) -> Role {
    match r {
        1 => Role::Client,
        2 => Role::Server,
        _ => Role::Unknown,
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener accepting an IPv4 peer)
/// become plain IPv4, so both ends of a connection describe it alike.
fn addr(family: u16, raw: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
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

fn tuple(t: &RawTuple) -> Result<SockTuple, DecodeError> {
    if t.family == 0 {
        // TLS data whose socket was not known yet: bound later by TlsBind.
        let none = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        return Ok(SockTuple {
            local: none,
            remote: none,
        });
    }
    Ok(SockTuple {
        local: addr(t.family, &t.laddr, t.lport)?,
        remote: addr(t.family, &t.raddr, t.rport)?,
    })
}

/// Encode a data record exactly as the kernel does (for tests and tools).
pub fn encode_data(r: &RawDataEvent, payload: &[u8]) -> Vec<u8> {
    let mut r = *r;
    r.kind = EV_DATA;
    r.captured = payload.len() as u32;
    let mut out = as_bytes(&r).to_vec();
    out.extend_from_slice(payload);
    out
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
        assert_eq!(size_of::<RawDataEvent>(), 152);
        assert_eq!(offset_of!(RawDataEvent, ctx), 136);
        assert_eq!(offset_of!(RawDataEvent, task), DATA_HEADER_V3);
        assert_eq!(size_of::<RawTaskEvent>(), 32);
        assert_eq!(offset_of!(RawDataEvent, ssl), 128);
        assert_eq!(offset_of!(RawDataEvent, seq), 56);
        assert_eq!(offset_of!(RawDataEvent, direction), 64);
        assert_eq!(offset_of!(RawDataEvent, tuple), 72);
        assert_eq!(offset_of!(RawDataEvent, comm), 112);
        assert_eq!(size_of::<RawConnEvent>(), 104);
        assert_eq!(offset_of!(RawConnEvent, tuple), 40);
        assert_eq!(size_of::<RawProcEvent>(), 24 + 16 + PATH_LEN + ARGS_LEN);
        assert_eq!(offset_of!(RawProcEvent, filename), 40);
    }

    fn sample() -> RawDataEvent {
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
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"python");
        RawDataEvent {
            pid: 10,
            tid: 11,
            fd: 5,
            thread_start_ns: 99,
            conn_id: 7,
            enter_ns: 1000,
            exit_ns: 2000,
            bytes: 18,
            seq: 0xfffffff0,
            direction: 1,
            role: 2,
            tuple: t,
            comm,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_data_and_unmaps_v4_in_v6() {
        let bytes = encode_data(&sample(), b"GET / HTTP/1.1\r\n\r\n");
        let Event::Data(d) = decode(&bytes).unwrap() else {
            panic!("not data")
        };
        assert_eq!(d.pid, 10);
        assert_eq!(d.comm, "python");
        assert_eq!(d.direction, Direction::Ingress);
        assert_eq!(d.role, Role::Server);
        assert_eq!(d.tuple.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(d.tuple.remote, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(&d.payload[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d.seq, 0xfffffff0);
    }

    #[test]
    fn decodes_task_records_and_version_3_data() {
        let t = RawTaskEvent {
            kind: EV_TASK_START,
            pid: 9,
            task: 1 << 12,
            parent: 5,
            ts: 77,
        };
        assert_eq!(
            decode(as_bytes(&t)).unwrap(),
            Event::TaskStart(TaskEvent {
                pid: 9,
                task: 1 << 12,
                parent: 5,
                ts: 77
            })
        );
        assert!(decode(&as_bytes(&t)[..31]).is_err());
        // A version-3 log's data record: the header without `task`.
        let mut r = sample();
        r.task = 0;
        let full = encode_data(&r, b"GET / HTTP/1.1\r\n\r\n");
        let mut v3 = full[..DATA_HEADER_V3].to_vec();
        v3.extend_from_slice(&full[size_of::<RawDataEvent>()..]);
        let Event::Data(d) = decode_version(&v3, 3).unwrap() else {
            panic!("not data")
        };
        assert_eq!(&d.payload[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(d.task, 0);
        assert!(decode_version(&v3[..100], 3).is_err());
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let bytes = encode_data(&sample(), b"hello");
        assert!(matches!(
            decode(&bytes[..100]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::BadField {
                field: "captured",
                ..
            })
        ));
        assert_eq!(decode(&[9, 0, 0, 0]), Err(DecodeError::UnknownKind(9)));
        assert!(decode(&[]).is_err());
    }
}
