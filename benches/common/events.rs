//! Synthetic capture events shared by the criterion benches.

use bytes::Bytes;
use zt_trace::span_core::{DataEvent, Direction, Event, Role, SockTuple, Source};

/// A syscall's data event (2 µs long) carrying `p`.
#[allow(clippy::too_many_arguments)]
pub fn syscall_data(
    pid: u32,
    tid: u32,
    comm: &str,
    conn: u64,
    role: Role,
    tuple: SockTuple,
    direction: Direction,
    enter: u64,
    seq: u32,
    p: &'static [u8],
) -> Event {
    Event::Data(DataEvent {
        pid,
        tid,
        thread_start_ns: 7,
        comm: comm.into(),
        fd: 5,
        conn_id: conn,
        role,
        tuple,
        direction,
        source: Source::Syscall,
        enter_ns: enter,
        exit_ns: enter + 2_000,
        bytes: p.len() as u64,
        seq,
        payload: Bytes::from_static(p),
        ssl: 0,
        exec_ctx: 0,
        task: 0,
    })
}
