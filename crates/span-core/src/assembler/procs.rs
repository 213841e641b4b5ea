//! The process table: each traced process's resource (`service.name`, ...),
//! what else is known about it (network namespace, proxy), and the
//! per-process state the linking rules keep.
//!
//! **Invariant:** an entry describes one process: `ProcessExit` removes it,
//! so a reused pid starts afresh, and a span that started before `since`
//! belongs to an earlier process with the same pid (it keeps the resource
//! and facts it started with). A pid first seen through its data, without
//! a `ProcessInfo`, gets a resource from its `comm` and an unknown runtime.
//! The service name follows the identity chain of [`crate::naming`]; a
//! `port=` rule can only match once the process was seen accepting a
//! connection on that port, so the name may change then (spans emitted
//! afterwards carry the new one). An exited process's last resource and
//! facts are remembered (bounded: `GONE_MEMORY` entries, for as long as its
//! spans can still be waiting in a trace), so its spans are emitted under
//! the name it had, not the one they started with.

use super::config::Config;
use super::link::thread::ProcThreads;
use crate::event::{MonoNanos, ProcessInfo};
use crate::naming::{parse_cgroup, service_identity, CgroupIdentity};
use crate::proxy::{proxy_by_name, Detection, ProxyInfo, ProxyKind};
use crate::semconv::attr;
use crate::span::{Attributes, Resource, SpanId};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// Local ports remembered per process (for `port=` naming rules).
const MAX_PORTS: usize = 64;

/// Inbound HTTP requests a process must have served before its behaviour
/// can make it a proxy.
pub(super) const BEHAVIOUR_MIN_SERVED: u32 = 10;

/// What the linker and the mesh need to know about a span's process, fixed
/// when the span starts (the process may be gone when it is emitted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ProcFacts {
    pub(super) net_ns: Option<u64>,
    pub(super) proxy: Option<ProxyInfo>,
}

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
    pub(super) facts: ProcFacts,
    /// What names the process (kept for `port=` rules, which match late).
    info: Arc<ProcessInfo>,
    cgroup: CgroupIdentity,
    /// Local ports it accepted connections on (at most `MAX_PORTS`).
    ports: Vec<u16>,
    /// Inbound HTTP requests it finished, and how many of them it was seen
    /// sending on (an outbound request with the same head while it was
    /// open): the behaviour that makes a process a proxy.
    pub(super) served: u32,
    pub(super) copied: u32,
    /// A span was started in this process: its exit has spans and
    /// connections to end.
    pub(super) had_spans: bool,
}

impl Proc {
    /// Count one inbound request finished; `copied`: an outbound request
    /// with its head was seen while it was open. A process that copied at
    /// least 9 in 10 of at least [`BEHAVIOUR_MIN_SERVED`] requests is a
    /// proxy by behaviour.
    pub(super) fn count_served(&mut self, copied: bool) {
        self.served = self.served.saturating_add(1);
        if copied {
            self.copied = self.copied.saturating_add(1);
        }
        if self.facts.proxy.is_none()
            && self.served >= BEHAVIOUR_MIN_SERVED
            && u64::from(self.copied) * 10 >= u64::from(self.served) * 9
        {
            self.facts.proxy = Some(ProxyInfo {
                kind: ProxyKind::Forwarder,
                detected_by: Detection::Behaviour,
            });
        }
    }
}

/// What is kept of an exited process.
struct Gone {
    since: MonoNanos,
    until: MonoNanos,
    resource: Arc<Resource>,
    facts: ProcFacts,
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

    /// Whether `pid` is a proxy (by name or behaviour).
    pub(super) fn is_proxy(&self, pid: u32) -> bool {
        self.map.get(&pid).is_some_and(|p| p.facts.proxy.is_some())
    }

