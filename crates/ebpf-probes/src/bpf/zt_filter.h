/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * In-kernel filters: the configuration the loader writes (mirrored by
 * #[repr(C)] structs in src/filter.rs, layout asserted by tests there).
 *
 * Everything is double-buffered: two slots, and `filter_gen` (a counter
 * whose low bit is the active slot) switches between them in one write, so
 * a change never shows a half-written filter. Per-process verdicts are
 * cached in each thread's task storage together with the generation (and
 * the cgroup, when cgroups are filtered) they were computed for.
 *
 * Meaning: a call is traced when its process matches every include kind
 * that has entries (pid, comm, exe, cgroup), its connection matches one of
 * the port includes (if any), and nothing matches an exclude entry.
 */
#ifndef ZT_FILTER_H
#define ZT_FILTER_H

#define ZT_FILTER_MAX_CGROUPS 8

enum zt_filter_flag {
	ZT_F_PID_INCL = 1 << 0,
	ZT_F_COMM_INCL = 1 << 1,
	ZT_F_EXE_INCL = 1 << 2,
	ZT_F_CG_INCL = 1 << 3,
	ZT_F_PID_EXCL = 1 << 4,
	ZT_F_COMM_EXCL = 1 << 5,
	ZT_F_EXE_EXCL = 1 << 6,
	ZT_F_CG_EXCL = 1 << 7,
	ZT_F_PORT_INCL = 1 << 8,
	ZT_F_PORT_EXCL = 1 << 9,
};

/* Bits of a pid_filter / comm_filter / exe_filter / proc_match value. */
enum zt_match_bit {
	ZT_M_INCL = 1,
	ZT_M_EXCL = 2,
	/* proc_match only: which lists the process matched at exec (or in the
	 * loader's /proc scan) */
	ZT_M_COMM_INCL = 4,
	ZT_M_COMM_EXCL = 8,
	ZT_M_EXE_INCL = 16,
	ZT_M_EXE_EXCL = 32,
};

/* Bits of a port_filter entry (index slot * 65536 + port). */
enum zt_port_bit {
	ZT_P_LOCAL_INCL = 1,
	ZT_P_LOCAL_EXCL = 2,
	ZT_P_REMOTE_INCL = 4,
	ZT_P_REMOTE_EXCL = 8,
};

struct zt_filter_cfg {
	__u32 flags; /* enum zt_filter_flag */
	__u32 n_cg_incl;
	__u32 n_cg_excl;
	__u32 pad;
	/* cgroup v2 subtrees: the cgroup's id and its depth below the root */
	__u64 cg_incl_id[ZT_FILTER_MAX_CGROUPS];
	__u64 cg_excl_id[ZT_FILTER_MAX_CGROUPS];
	__u32 cg_incl_level[ZT_FILTER_MAX_CGROUPS];
	__u32 cg_excl_level[ZT_FILTER_MAX_CGROUPS];
};

struct zt_pid_key {
	__u32 slot;
	__u32 pid;
};

struct zt_comm_key {
	__u32 slot;
	__u32 pad;
	char comm[16];
};

struct zt_exe_key {
	__u32 slot;
	__u32 dev; /* kernel dev_t: major << 20 | minor */
	__u64 ino;
};

#endif /* ZT_FILTER_H */
