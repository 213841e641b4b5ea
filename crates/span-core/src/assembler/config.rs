//! Tuning of the assembler.
//!
//! **Invariant:** every wait the assembler makes is bounded by one of these
//! durations and every table by one of these sizes; nothing else grows
//! without a limit.

use crate::event::MonoNanos;

pub(crate) const MS: MonoNanos = 1_000_000;

/// Tuning of the assembler. Every wait is bounded in time and every table in size.
#[derive(Clone, Debug)]
pub struct Config {
    /// Added to monotonic timestamps to get Unix-epoch nanoseconds.
    pub wall_clock_offset_ns: i64,
    /// How long events are held to be put back in timestamp order.
    pub reorder_window_ns: u64,
    /// Most events held in the reorder window.
    pub reorder_capacity: usize,
    /// How long a server span waits for the client span of the same request
    /// (seen on this host) before it may be emitted as a root.
    pub peer_wait_ns: u64,
    /// How long a finished trace waits for late spans before it is emitted.
    pub trace_linger_ns: u64,
    /// A request without a response is closed (marked incomplete) after this.
    pub request_timeout_ns: u64,
    /// Connections idle this long (and with nothing pending) are forgotten.
    pub conn_idle_ns: u64,
    pub max_connections: usize,
    pub max_open_spans: usize,
    /// Data events with payload tried for protocol detection before a
    /// connection is ignored.
    pub detect_attempts: u32,
    /// Keep SQL literals in `db.query.text` (default: replaced with `?`).
    pub raw_sql: bool,
    /// Which URL query values are replaced with `REDACTED` in `url.query`
    /// and `url.full` (default: the sensitive names of
    /// [`crate::semconv::url::DEFAULT_REDACTED_QUERY_PARAMS`]); userinfo in
    /// URLs always is.
    pub query_redaction: crate::semconv::url::QueryRedaction,
    /// How long a client call made inside an execution context (a CPython
    /// `contextvars.Context`) waits for a response written in the same
    /// context, which names the request it was made for.
    pub context_wait_ns: u64,
    /// How long a client call made by a task (a Go goroutine) waits for the
    /// response head of the request its task ancestry was serving (the
    /// `task` rule).
    pub task_wait_ns: u64,
    /// Turn inferred links (weak evidence) into parent edges. Off by default:
    /// a wrong parent is worse than a missing one.
    pub promote_inferred_links: bool,
    /// Seed of the trace/span id generator.
    pub id_seed: u64,
    /// `host.name` resource attribute.
    pub host_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            wall_clock_offset_ns: 0,
            reorder_window_ns: 20 * MS,
            reorder_capacity: 500_000,
            peer_wait_ns: 300 * MS,
            trace_linger_ns: 200 * MS,
            request_timeout_ns: 30_000 * MS,
            conn_idle_ns: 300_000 * MS,
            max_connections: 100_000,
            max_open_spans: 200_000,
            detect_attempts: 4,
            raw_sql: false,
            query_redaction: Default::default(),
            context_wait_ns: 2_000 * MS,
            task_wait_ns: 2_000 * MS,
            promote_inferred_links: false,
            id_seed: 0x5eed,
            host_name: None,
        }
    }
}
