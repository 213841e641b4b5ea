//! Rule `thread`: a client call made on thread T is a child of T's single
//! open server span.
//!
//! **Assumes** an OS thread serves one request at a time, from reading it
//! to writing its response, and everything it does in between is that
//! request's work (thread-per-request servers).
//!
//! **Invariant:** the rule links only when that assumption is not known to
//! be broken: never in a runtime that multiplexes tasks over threads (Go,
//! tokio, Node.js), nor in a process whose runtime is unknown, nor on a
//! thread that ever had two requests open at once (marked multiplexed for
//! the process's life), nor for a call made inside an execution context
//! (left to the `context` rule). Threads are keyed by (pid, tid, thread
//! start time), so a reused tid never inherits state; a thread's entry
//! lives while it has a request open.
//!
//! This module also keeps the in-flight evidence (open server spans per
//! thread and per process) that the `inferred` rule reads.

use super::LinkReason;
use crate::assembler::procs::Procs;
use crate::event::ThreadKey;
use crate::span::SpanId;
use hashbrown::{HashMap, HashSet};

/// Whether the thread rule may link a process's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadRule {
    /// A runtime with OS threads as the unit of work (one request at a time
    /// per thread): Python, Java platform threads, C, ...
    Applies,
    /// The runtime multiplexes tasks over threads (Go, tokio, Node.js).
    Multiplexed,
    /// The process's details were not read (it was gone before /proc was):
    /// its runtime is unknown, so the thread proves nothing.
    Unknown,
}

/// The rule's per-process state (kept in the process table).
pub(in crate::assembler) struct ProcThreads {
    rule: ThreadRule,
    /// Threads that once had two requests open at the same time: event
    /// loops (or pipelining). They stay so for life: a loop that serves one
    /// request now may run another request's (or no request's) callback
    /// next, so its single open request proves nothing.
    multiplexed: HashSet<ThreadKey>,
}

impl ProcThreads {
    /// A process whose details were read; `multiplexing_runtime`: a runtime
    /// was recognised (they all multiplex tasks over threads).
    pub(in crate::assembler) fn new(multiplexing_runtime: bool) -> Self {
        ProcThreads {
            rule: if multiplexing_runtime {
                ThreadRule::Multiplexed
            } else {
                ThreadRule::Applies
            },
            multiplexed: HashSet::new(),
        }
    }

    /// A process known only from its data.
    pub(in crate::assembler) fn unknown() -> Self {
        ProcThreads {
            rule: ThreadRule::Unknown,
            multiplexed: HashSet::new(),
        }
    }

    /// New details of the same process: the runtime decides again; the
    /// threads seen multiplexed stay so.
    pub(in crate::assembler) fn updated(self, multiplexing_runtime: bool) -> Self {
        ProcThreads {
            multiplexed: self.multiplexed,
            ..ProcThreads::new(multiplexing_runtime)
        }
    }
}

#[derive(Default)]
struct ThreadState {
    open: Vec<SpanId>,
    ambiguous: bool,
}

/// Open server spans per thread.
#[derive(Default)]
pub(super) struct Threads {
    map: HashMap<ThreadKey, ThreadState>,
}

impl Threads {
    /// Server span `id` of `pid` read its request on `thread`.
    #[inline]
    pub(super) fn server_opened(
        &mut self,
        id: SpanId,
        pid: u32,
        thread: ThreadKey,
        procs: &mut Procs,
    ) {
        let ts = self.map.entry(thread).or_default();
        let overlaps = !ts.open.is_empty();
        if overlaps {
            ts.ambiguous = true;
        }
        ts.open.push(id);
        if let Some(p) = procs.get_mut(pid) {
            p.open_server.push(id);
            if overlaps {
                p.threads.multiplexed.insert(thread);
            }
        }
    }

    /// Server span `id`, opened on `thread`, ended.
    #[inline]
    pub(super) fn server_ended(&mut self, id: SpanId, thread: ThreadKey, procs: &mut Procs) {
        if let Some(ts) = self.map.get_mut(&thread) {
            ts.open.retain(|x| *x != id);
            if ts.open.is_empty() {
                self.map.remove(&thread);
            }
        }
        if let Some(p) = procs.get_mut(thread.pid) {
            p.open_server.retain(|x| *x != id);
        }
    }

    /// The parent of a call made by `pid` on `thread` in execution context
    /// `ctx`, or why there is no proof of one.
    #[inline]
    pub(super) fn verdict(
        &self,
        pid: u32,
        thread: ThreadKey,
        ctx: u64,
        procs: &Procs,
    ) -> Result<SpanId, LinkReason> {
        let (rule, thread_multiplexed) = match procs.get(pid) {
            Some(p) => (p.threads.rule, p.threads.multiplexed.contains(&thread)),
            None => (ThreadRule::Unknown, false),
        };
        let on_thread = self
            .map
            .get(&thread)
            .map(|ts| (ts.ambiguous, ts.open.as_slice()));
        match (rule, on_thread) {
            // Go, tokio, Node.js: the thread that made the call may have
            // read another request's bytes just before.
            (ThreadRule::Multiplexed, _) => Err(LinkReason::UnlinkedMultiplexedRuntime),
            (ThreadRule::Unknown, _) => Err(LinkReason::UnlinkedRuntimeUnknown),
            (_, Some((true, _))) => Err(LinkReason::UnlinkedThreadAmbiguous),
            _ if thread_multiplexed => Err(LinkReason::UnlinkedThreadAmbiguous),
            // Inside an execution context (an asyncio task, a grpcio
            // handler) the context decides: a loop thread with one request
            // open may be running another task.
            (_, Some((_, [_]))) if ctx != 0 => Err(LinkReason::UnlinkedContextUnproven),
            (_, Some((_, [only]))) => Ok(*only),
            // The process is serving requests on other threads (a pool, an
            // event loop, a runtime such as grpcio's C-core): no proof which.
            _ if !procs.open_server(pid).is_empty() => {
                Err(LinkReason::UnlinkedRequestServedOnOtherThread)
            }
            _ => Err(LinkReason::RootNoOpenRequest),
        }
    }
}
