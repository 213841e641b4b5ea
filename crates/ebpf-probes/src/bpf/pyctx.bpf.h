/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Execution contexts of CPython, included by capture.bpf.c.
 *
 * CPython runs code "in" a contextvars.Context through Context.run
 * (`context_run`, a local symbol of libpython). grpcio runs each RPC's
 * handler in a fresh Context; asyncio runs every callback of a task in the
 * task's Context. So the Context a socket call is made in says which unit of
 * work made it, whatever thread it runs on.
 *
 * Each Context object gets an id the first time it runs, forgotten when the
 * object is freed (`context_tp_dealloc`), so a reused address never inherits
 * an old id. Every thread keeps a small stack of the contexts it is inside;
 * data events carry the innermost one (0: none, or unknown).
 *
 *   PyObject *context_run(PyContext *self, PyObject *const *args,
 *                         Py_ssize_t nargs, PyObject *kwnames);
 *   void context_tp_dealloc(PyContext *self);
 */

struct zt_ctx_key {
	__u32 tgid;
	__u32 pad;
	__u64 obj; /* PyContext* */
};

/* Context object -> id, while it lives. LRU: an evicted live context gets a
 * new id when it next runs (a link lost, never a wrong one). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct zt_ctx_key);
	__type(value, __u64);
} ctx_ids SEC(".maps");

/* The contexts a thread is running in are a stack in its task storage
 * (struct zt_task: ctx_depth, ctx_ids), freed with the thread. */

/* Next context id (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ctx_next SEC(".maps");

/* Innermost context of the thread whose storage is `t`, or 0. */
static __always_inline __u64 current_ctx(struct zt_task *t)
{
	__u32 d = t->ctx_depth;
	if (d == 0 || d > ZT_CTX_DEPTH)
		return 0;
	return t->ctx_ids[(d - 1) & (ZT_CTX_DEPTH - 1)];
}

SEC("uprobe") int zt_ctx_run(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!traced_now(bpf_get_current_task_btf(), tgid))
		return 0;
	if (!zt_ctx_seen)
		zt_ctx_seen = 1;
	struct zt_ctx_key k = { .tgid = tgid, .obj = PT_REGS_PARM1(ctx) };
	__u64 cid = 0;
	__u64 *known = bpf_map_lookup_elem(&ctx_ids, &k);
	if (known) {
		cid = *known;
	} else {
		__u32 zero = 0;
		__u64 *next = bpf_map_lookup_elem(&ctx_next, &zero);
		if (!next)
			return 0;
		cid = __sync_fetch_and_add(next, 1) + 1;
		bpf_map_update_elem(&ctx_ids, &k, &cid, BPF_ANY);
	}
	struct zt_task *t = bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	__u32 d = t->ctx_depth;
	if (d < ZT_CTX_DEPTH)
		t->ctx_ids[d & (ZT_CTX_DEPTH - 1)] = cid;
	t->ctx_depth = d + 1;
	return 0;
}

SEC("uretprobe") int zt_ctx_ret(struct pt_regs *ctx)
{
	struct zt_task *t = bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, 0);
	/* Nothing kept: the call began before the probe was attached. */
	if (!t || t->ctx_depth == 0)
		return 0;
	t->ctx_depth -= 1;
	return 0;
}

SEC("uprobe") int zt_ctx_dealloc(struct pt_regs *ctx)
{
	struct zt_ctx_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .obj = PT_REGS_PARM1(ctx) };
	bpf_map_delete_elem(&ctx_ids, &k);
	return 0;
}
