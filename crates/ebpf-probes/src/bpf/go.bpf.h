/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Goroutines of Go processes, included by capture.bpf.c (see
 * src/goruntime.rs for how the probe points are found in a binary).
 *
 * Go multiplexes goroutines over OS threads, so the thread of a socket call
 * says nothing about which request it serves. Each goroutine born while the
 * probes are attached gets a task id, unique for the agent's life; a data
 * event of a Go process carries the id of the goroutine that made the call
 * (`task`), found through the runtime's current-g slot in thread-local
 * storage (FS base + an offset per binary). User space gets a record when
 * a task starts (with the task of the goroutine that created it) and ends,
 * and builds the ancestry from those (span-core's `task` rule).
 *
 * Probe points (amd64, Go >= 1.18 register ABI; R14 holds g in Go code).
 * Entries are probed on the stack-check branch of the prologue, which the
 * kernel emulates (a probe on the first instruction, a CMP, is
 * single-stepped: a debug trap, 15-30 us per hit on this VM):
 *   runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr) *g
 *     entry: the creator (RBX), per thread; then its
 *     CALL runtime.casgstatus(newg, _Gdead, _Grunnable): the new g (RAX)
 *     (a CALL is emulated too; every RET is the fallback when no such call
 *     is found). newproc1 runs on the system stack and returns before the
 *     new goroutine is queued, so it never runs untracked. Return probes
 *     (uretprobes) are not used: they rewrite the return address on the
 *     stack, which Go's movable stacks do not tolerate.
 *   runtime.goexit1()  the goroutine ends (g in R14).
 *   net/http.(*persistConn).roundTrip(pc, req *transportRequest)
 *     on the caller: its *Request (the first field of transportRequest)
 *     is about to be handed to the connection's write loop.
 *   net/http.(*persistConn).writeLoop(pc)
 *     marks its goroutine as a writer for others.
 *   net/http.(*Request).write(r *Request, ...)
 *     on a write loop: until its next request, its writes (Request.write
 *     itself, then pc.bw.Flush() on the same goroutine) are the caller's.
 *
 * A probe on the stack-check branch fires again when the check fails (the
 * function grows its stack and restarts from its entry): every program
 * here gives the same result when run twice.
 *
 * A g struct is reused after its goroutine exits, but only through
 * newproc1, which overwrites its entry; entries are keyed by tgid and
 * carry nothing across processes (a reused pid is caught by the start time
 * in go_procs). An evicted entry only loses a link (task 0).
 */

/* Go processes, from user space: where g is, and the process's start time
 * (/proc/<pid>/stat starttime, clock ticks) so a reused pid never
 * inherits another process's entry. */
struct zt_go_proc {
	__s64 tls_off;
	__u64 start_ticks;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct zt_go_proc);
} go_procs SEC(".maps");

struct zt_g_key {
	__u32 tgid;
	__u32 pad;
	__u64 g;
};

#define ZT_G_WRITER 1 /* an HTTP/1 client write loop: writes on behalf of callers */

struct zt_g_val {
	__u64 task;
	__u64 on_behalf; /* ZT_G_WRITER: the caller's task (0: unknown) */
	__u32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct zt_g_key);
	__type(value, struct zt_g_val);
} go_gs SEC(".maps");

/* newproc1 in flight, by pid_tgid: the creating g. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} go_spawning SEC(".maps");

/* HTTP/1 requests handed to a write loop: (tgid, *Request) -> caller task. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct zt_g_key);
	__type(value, __u64);
} go_reqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} task_seq SEC(".maps");

/* A task id unique across CPUs (never 0). */
static __always_inline __u64 new_task_id(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&task_seq, &zero);
	if (!c)
		return 0;
	*c += 1;
	return (*c << 10) | (bpf_get_smp_processor_id() & 0x3ff);
}

static __always_inline void emit_task(__u32 kind, __u32 tgid, __u64 task, __u64 parent)
{
	struct zt_task_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return;
	}
	e->kind = kind;
	e->pid = tgid;
	e->task = task;
	e->parent = parent;
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
}

static __always_inline struct zt_g_val *g_entry(__u32 tgid, __u64 g)
{
	struct zt_g_key k = { .tgid = tgid, .g = g };
	return bpf_map_lookup_elem(&go_gs, &k);
}

SEC("uprobe") int zt_go_newproc1(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced_now(bpf_get_current_task_btf(), id >> 32))
		return 0;
	__u64 creator = ctx->bx;
	bpf_map_update_elem(&go_spawning, &id, &creator, BPF_ANY);
	return 0;
}

