// SPDX-License-Identifier: MIT OR GPL-2.0
// Tiny programs `zt-trace check` loads to learn which hook kinds this host
// allows: each counts its hits (index = hook kind) for the checking process
// only, and the tracepoint one also sends one ring buffer record.

#include "zt_vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

enum { HIT_TRACEPOINT, HIT_UPROBE, HIT_SOCKOPS, HIT_KPROBE, HIT_FENTRY, HITS };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, HITS);
    __type(key, __u32);
    __type(value, __u64);
} check_hits SEC(".maps");

/* [0]: the tgid of the checking process. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} check_cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} check_ring SEC(".maps");

static __always_inline int ours(void)
{
    __u32 k = 0;
    __u32 *tgid = bpf_map_lookup_elem(&check_cfg, &k);
    return tgid && *tgid == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline void hit(__u32 i)
{
    __u64 *v = bpf_map_lookup_elem(&check_hits, &i);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int zt_check_tracepoint(void *ctx)
{
    if (!ours())
        return 0;
    hit(HIT_TRACEPOINT);
    __u64 *rec = bpf_ringbuf_reserve(&check_ring, sizeof(__u64), 0);
    if (rec) {
        *rec = 0x7a742d636865636bULL; /* "zt-check" */
        bpf_ringbuf_submit(rec, 0);
    }
    return 0;
}

SEC("uprobe")
int zt_check_uprobe(void *ctx)
{
    if (ours())
        hit(HIT_UPROBE);
    return 0;
}

/* Every socket event on the host counts: a loopback connection the check
 * makes itself is what proves it fires. */
SEC("sockops")
int zt_check_sockops(void *ctx)
{
    hit(HIT_SOCKOPS);
    return 1;
}

SEC("kprobe")
int zt_check_kprobe(void *ctx)
{
    if (ours())
        hit(HIT_KPROBE);
    return 0;
}

SEC("fentry")
int zt_check_fentry(void *ctx)
{
    if (ours())
        hit(HIT_FENTRY);
    return 0;
}
