//! Trace sampling: which finished traces go on to the sinks and exporters.
//!
//! **Head** (a pure function of the trace, so every agent agrees): with
//! parent-based sampling on, a root that adopted an inbound `traceparent`
//! follows that header's sampled flag (the instrumented caller already
//! decided, as OpenTelemetry's `ParentBased` sampler does); otherwise the
//! trace id decides ([`TraceIdRatio`]), at the ratio of the root's service
//! if it has one of its own, else the default ratio.
//!
//! **Tail**: a trace the head decision dropped is still kept, whole, when a
//! rule matches it: any span with error status, a root slower than a
//! bound, or an attribute of any span matching a glob. The stage only ever
//! passes whole traces: the assembler emits a trace once all of it has
//! ended and its linger has passed, and a part of the same trace emitted
//! later (a late call linked to an emitted span) follows the decision made
//! for the first part (a bounded memory of recent decisions).
//!
//! A dropped trace can be held for a bounded time (`decision_wait_ns`) so
//! that a late part that matches a rule brings the earlier parts back with
//! it. Held traces are bounded (`max_held_traces`): past it the oldest are
//! decided early (dropped) and counted as evictions.
//!
//! Every kept part's root span gets `zt.sampling.reason`: `head`, `parent`,
//! `error`, `slow` or `match:<key>` (a late part kept because an earlier part
//! was says the earlier part's reason).
//!
//! **Invariant:** no I/O, no clock (time comes in as `now`), and sampling
//! applies to output only: [`TracerBuilder`](crate::TracerBuilder) runs
//! every aggregating stage before it.

use super::glob::{Glob, GlobError};
use super::ratio::{BadRatio, RatioAlgorithm, TraceIdRatio};
use crate::stage::Stage;
use crate::stats::{defs, StatsWriter};
use span_core::semconv::attr;
use span_core::{AttrValue, MonoNanos, Span, StatusCode, Trace, TraceId};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;

/// Recent decisions remembered, so late parts of a trace follow it.
pub const DECISION_MEMORY: usize = 65_536;

/// `KEY=GLOB`: keep a trace when an attribute of any of its spans (or of a
/// span's resource, `service.name` included) matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepMatch {
    pub key: String,
    pub glob: Glob,
}

impl std::str::FromStr for KeepMatch {
    type Err = SamplingError;
    fn from_str(s: &str) -> Result<KeepMatch, SamplingError> {
        let (key, pattern) = s
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| SamplingError::KeepMatchSyntax(s.to_owned()))?;
        Ok(KeepMatch {
            key: key.trim().to_owned(),
            glob: Glob::new(pattern)?,
        })
    }
}

impl fmt::Display for KeepMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.glob)
    }
}

impl KeepMatch {
    fn matches(&self, span: &Span) -> bool {
        if self.key == attr::SERVICE_NAME {
            return self.glob.matches(&span.resource.service_name);
        }
        let value = span
            .attributes
            .get(&self.key)
            .or_else(|| span.resource.attributes.get(&self.key));
        match value {
            Some(AttrValue::Str(s)) => self.glob.matches(s),
            Some(other) => self.glob.matches(&other.to_string()),
            None => false,
        }
    }
}

/// `NAME=RATIO`, as `--sample-service` takes it.
pub fn parse_service_ratio(s: &str) -> Result<(String, f64), SamplingError> {
    let bad = || SamplingError::ServiceRatioSyntax(s.to_owned());
    let (name, ratio) = s.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    let ratio: f64 = ratio.trim().parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(SamplingError::ServiceRatio {
            service: name.to_owned(),
            source: BadRatio(ratio),
        });
    }
    Ok((name.to_owned(), ratio))
}

