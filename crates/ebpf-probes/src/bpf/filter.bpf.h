/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * In-kernel filters (configuration in zt_filter.h), included by
 * capture.bpf.c. Checked first, before any other work: with no filter set
 * they cost one array lookup; a process verdict is computed once per thread
 * and filter generation, then read from the thread's task storage.
 */
#include "zt_filter.h"

#define ZT_F_PROC_MASK                                                                                               \
	(ZT_F_PID_INCL | ZT_F_COMM_INCL | ZT_F_EXE_INCL | ZT_F_CG_INCL | ZT_F_PID_EXCL | ZT_F_COMM_EXCL | ZT_F_EXE_EXCL | \
	 ZT_F_CG_EXCL)
#define ZT_F_NAME_MASK (ZT_F_COMM_INCL | ZT_F_COMM_EXCL | ZT_F_EXE_INCL | ZT_F_EXE_EXCL)

/* Slot 0: the active generation (0: no filter was ever set). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} filter_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct zt_filter_cfg);
} filter_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct zt_pid_key);
	__type(value, __u8);
} pid_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct zt_comm_key);
	__type(value, __u8);
} comm_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct zt_exe_key);
	__type(value, __u8);
} exe_filter SEC(".maps");

/* (slot, tgid) -> which comm/exe lists the process matched (at exec, at fork
 * from its parent, or in the loader's /proc scan). Only matching processes
 * have entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct zt_pid_key);
	__type(value, __u8);
} proc_match SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 65536);
	__type(key, __u32);
	__type(value, __u8);
} port_filter SEC(".maps");

/* The active filter, or NULL when none is set. */
static __always_inline struct zt_filter_cfg *active_filter(__u32 *gen)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&filter_gen, &zero);
	if (!g || !*g)
		return NULL;
	*gen = *g;
	__u32 slot = *gen & 1;
	struct zt_filter_cfg *cfg = bpf_map_lookup_elem(&filter_cfg, &slot);
	if (!cfg || !cfg->flags)
		return NULL;
	return cfg;
}

static __always_inline bool under_any_cgroup(__u32 n, __u64 *ids, __u32 *levels)
{
#pragma unroll
	for (int i = 0; i < ZT_FILTER_MAX_CGROUPS; i++) {
		if (i >= n)
			break;
		if (bpf_get_current_ancestor_cgroup_id(levels[i]) == ids[i])
			return true;
	}
	return false;
}

static __always_inline bool compute_proc_verdict(struct zt_filter_cfg *cfg, __u32 slot, __u32 tgid)
{
	__u32 f = cfg->flags;
	if (f & (ZT_F_PID_INCL | ZT_F_PID_EXCL)) {
		struct zt_pid_key k = { .slot = slot, .pid = tgid };
		__u8 *b = bpf_map_lookup_elem(&pid_filter, &k);
		__u8 bits = b ? *b : 0;
		if ((f & ZT_F_PID_INCL) && !(bits & ZT_M_INCL))
			return false;
		if (bits & ZT_M_EXCL)
			return false;
	}
	if (f & ZT_F_NAME_MASK) {
		struct zt_pid_key k = { .slot = slot, .pid = tgid };
		__u8 *m = bpf_map_lookup_elem(&proc_match, &k);
		__u8 bits = m ? *m : 0;
		if ((f & ZT_F_COMM_INCL) && !(bits & ZT_M_COMM_INCL))
			return false;
		if ((f & ZT_F_EXE_INCL) && !(bits & ZT_M_EXE_INCL))
			return false;
		if (bits & (ZT_M_COMM_EXCL | ZT_M_EXE_EXCL))
			return false;
	}
	if ((f & ZT_F_CG_INCL) && !under_any_cgroup(cfg->n_cg_incl, cfg->cg_incl_id, cfg->cg_incl_level))
		return false;
	if ((f & ZT_F_CG_EXCL) && under_any_cgroup(cfg->n_cg_excl, cfg->cg_excl_id, cfg->cg_excl_level))
		return false;
	return true;
}

/* Whether the current process is traced under `cfg` (generation `gen`);
 * cached in the thread's storage `t` when there is one. */