/* newproc1 produced `newg`: give it a task, its creator's as parent. */
static __always_inline int new_goroutine(__u64 newg)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!traced_now(bpf_get_current_task_btf(), tgid))
		return 0;
	__u64 parent = 0;
	__u64 *creator = bpf_map_lookup_elem(&go_spawning, &id);
	if (creator) {
		struct zt_g_val *pe = g_entry(tgid, *creator);
		if (pe)
			parent = pe->task;
		bpf_map_delete_elem(&go_spawning, &id);
	}
	if (!newg)
		return 0;
	struct zt_g_key k = { .tgid = tgid, .g = newg };
	struct zt_g_val v = { .task = new_task_id() };
	if (!v.task)
		return 0;
	bpf_map_update_elem(&go_gs, &k, &v, BPF_ANY);
	emit_task(ZT_EV_TASK_START, tgid, v.task, parent);
	return 0;
}

/* At every CALL runtime.casgstatus in newproc1: only the one making the
 * new g runnable (or parked: _Gwaiting) counts. */
#define ZT_GDEAD 6
#define ZT_GRUNNABLE 1
#define ZT_GWAITING 4
SEC("uprobe") int zt_go_newg(struct pt_regs *ctx)
{
	if (ctx->bx != ZT_GDEAD || (ctx->cx != ZT_GRUNNABLE && ctx->cx != ZT_GWAITING))
		return 0;
	return new_goroutine(ctx->ax);
}

/* Fallback: at every RET of newproc1. */
SEC("uprobe") int zt_go_newproc1_ret(struct pt_regs *ctx)
{
	return new_goroutine(ctx->ax);
}

SEC("uprobe") int zt_go_goexit1(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct zt_g_key k = { .tgid = tgid, .g = ctx->r14 };
	struct zt_g_val *e = bpf_map_lookup_elem(&go_gs, &k);
	if (!e)
		return 0;
	__u64 task = e->task;
	bpf_map_delete_elem(&go_gs, &k);
	emit_task(ZT_EV_TASK_END, tgid, task, 0);
	return 0;
}

SEC("uprobe") int zt_go_round_trip(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct zt_g_val *e = g_entry(tgid, ctx->r14);
	if (!e || (e->flags & ZT_G_WRITER))
		return 0;
	__u64 task = e->task;
	__u64 req = 0;
	if (bpf_probe_read_user(&req, sizeof(req), (void *)ctx->bx) || !req)
		return 0;
	struct zt_g_key k = { .tgid = tgid, .g = req };
	bpf_map_update_elem(&go_reqs, &k, &task, BPF_ANY);
	return 0;
}

SEC("uprobe") int zt_go_write_loop(struct pt_regs *ctx)
{
	struct zt_g_val *e = g_entry(bpf_get_current_pid_tgid() >> 32, ctx->r14);
	if (!e)
		return 0;
	e->flags |= ZT_G_WRITER;
	e->on_behalf = 0;
	return 0;
}

SEC("uprobe") int zt_go_request_write(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct zt_g_val *e = g_entry(tgid, ctx->r14);
	if (!e || !(e->flags & ZT_G_WRITER))
		return 0;
	struct zt_g_key k = { .tgid = tgid, .g = ctx->ax };
	__u64 *caller = bpf_map_lookup_elem(&go_reqs, &k);
	/* Unknown caller (entry evicted): the writes are nobody's, never the
	 * previous caller's. The entry is kept: when the stack check fails the
	 * function runs again from its entry, and this probe with it (a reused
	 * *Request is registered again by roundTrip before it is written). */
	e->on_behalf = caller ? *caller : 0;
	return 0;
}

/* The task the current goroutine works for (its own, or the caller a write
 * loop writes for), or 0 when not a tracked goroutine. */
static __always_inline __u64 go_current_task(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	struct zt_go_proc *p = bpf_map_lookup_elem(&go_procs, &tgid);
	if (!p)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	/* /proc/<pid>/stat's starttime: the leader's boot-time start in
	 * USER_HZ (100) ticks. */
	__u64 start = BPF_CORE_READ(task, group_leader, start_boottime) / 10000000ULL;
	if (start != p->start_ticks)
		return 0;
	__u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
	__u64 g = 0;
	if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + p->tls_off)) || !g)
		return 0;
	struct zt_g_val *e = g_entry(tgid, g);
	if (!e) {
		count_drop(ZT_DROP_GO_UNTRACKED);
		return 0;
	}
	return (e->flags & ZT_G_WRITER) ? e->on_behalf : e->task;
}
