/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/* Two empty raw syscall tracepoint programs: the floor any syscall-based
 * capture pays (every syscall of every task takes the tracing slow path).
 * Loaded by crates/ebpf-probes/examples/filter_cost.rs for
 * benches/filter_cost.sh. */
#define SEC(name) __attribute__((section(name), used))
char LICENSE[] SEC("license") = "Dual MIT/GPL";
SEC("tp_btf/sys_enter") int empty_enter(void *ctx) { return 0; }
SEC("tp_btf/sys_exit") int empty_exit(void *ctx) { return 0; }
