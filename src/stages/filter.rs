//! Output filters: traces nobody wants to see (health checks, metrics
//! scrapes, other teams' services, fast requests), dropped whole before
//! sampling and output.
//!
//! - `ignore_routes`: the trace's root names a route or path matching a
//!   glob (`/health*`, `/metrics`): its HTTP route or URL template, its
//!   `url.path`, or `/<rpc.service>/<rpc.method>` for gRPC. Only the root
//!   counts: a real request that calls a health endpoint on its way is kept.
//! - `only_services`: the trace has at least one span of one of these
//!   services (`service.name`); traces are kept or dropped whole, never cut.
//! - `min_duration_ns`: the root took at least this long.
//!
//! **Invariant:** like the sampler, this applies to output only: it runs
//! after every aggregating stage (see [`TracerBuilder`](crate::TracerBuilder)).
//! No I/O, no clock.

use super::glob::Glob;
use crate::stage::Stage;
use crate::stats::{defs, StatsWriter};
use span_core::semconv::attr;
use span_core::{MonoNanos, Operation, Span, Trace};

/// What the output filter drops (see the module docs). The default drops
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputFilterConfig {
    pub ignore_routes: Vec<Glob>,
    pub only_services: Vec<String>,
    pub min_duration_ns: Option<u64>,
}

impl OutputFilterConfig {
    /// Whether it drops nothing.
    pub fn is_empty(&self) -> bool {
        self.ignore_routes.is_empty()
            && self.only_services.is_empty()
            && self.min_duration_ns.is_none()
    }
}

/// The output filter stage.
pub struct OutputFilter {
    cfg: OutputFilterConfig,
    ignored_route: u64,
    other_service: u64,
    too_short: u64,
}

impl OutputFilter {
    pub fn new(cfg: OutputFilterConfig) -> OutputFilter {
        OutputFilter {
            cfg,
            ignored_route: 0,
            other_service: 0,
            too_short: 0,
        }
    }

    fn ignored(&self, root: &Span) -> bool {
        if self.cfg.ignore_routes.is_empty() {
            return false;
        }
        let matches = |s: &str| self.cfg.ignore_routes.iter().any(|g| g.matches(s));
        match &root.view.operation {
            Some(Operation::HttpRoute(r)) if matches(r) => return true,
            Some(Operation::Rpc { service, method })
                if matches(&format!("/{service}/{method}")) =>
            {
                return true
            }
            _ => {}
        }
        root.attributes.get_str(attr::URL_PATH).is_some_and(matches)
    }
}

impl Stage for OutputFilter {
    fn name(&self) -> &'static str {
        "output_filter"
    }

    fn process(&mut self, t: Trace, _now: MonoNanos) -> Option<Trace> {
        let Some(root) = t.spans.first() else {
            return Some(t);
        };
        if self.ignored(root) {
            self.ignored_route += 1;
            return None;
        }
        if !self.cfg.only_services.is_empty()
            && !t.spans.iter().any(|s| {
                self.cfg
                    .only_services
                    .iter()
                    .any(|n| *n == s.resource.service_name)
            })
        {
            self.other_service += 1;
            return None;
        }
        if self
            .cfg
            .min_duration_ns
            .is_some_and(|min| root.duration_nanos() < min)
        {
            self.too_short += 1;
            return None;
        }
        Some(t)
    }

    fn report(&self, w: &mut StatsWriter) {
        w.set_labelled(&defs::FILTERED, "ignore_route", self.ignored_route as f64);
        w.set_labelled(&defs::FILTERED, "only_service", self.other_service as f64);
        w.set_labelled(&defs::FILTERED, "min_duration", self.too_short as f64);
    }
}