/// A sampling configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error(transparent)]
    Ratio(#[from] BadRatio),
    #[error("service {service}: {source}")]
    ServiceRatio {
        service: String,
        #[source]
        source: BadRatio,
    },
    #[error("{0:?} is not NAME=RATIO")]
    ServiceRatioSyntax(String),
    #[error("{0:?} is not KEY=GLOB")]
    KeepMatchSyntax(String),
    #[error(transparent)]
    Glob(#[from] GlobError),
}

/// What the sampler does (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Head ratio for traces whose root's service has none of its own
    /// (0.0-1.0).
    pub ratio: f64,
    /// Ratios of traces whose root is one of these services.
    pub service_ratios: Vec<(String, f64)>,
    pub algorithm: RatioAlgorithm,
    /// Follow an inbound `traceparent`'s sampled flag.
    pub parent_based: bool,
    /// Keep traces with a span of error status.
    pub keep_errors: bool,
    /// Keep traces whose root took longer than this.
    pub keep_slower_than_ns: Option<u64>,
    /// Keep traces with a span attribute matching one of these.
    pub keep_match: Vec<KeepMatch>,
    /// How long a dropped trace waits for a late part that a rule would
    /// keep (0: decide at once).
    pub decision_wait_ns: u64,
    /// Traces held at most (older ones are dropped early and counted).
    pub max_held_traces: usize,
    /// Decisions remembered for late parts.
    pub decision_memory: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            ratio: 1.0,
            service_ratios: Vec::new(),
            algorithm: RatioAlgorithm::default(),
            parent_based: true,
            keep_errors: false,
            keep_slower_than_ns: None,
            keep_match: Vec::new(),
            decision_wait_ns: 0,
            max_held_traces: 4096,
            decision_memory: DECISION_MEMORY,
        }
    }
}

impl SamplingConfig {
    /// Whether any trace can be dropped: a ratio below 1, for all traces or
    /// some services. (At 1.0 the sampler keeps everything, whatever the
    /// tail rules or an inbound `traceparent` say.)
    pub fn drops_any(&self) -> bool {
        self.ratio < 1.0 || self.service_ratios.iter().any(|(_, r)| *r < 1.0)
    }

    /// Whether any tail rule is set.
    pub fn has_tail_rules(&self) -> bool {
        self.keep_errors || self.keep_slower_than_ns.is_some() || !self.keep_match.is_empty()
    }
}

/// Why a trace was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Head,
    Parent,
    Error,
    Slow,
    /// The rule at this index of `keep_match`.
    Match(usize),
}

/// Why the head decision dropped a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dropped {
    Ratio,
    Parent,
}

#[derive(Default)]
struct Counts {
    kept_head: u64,
    kept_parent: u64,
    kept_error: u64,
    kept_slow: u64,
    kept_match: u64,
    kept_earlier: u64,
    dropped_ratio: u64,
    dropped_parent: u64,
    dropped_earlier: u64,
    evicted: u64,
}

impl Counts {
    fn kept(&mut self, r: Reason) {
        match r {
            Reason::Head => self.kept_head += 1,
            Reason::Parent => self.kept_parent += 1,
            Reason::Error => self.kept_error += 1,
            Reason::Slow => self.kept_slow += 1,
            Reason::Match(_) => self.kept_match += 1,
        }
    }
    fn dropped(&mut self, d: Dropped, n: u64) {
        match d {
            Dropped::Ratio => self.dropped_ratio += n,
            Dropped::Parent => self.dropped_parent += n,
        }
    }
}

/// Recent decisions by trace id (`None`: dropped), oldest forgotten first.
struct Memory {
    map: HashMap<TraceId, Option<Reason>>,
    order: VecDeque<TraceId>,
    cap: usize,
}

impl Memory {
    fn get(&self, id: TraceId) -> Option<Option<Reason>> {
        self.map.get(&id).copied()
    }

