//! eBPF probes (being written).