static __always_inline bool proc_verdict(struct zt_filter_cfg *cfg, __u32 gen, struct zt_task *t, __u32 tgid)
{
	if (!(cfg->flags & ZT_F_PROC_MASK))
		return true;
	__u64 cgid = cfg->flags & (ZT_F_CG_INCL | ZT_F_CG_EXCL) ? bpf_get_current_cgroup_id() : 0;
	if (t && t->verdict_gen == gen && t->verdict_cgid == cgid)
		return t->verdict;
	bool v = compute_proc_verdict(cfg, gen & 1, tgid);
	if (t) {
		t->verdict_gen = gen;
		t->verdict_cgid = cgid;
		t->verdict = v;
	}
	return v;
}

/* Whether a connection with these ports is traced under `cfg`. */
static __always_inline bool port_verdict(struct zt_filter_cfg *cfg, __u32 gen, struct sock *sk)
{
	if (!(cfg->flags & (ZT_F_PORT_INCL | ZT_F_PORT_EXCL)))
		return true;
	__u32 base = (gen & 1) << 16;
	__u32 lk = base | BPF_CORE_READ(sk, __sk_common.skc_num);
	__u32 rk = base | bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__u8 *lb = bpf_map_lookup_elem(&port_filter, &lk);
	__u8 *rb = bpf_map_lookup_elem(&port_filter, &rk);
	__u8 l = lb ? *lb : 0;
	__u8 r = rb ? *rb : 0;
	if ((l & ZT_P_LOCAL_EXCL) || (r & ZT_P_REMOTE_EXCL))
		return false;
	if ((cfg->flags & ZT_F_PORT_INCL) && !(l & ZT_P_LOCAL_INCL) && !(r & ZT_P_REMOTE_INCL))
		return false;
	return true;
}

/* Which comm/exe lists of `slot` the process that just exec'd `bprm`
 * matches (proc_match bits), if the slot filters by them. */
static __always_inline void match_exec(__u32 slot, __u32 tgid, struct task_struct *task, struct file *exe)
{
	struct zt_filter_cfg *cfg = bpf_map_lookup_elem(&filter_cfg, &slot);
	if (!cfg || !(cfg->flags & ZT_F_NAME_MASK))
		return;
	__u8 bits = 0;
	if (cfg->flags & (ZT_F_COMM_INCL | ZT_F_COMM_EXCL)) {
		struct zt_comm_key k = { .slot = slot };
		__u64 *c = (__u64 *)k.comm;
		c[0] = *(__u64 *)&task->comm[0];
		c[1] = *(__u64 *)&task->comm[8];
		__u8 *v = bpf_map_lookup_elem(&comm_filter, &k);
		if (v)
			bits |= (*v & ZT_M_INCL ? ZT_M_COMM_INCL : 0) | (*v & ZT_M_EXCL ? ZT_M_COMM_EXCL : 0);
	}
	if (cfg->flags & (ZT_F_EXE_INCL | ZT_F_EXE_EXCL)) {
		struct zt_exe_key k = {
			.slot = slot,
			.dev = exe->f_inode->i_sb->s_dev,
			.ino = exe->f_inode->i_ino,
		};
		__u8 *v = bpf_map_lookup_elem(&exe_filter, &k);
		if (v)
			bits |= (*v & ZT_M_INCL ? ZT_M_EXE_INCL : 0) | (*v & ZT_M_EXCL ? ZT_M_EXE_EXCL : 0);
	}
	struct zt_pid_key pk = { .slot = slot, .pid = tgid };
	if (bits) {
		if (bpf_map_update_elem(&proc_match, &pk, &bits, BPF_ANY))
			count_drop(ZT_DROP_FILTER_FULL);
	} else {
		bpf_map_delete_elem(&proc_match, &pk);
	}
}

/* A new process inherits its parent's matches (nginx's workers are forked
 * from a matched master and never exec). */
static __always_inline void inherit_match(__u32 slot, __u32 parent, __u32 child)
{
	struct zt_filter_cfg *cfg = bpf_map_lookup_elem(&filter_cfg, &slot);
	if (!cfg || !(cfg->flags & ZT_F_NAME_MASK))
		return;
	struct zt_pid_key pk = { .slot = slot, .pid = parent };
	struct zt_pid_key ck = { .slot = slot, .pid = child };
	__u8 *m = bpf_map_lookup_elem(&proc_match, &pk);
	if (m) {
		__u8 bits = *m;
		if (bpf_map_update_elem(&proc_match, &ck, &bits, BPF_ANY))
			count_drop(ZT_DROP_FILTER_FULL);
	} else {
		bpf_map_delete_elem(&proc_match, &ck);
	}
}
