//! Event logs of formats 3 and 4: every record self-contained (a data
//! record carries its thread's comm and start time and its connection's
//! addresses), goroutine records numbered 7 and 8, format 3 without the
//! `task` field. Read so that logs recorded by earlier versions (and the
//! golden logs of the tests) still replay; the kernel no longer writes them.

use super::ARGS_LEN;
use super::{
    cstr, cstr_shared, data_payload, direction, read, record_kind, role, source, tuple, DecodeError,
};
use super::{RawProcEvent, RawTuple};
use span_core::{ConnClose, ConnEvent, DataEvent, Event, ProcessInfo, TaskEvent, TlsBind};

const EV_DATA: u32 = 1;
const EV_CONN_OPEN: u32 = 2;
const EV_CONN_CLOSE: u32 = 3;
const EV_PROC_EXEC: u32 = 4;
const EV_PROC_EXIT: u32 = 5;
const EV_TLS_BIND: u32 = 6;
const EV_TASK_START: u32 = 7;
const EV_TASK_END: u32 = 8;

/// A data record header of formats 3 and 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataV4 {
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
    /// Format 4 only.
    pub task: u64,
}

/// Size of a data record header in format 3 (before `task`).
pub const DATA_HEADER_V3: usize = 144;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnV4 {
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

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TaskV4 {
    kind: u32,
    pid: u32,
    task: u64,
    parent: u64,
    ts: u64,
}

/// Decode one record of an event log of format `version` (3 or 4).
pub fn decode(buf: &[u8], version: u32) -> Result<Event, DecodeError> {
    let data_header = if version == 3 {
        DATA_HEADER_V3
    } else {
        std::mem::size_of::<DataV4>()
    };
    let kind = record_kind(buf).ok_or(DecodeError::Short {
        kind: 0,
        len: buf.len(),
        need: 4,
    })?;
    match kind {
        EV_DATA => {
            if buf.len() < data_header {
                return Err(DecodeError::Short {
                    kind,
                    len: buf.len(),
                    need: data_header,
                });
            }
            // A shorter format-3 header: the fields it has, then zeros.
            let mut full = [0u8; std::mem::size_of::<DataV4>()];
            full[..data_header].copy_from_slice(&buf[..data_header]);
            let r: DataV4 = read(&full, kind)?;
            let payload = data_payload(buf, data_header, r.captured)?;
            let (direction, source) = (direction(r.direction)?, source(r.source)?);
            Ok(Event::Data(DataEvent {
                pid: r.pid,
                tid: r.tid,
                thread_start_ns: r.thread_start_ns,
                comm: cstr_shared(&r.comm),
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
                payload,
                ssl: r.ssl,
                exec_ctx: r.ctx,
                task: r.task,
            }))
        }
        EV_CONN_OPEN | EV_CONN_CLOSE | EV_TLS_BIND => {
            let r: ConnV4 = read(buf, kind)?;
            Ok(match kind {
                EV_TLS_BIND => Event::TlsBind(TlsBind {
                    pid: r.pid,
                    ssl: r.ssl,
                    conn_id: r.conn_id,
                    role: role(r.role),
                    tuple: tuple(&r.tuple)?,
                    ts: r.ts,
                }),
                EV_CONN_OPEN => Event::ConnOpen(ConnEvent {
                    pid: r.pid,
                    tid: r.tid,
                    fd: r.fd,
                    conn_id: r.conn_id,
                    role: role(r.role),
                    tuple: tuple(&r.tuple)?,
                    ts: r.ts,
                }),
                _ => Event::ConnClose(ConnClose {
                    pid: r.pid,
                    fd: r.fd,
                    conn_id: r.conn_id,
                    ts: r.ts,
                }),
            })
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
        EV_PROC_EXIT => {
            let r: RawProcEvent = read(buf, kind)?;
            Ok(Event::ProcessExit {
                pid: r.pid,
                ts: r.ts,
            })
        }
        EV_TASK_START | EV_TASK_END if version >= 4 => {
            let r: TaskV4 = read(buf, kind)?;
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
        k => Err(DecodeError::UnknownKind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: test structs are #[repr(C)] POD without padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn layouts_of_formats_3_and_4() {
        assert_eq!(size_of::<DataV4>(), 152);
        assert_eq!(offset_of!(DataV4, task), DATA_HEADER_V3);
        assert_eq!(offset_of!(DataV4, comm), 112);
        assert_eq!(size_of::<ConnV4>(), 104);
        assert_eq!(size_of::<TaskV4>(), 32);
    }

    #[test]
    fn reads_data_of_both_formats_and_refuses_garbage() {
        let mut r = DataV4 {
            kind: EV_DATA,
            pid: 3,
            tid: 4,
            direction: 1,
            captured: 2,
            task: 9,
            ..Default::default()
        };
        r.comm[..2].copy_from_slice(b"py");
        r.tuple.family = 2;
        let mut v4 = bytes(&r);
        v4.extend_from_slice(b"hi");
        match decode(&v4, 4).unwrap() {
            Event::Data(d) => {
                assert_eq!((d.pid, &*d.comm, d.task), (3, "py", 9));
                assert_eq!(&d.payload[..], b"hi");
            }
            e => panic!("{e:?}"),
        }
        let mut v3 = bytes(&r)[..DATA_HEADER_V3].to_vec();
        v3.extend_from_slice(b"hi");
        match decode(&v3, 3).unwrap() {
            Event::Data(d) => assert_eq!((d.task, &d.payload[..]), (0, &b"hi"[..])),
            e => panic!("{e:?}"),
        }
        assert!(decode(&v4[..10], 4).is_err());
        // A byte after the captured ones: corrupt (the payload is the end).
        let mut long = v4.clone();
        long.push(0);
        assert_eq!(
            decode(&long, 4).unwrap_err(),
            DecodeError::Length {
                len: v4.len() + 1,
                want: v4.len()
            }
        );
        assert!(decode(&[99, 0, 0, 0], 4).is_err());
        // Goroutine records did not exist in format 3.
        let t = TaskV4 {
            kind: EV_TASK_START,
            ..Default::default()
        };
        assert!(matches!(decode(&bytes(&t), 4), Ok(Event::TaskStart(_))));
        assert!(decode(&bytes(&t), 3).is_err());
    }
}
