//! The Prometheus text exposition format (0.0.4) of metric families,
//! written by the `prometheus-client` crate through a [`Collector`] that
//! hands it our families as they are at scrape time.

use exporters::metrics::{prom_label, MetricFamily, MetricKind, PointValue};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// `Content-Type` of what [`encode_prometheus`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct Families(Vec<MetricFamily>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            if f.points.is_empty() {
                continue;
            }
            let metric_type = match f.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Histogram => MetricType::Histogram,
            };
            let mut m = encoder.encode_descriptor(&f.prom_name, &f.help, None, metric_type)?;
            for p in &f.points {
                let labels: Vec<(String, String)> = p
                    .labels
                    .iter()
                    .map(|(k, v)| (prom_label(k).into_owned(), v.clone()))
                    .collect();
                let mut e = m.encode_family(&labels)?;
                match (&p.value, f.kind) {
                    (PointValue::Number(v), MetricKind::Counter) => match whole(*v) {
                        Some(n) => e.encode_counter::<NoLabelSet, _, f64>(&(n as u64), None)?,
                        None => e.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    },
                    (PointValue::Number(v), _) => match whole(*v) {
                        Some(n) => e.encode_gauge(&n)?,
                        None => e.encode_gauge(v)?,
                    },
                    (PointValue::Histogram(h), _) => {
                        let buckets: Vec<(f64, u64)> = h
                            .bounds
                            .iter()
                            .copied()
                            .zip(h.counts.iter().copied())
                            .collect();
                        e.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// `v` as an integer when it is one (counts print as `3`, not `3.0`).
fn whole(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
}

/// The families in the Prometheus text format.
pub fn encode_prometheus(families: Vec<MetricFamily>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error leaves what was
    // written so far.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}
