//! The process table: each traced process's resource (`service.name`, ...)
//! and the per-process state the linking rules keep.
//!
//! **Invariant:** an entry describes one process: `ProcessExit` removes it,
//! so a reused pid starts afresh, and a span that started before `since`
//! belongs to an earlier process with the same pid. A pid first seen
//! through its data, without a `ProcessInfo`, gets a resource from its
//! `comm` and an unknown runtime. An exited process's last resource is
//! remembered (bounded: `GONE_MEMORY` entries, for as long as its spans can
//! still be waiting in a trace), so its spans are emitted under the name it
//! had, not the one they started with.

use super::config::Config;
use super::link::thread::ProcThreads;
use crate::event::{MonoNanos, ProcessInfo};
use crate::naming::service_name;
use crate::semconv::attr;
use crate::span::{Attributes, Resource, SpanId};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Exited processes remembered.
const GONE_MEMORY: usize = 65_536;

pub(super) struct Proc {
    pub(super) resource: Arc<Resource>,
    /// When the process was exec'd or first seen: a span that started
    /// earlier belongs to an earlier process with the same pid.
    pub(super) since: MonoNanos,
    /// Server spans open in the process (read, response not yet written):
    /// the evidence of the thread and inferred rules.
    pub(super) open_server: Vec<SpanId>,
    /// The thread rule's per-process state.
    pub(super) threads: ProcThreads,
    /// A span was started in this process: its exit has spans and
    /// connections to end.
    pub(super) had_spans: bool,
}

/// What is kept of an exited process.
struct Gone {
    since: MonoNanos,
    until: MonoNanos,
    resource: Arc<Resource>,
}

#[derive(Default)]
pub(super) struct Procs {
    map: HashMap<u32, Proc>,
    gone: HashMap<u32, Gone>,
    /// (exit time, pid), oldest first.
    gone_order: VecDeque<(MonoNanos, u32)>,
}

impl Procs {
    #[inline]
    pub(super) fn get(&self, pid: u32) -> Option<&Proc> {
        self.map.get(&pid)
    }

    #[inline]
    pub(super) fn get_mut(&mut self, pid: u32) -> Option<&mut Proc> {
        self.map.get_mut(&pid)
    }

    /// Server spans open in `pid` (none if unknown).
    #[inline]
    pub(super) fn open_server(&self, pid: u32) -> &[SpanId] {
        self.map.get(&pid).map_or(&[][..], |p| &p.open_server[..])
    }

    /// A process's details arrived (exec, or read from /proc).
    pub(super) fn on_process(&mut self, p: &ProcessInfo, cfg: &Config) {
        let resource = Arc::new(make_resource(p, cfg));
        // An entry still here is the same process (exits remove entries):
        // an update, or a re-exec of the same pid.
        let (open_server, since, threads, had_spans) = match self.map.remove(&p.pid) {
            Some(old) => (
                old.open_server,
                old.since.min(p.ts),
                old.threads.updated(p.runtime.is_some()),
                old.had_spans,
            ),
            None => (
                Vec::new(),
                p.ts,
                ProcThreads::new(p.runtime.is_some()),
                false,
            ),
        };
        self.map.insert(
            p.pid,
            Proc {
                resource,
                since,
                open_server,
                threads,
                had_spans,
            },
        );
    }

    /// Process `pid` exited at `ts`; its resource is remembered for
    /// `keep` (the longest its spans can wait in a trace).
    pub(super) fn on_exit(&mut self, pid: u32, ts: MonoNanos, keep: u64) {
        let Some(p) = self.map.remove(&pid) else {
            return;
        };
        self.gone.insert(
            pid,
            Gone {
                since: p.since,
                until: ts,
                resource: p.resource,
            },
        );
        self.gone_order.push_back((ts, pid));
        while let Some(&(at, old)) = self.gone_order.front() {
            if at.saturating_add(keep) >= ts && self.gone_order.len() <= GONE_MEMORY {
                break;
            }
            self.gone_order.pop_front();
            // Unless the pid was reused and exited again since.
            if self.gone.get(&old).is_some_and(|g| g.until == at) {
                self.gone.remove(&old);
            }
        }
    }

    /// Whether `pid` started a span.
    pub(super) fn had_spans(&self, pid: u32) -> bool {
        self.map.get(&pid).is_some_and(|p| p.had_spans)
    }

    /// Live processes known.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Exited processes remembered.
    pub(super) fn gone_len(&self) -> usize {
        self.gone.len()
    }

    /// The resource of `pid`, made from its `comm` if its details were
    /// never read.
    /// Marks the process as having spans.
    #[inline]
    pub(super) fn resource_for(&mut self, pid: u32, comm: &str, cfg: &Config) -> Arc<Resource> {
        if let Some(p) = self.map.get_mut(&pid) {
            p.had_spans = true;
            return p.resource.clone();
        }
        let info = ProcessInfo {
            pid,
            comm: comm.to_owned(),
            ..Default::default()
        };
        let resource = Arc::new(make_resource(&info, cfg));
        self.map.insert(
            pid,
            Proc {
                resource: resource.clone(),
                since: 0,
                open_server: Vec::new(),
                threads: ProcThreads::unknown(),
                had_spans: true,
            },
        );
        resource
    }

    /// The resource a span of `pid` that started at `start` is emitted
    /// with: the latest details of the process (its environment may have
    /// been read only after the span started), also once it has exited,
    /// else `started_with`.
    #[inline]
    pub(super) fn resource_at(
        &self,
        pid: u32,
        start: MonoNanos,
        started_with: &Arc<Resource>,
    ) -> Arc<Resource> {
        if let Some(p) = self.map.get(&pid).filter(|p| p.since <= start) {
            return p.resource.clone();
        }
        self.gone
            .get(&pid)
            .filter(|g| g.since <= start && start <= g.until)
            .map_or_else(|| started_with.clone(), |g| g.resource.clone())
    }
}

fn make_resource(p: &ProcessInfo, cfg: &Config) -> Resource {
    let name = service_name(p);
    let mut attributes = Attributes::new();
    attributes.set(attr::SERVICE_NAME, name.clone());
    attributes.set(attr::PROCESS_PID, p.pid as i64);
    let exe_name = p.exe.rsplit('/').next().unwrap_or(&p.exe);
    if !exe_name.is_empty() {
        attributes.set(attr::PROCESS_EXECUTABLE_NAME, exe_name.to_owned());
        attributes.set(attr::PROCESS_EXECUTABLE_PATH, p.exe.clone());
    } else if !p.comm.is_empty() {
        attributes.set(attr::PROCESS_EXECUTABLE_NAME, p.comm.clone());
    }
    if !p.comm.is_empty() {
        attributes.set(attr::PROCESS_COMMAND, p.comm.clone());
    }
    if let Some(h) = &cfg.host_name {
        attributes.set(attr::HOST_NAME, h.clone());
    }
    if let Some(rt) = &p.runtime {
        attributes.set(attr::PROCESS_RUNTIME_NAME, rt.kind.as_str());
        if let Some(v) = &rt.version {
            attributes.set(attr::PROCESS_RUNTIME_VERSION, v.clone());
        }
    }
    Resource {
        service_name: name,
        attributes,
    }
}
