//! eBPF capture for zt-trace: C programs on syscall tracepoints (built by
//! build.rs with clang), loaded and attached with aya, records decoded into
//! [`span_core::Event`]s.
//!
//! ```no_run
//! let mut probes = ebpf_probes::Probes::builder().capture_bytes(4096).load()?;
//! let mut decoder = ebpf_probes::raw::Decoder::new();
//! probes.poll(std::time::Duration::from_millis(100), |rec| {
//!     if let Ok(Some(ev)) = decoder.decode(rec) {
//!         println!("{ev:?}");
//!     }
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
pub mod check;
pub mod elfsym;
pub mod filter;
pub mod goruntime;
mod loader;
mod multi;
pub mod procfs;
pub mod pyctx;
pub mod raw;
pub mod record;
pub mod runtime;
mod source;
pub mod tls;

pub use batch::BatchEnd;
pub use filter::{Filter, FilterError, Selector};
pub use loader::{cgroup2_mount, DropCounters, LoadError, MapFill, Probes, ProbesBuilder};
pub use source::{monotonic_ns, wall_clock_offset_ns, LiveSource, ReplaySource, SourceStats};