    fn set(&mut self, id: TraceId, d: Option<Reason>) {
        if self.cap == 0 {
            return;
        }
        if self.map.insert(id, d).is_none() {
            self.order.push_back(id);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// Dropped parts of a trace, waiting for a late part a rule keeps.
struct Held {
    deadline: MonoNanos,
    why: Dropped,
    parts: Vec<Trace>,
}

/// The sampling stage (see the module docs).
pub struct Sampler {
    ratio: TraceIdRatio,
    by_service: HashMap<String, TraceIdRatio>,
    parent_based: bool,
    keep_errors: bool,
    keep_slower_than_ns: Option<u64>,
    keep_match: Vec<KeepMatch>,
    /// `match:<key>` of each `keep_match` rule.
    match_reasons: Vec<Cow<'static, str>>,
    wait_ns: u64,
    max_held: usize,
    memory: Memory,
    held: HashMap<TraceId, Held>,
    /// (deadline, trace) in hold order; entries of groups released early
    /// stay until their time (checked against `held`).
    held_order: VecDeque<(MonoNanos, TraceId)>,
    held_parts: usize,
    out: VecDeque<Trace>,
    counts: Counts,
}

impl Sampler {
    pub fn new(cfg: SamplingConfig) -> Result<Sampler, SamplingError> {
        let ratio = TraceIdRatio::new(cfg.ratio, cfg.algorithm)?;
        let mut by_service = HashMap::new();
        for (service, r) in &cfg.service_ratios {
            let s = TraceIdRatio::new(*r, cfg.algorithm).map_err(|source| {
                SamplingError::ServiceRatio {
                    service: service.clone(),
                    source,
                }
            })?;
            by_service.insert(service.clone(), s);
        }
        let match_reasons = cfg
            .keep_match
            .iter()
            .map(|m| Cow::Owned(format!("match:{}", m.key)))
            .collect();
        Ok(Sampler {
            ratio,
            by_service,
            parent_based: cfg.parent_based,
            keep_errors: cfg.keep_errors,
            keep_slower_than_ns: cfg.keep_slower_than_ns,
            keep_match: cfg.keep_match,
            match_reasons,
            wait_ns: cfg.decision_wait_ns,
            max_held: cfg.max_held_traces,
            memory: Memory {
                map: HashMap::new(),
                order: VecDeque::new(),
                cap: cfg.decision_memory,
            },
            held: HashMap::new(),
            held_order: VecDeque::new(),
            held_parts: 0,
            out: VecDeque::new(),
            counts: Counts::default(),
        })
    }

    /// Traces (parts) held now.
    pub fn held(&self) -> usize {
        self.held_parts
    }

    /// The head decision: a pure function of the trace.
    fn head(&self, t: &Trace) -> Result<Reason, Dropped> {
        let root = t.spans.first();
        if self.parent_based {
            if let Some(sampled) = root.and_then(|r| r.view.remote_parent_sampled) {
                return if sampled {
                    Ok(Reason::Parent)
                } else {
                    Err(Dropped::Parent)
                };
            }
        }
        let ratio = root
            .and_then(|r| self.by_service.get(&r.resource.service_name))
            .unwrap_or(&self.ratio);
        if ratio.keeps(t.trace_id) {
            Ok(Reason::Head)
        } else {
            Err(Dropped::Ratio)
        }
    }

    /// The first tail rule the trace matches.
    fn tail(&self, t: &Trace) -> Option<Reason> {
        if self.keep_errors && t.spans.iter().any(|s| s.status.code == StatusCode::Error) {
            return Some(Reason::Error);
        }
        if let Some(bound) = self.keep_slower_than_ns {
            if t.spans.first().is_some_and(|r| r.duration_nanos() > bound) {
                return Some(Reason::Slow);
            }
        }
        self.keep_match
            .iter()
            .position(|m| t.spans.iter().any(|s| m.matches(s)))
            .map(Reason::Match)
    }

    fn reason_str(&self, r: Reason) -> Cow<'static, str> {
        match r {
            Reason::Head => "head".into(),
            Reason::Parent => "parent".into(),
            Reason::Error => "error".into(),
            Reason::Slow => "slow".into(),
            Reason::Match(i) => self.match_reasons[i].clone(),
        }
    }

    /// Record the reason on the part's root span.
    fn mark(&self, mut t: Trace, r: Reason) -> Trace {
        if let Some(root) = t.spans.first_mut() {
            root.attributes
                .set(attr::ZT_SAMPLING_REASON, self.reason_str(r));
        }
        t
    }

    fn keep(&mut self, t: Trace, r: Reason) -> Trace {
        self.counts.kept(r);
        self.memory.set(t.trace_id, Some(r));
        self.mark(t, r)
    }

    fn hold(&mut self, t: Trace, why: Dropped, now: MonoNanos) {
        let id = t.trace_id;
        let deadline = now.saturating_add(self.wait_ns);
        self.held_order.push_back((deadline, id));
        self.held.insert(
            id,
            Held {
                deadline,
                why,
                parts: vec![t],
            },
        );
        self.held_parts += 1;
        self.evict_over_capacity();
    }

    /// Drop the oldest held traces while more than `max_held` are held.
    fn evict_over_capacity(&mut self) {
        while self.held_parts > self.max_held {
            let Some((deadline, id)) = self.held_order.pop_front() else {
                break;
            };
            if self.held.get(&id).is_some_and(|h| h.deadline == deadline) {
                let n = self.drop_held(id);
                self.counts.evicted += n;
            }
        }
    }

    /// Decide a held group: dropped. Returns its part count.
    fn drop_held(&mut self, id: TraceId) -> u64 {
        let Some(h) = self.held.remove(&id) else {
            return 0;
        };
        let n = h.parts.len() as u64;
        self.held_parts -= h.parts.len();
        self.counts.dropped(h.why, n);
        self.memory.set(id, None);
        n
    }
}

impl Stage for Sampler {
    fn name(&self) -> &'static str {
        "sampler"
    }

    fn process(&mut self, t: Trace, now: MonoNanos) -> Option<Trace> {
        let id = t.trace_id;
        // A later part of a trace already decided follows the decision;
        // a dropped one is still kept if a rule matches this part.
        match self.memory.get(id) {
            Some(Some(r)) => {
                self.counts.kept_earlier += 1;
                return Some(self.mark(t, r));
            }
            Some(None) => {
                return match self.tail(&t) {
                    Some(r) => Some(self.keep(t, r)),
                    None => {
                        self.counts.dropped_earlier += 1;
                        None
                    }
                };
            }
            None => {}
        }
        // A later part of a held trace: a rule that matches it brings the
        // held parts back.
        if self.held.contains_key(&id) {
            if let Some(r) = self.tail(&t) {
                if let Some(h) = self.held.remove(&id) {
                    self.held_parts -= h.parts.len();
                    for part in h.parts {
                        let part = self.keep(part, r);
                        self.out.push_back(part);
                    }
                }
                return Some(self.keep(t, r));
            }
            if let Some(h) = self.held.get_mut(&id) {
                h.parts.push(t);
            }
            self.held_parts += 1;
            self.evict_over_capacity();
            return None;
        }
        match self.head(&t) {
            Ok(r) => Some(self.keep(t, r)),
            Err(why) => match self.tail(&t) {
                Some(r) => Some(self.keep(t, r)),
                None if self.wait_ns > 0 && self.max_held > 0 => {
                    self.hold(t, why, now);
                    None
                }
                None => {
                    self.counts.dropped(why, 1);
                    self.memory.set(id, None);
                    None
                }
            },
        }
    }

    fn handle_timeout(&mut self, now: MonoNanos) {
        while let Some(&(deadline, id)) = self.held_order.front() {
            if deadline > now {
                break;
            }
            self.held_order.pop_front();
            if self.held.get(&id).is_some_and(|h| h.deadline == deadline) {
                self.drop_held(id);
            }
        }
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        self.held_order.front().map(|(d, _)| *d)
    }

    fn poll(&mut self) -> Option<Trace> {
        self.out.pop_front()
    }

    fn flush(&mut self) {
        let ids: Vec<TraceId> = self.held_order.drain(..).map(|(_, id)| id).collect();
        for id in ids {
            self.drop_held(id);
        }
    }

    fn report(&self, w: &mut StatsWriter) {
        let c = &self.counts;
        for (label, n) in [
            ("kept:head", c.kept_head),
            ("kept:parent", c.kept_parent),
            ("kept:error", c.kept_error),
            ("kept:slow", c.kept_slow),
            ("kept:match", c.kept_match),
            ("kept:earlier", c.kept_earlier),
            ("dropped:ratio", c.dropped_ratio),
            ("dropped:parent", c.dropped_parent),
            ("dropped:earlier", c.dropped_earlier),
        ] {
            w.set_labelled(&defs::SAMPLING_DECISIONS, label, n as f64);
        }
        w.set(&defs::SAMPLING_HELD, self.held_parts as f64);
        w.set(&defs::SAMPLING_EVICTED, c.evicted as f64);
    }
}