    /// A process's details arrived (exec, or read from /proc).
    pub(super) fn on_process(&mut self, p: &ProcessInfo, cfg: &Config) {
        let info = Arc::new(p.clone());
        let cgroup = p.cgroup.as_deref().map(parse_cgroup).unwrap_or_default();
        let named_proxy = proxy_by_name(p).map(|kind| ProxyInfo {
            kind,
            detected_by: Detection::Name,
        });
        // A proxy (nginx, Envoy, HAProxy...) is an event loop: its threads
        // serve many requests at once, so the thread proves nothing.
        let multiplexed = p.runtime.is_some() || named_proxy.is_some();
        // An entry still here is the same process (exits remove entries):
        // an update, or a re-exec of the same pid.
        let mut proc_ = match self.map.remove(&p.pid) {
            Some(old) => Proc {
                since: old.since.min(p.ts),
                threads: old.threads.updated(multiplexed),
                facts: ProcFacts {
                    net_ns: p.net_ns.or(old.facts.net_ns),
                    // Behaviour seen stays; a name decides anew.
                    proxy: named_proxy.or(old.facts.proxy),
                },
                ..old
            },
            None => Proc {
                resource: Arc::new(Resource {
                    service_name: String::new(),
                    attributes: Attributes::new(),
                }),
                since: p.ts,
                open_server: Vec::new(),
                threads: ProcThreads::new(multiplexed),
                facts: ProcFacts {
                    net_ns: p.net_ns,
                    proxy: named_proxy,
                },
                info: info.clone(),
                cgroup: CgroupIdentity::default(),
                ports: Vec::new(),
                served: 0,
                copied: 0,
                had_spans: false,
            },
        };
        proc_.info = info;
        proc_.cgroup = cgroup;
        proc_.resource = Arc::new(make_resource(&proc_, cfg));
        self.map.insert(p.pid, proc_);
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
                facts: p.facts,
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

    /// `pid` accepted a connection on local `port`: a `port=` naming rule
    /// may match now.
    pub(super) fn served_port(&mut self, pid: u32, port: u16, cfg: &Config) {
        if !cfg.service_rules.iter().any(|r| r.needs_ports()) {
            return;
        }
        let Some(p) = self.map.get_mut(&pid) else {
            return;
        };
        if p.ports.contains(&port) || p.ports.len() >= MAX_PORTS {
            return;
        }
        p.ports.push(port);
        let resource = make_resource(p, cfg);
        if resource.service_name != p.resource.service_name {
            p.resource = Arc::new(resource);
        }
    }

    /// The resource and facts of `pid`, made from its `comm` if its details
    /// were never read. Marks the process as having spans.
    #[inline]
    pub(super) fn resource_for(
        &mut self,
        pid: u32,
        comm: &str,
        cfg: &Config,
    ) -> (Arc<Resource>, ProcFacts) {
        if let Some(p) = self.map.get_mut(&pid) {
            p.had_spans = true;
            return (p.resource.clone(), p.facts);
        }
        let info = ProcessInfo {
            pid,
            comm: comm.to_owned(),
            ..Default::default()
        };
        let facts = ProcFacts {
            net_ns: None,
            proxy: proxy_by_name(&info).map(|kind| ProxyInfo {
                kind,
                detected_by: Detection::Name,
            }),
        };
        let mut proc_ = Proc {
            resource: Arc::new(Resource {
                service_name: String::new(),
                attributes: Attributes::new(),
            }),
            since: 0,
            open_server: Vec::new(),
            threads: ProcThreads::unknown(),
            facts,
            info: Arc::new(info),
            cgroup: CgroupIdentity::default(),
            ports: Vec::new(),
            served: 0,
            copied: 0,
            had_spans: true,
        };
        proc_.resource = Arc::new(make_resource(&proc_, cfg));
        let resource = proc_.resource.clone();
        self.map.insert(pid, proc_);
        (resource, facts)
    }

    /// The resource and facts a span of `pid` that started at `start` is
    /// emitted with: the latest of the process (its environment may have
    /// been read, or its behaviour seen, only after the span started), else
    /// what it started with; also once it has exited.
    #[inline]
    pub(super) fn resource_at(
        &self,
        pid: u32,
        start: MonoNanos,
        started_with: &Arc<Resource>,
        facts: ProcFacts,
    ) -> (Arc<Resource>, ProcFacts) {
        if let Some(p) = self.map.get(&pid).filter(|p| p.since <= start) {
            return (p.resource.clone(), p.facts);
        }
        self.gone
            .get(&pid)
            .filter(|g| g.since <= start && start <= g.until)
            .map_or_else(
                || (started_with.clone(), facts),
                |g| (g.resource.clone(), g.facts),
            )
    }
}

fn make_resource(proc_: &Proc, cfg: &Config) -> Resource {
    let p = &*proc_.info;
    let (name, _) = service_identity(p, &proc_.cgroup, &cfg.service_rules, &proc_.ports);
    let mut attributes = Attributes::new();
    attributes.set(attr::SERVICE_NAME, name.clone());
    for (k, v) in &p.resource_attributes {
        // service.name is the identity chain's; the rest is the user's.
        if k != attr::SERVICE_NAME {
            attributes.set(k.clone(), v.clone());
        }
    }
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
    // The command line may hold secrets (passwords, tokens in arguments):
    // only on request.
    if cfg.keep_command_line && !p.args.is_empty() {
        attributes.set(attr::PROCESS_COMMAND_LINE, p.args.join(" "));
    }
    if let Some(id) = &proc_.cgroup.container_id {
        attributes.set(attr::CONTAINER_ID, id.clone());
    }
    if let Some(uid) = &proc_.cgroup.pod_uid {
        attributes.set(attr::K8S_POD_UID, uid.clone());
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
