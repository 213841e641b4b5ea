/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * zt-trace capture: TCP payload prefixes from socket syscalls, connection
 * lifecycle, and process exec/exit, sent to user space on one ring buffer.
 *
 * Cost discipline (see ARCHITECTURE.md, "Capture"): two raw syscall
 * tracepoints with BTF access (tp_btf/sys_enter, tp_btf/sys_exit) run for
 * every syscall of every task, so they reject on the syscall number first
 * (one switch), then the agent's own pid and the filters, then non-socket
 * fds and non-TCP sockets, before any map is touched. The syscall's
 * arguments wait for its exit in task-local storage (no global table, no
 * lock). Kernel structures reachable from the current task are read
 * directly (BTF); only what hangs off the fd table needs probe reads.
 * Payload is copied once into a per-CPU scratch buffer and only the captured
 * prefix is put on the ring; wake-ups are batched.
 */
#include "zt_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "zt_events.h"
#include "zt_arch.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before load (read-only at run time). */
volatile const __u32 zt_agent_tgid = 0;
volatile const __u32 zt_capture_max = 4096;     /* <= ZT_MAX_CAPTURE */
volatile const __u64 zt_wakeup_bytes = 1 << 18; /* wake the reader once this much is queued */

/* Set by the probes themselves the first time they fire, so the syscall
 * path skips their bookkeeping while no process uses TLS or CPython
 * contexts. */
__u32 zt_tls_seen = 0;
__u32 zt_ctx_seen = 0;

/* Internal call codes (not in data events). */
#define ZT_CALL_CONNECT 100
#define ZT_CALL_ACCEPT 101

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* What a data event is built from. */
struct zt_args {
	__u64 sk;
	__u64 buf; /* buffer, or iovec array when iovcnt > 0 */
	__u64 enter_ns;
	__s64 ret; /* bytes transferred */
	__u64 ssl; /* TLS: the SSL* */
	__s32 fd;
	__u32 seq;
	__u32 iovcnt;
	__u8 call;
	__u8 direction;
	__u8 source;
	__u8 pad;
};

/* TLS call whose data event is being emitted (zt_ssl_ret -> zt_emit_tls),
 * keyed by pid_tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct zt_args);
} inflight SEC(".maps");

#define ZT_CTX_DEPTH 4

/* Per thread (task-local storage, freed with the task): the socket syscall
 * waiting for its exit, what the decoder knows about the thread, and the
 * CPython contexts it runs in. */
struct zt_task {
	__u64 sk;
	__u64 buf;
	__u64 arg1; /* the call's second argument, checked again at exit */
	__u64 enter_ns;
	__s32 fd;
	__u32 seq;
	__u32 iovcnt;
	__s32 nr;   /* syscall number at entry */
	__u8 call;  /* 0: nothing in flight */
	__u8 direction;
	/* What the decoder was last told about this thread (zt_thread_info). */
	__u8 announced;
	__u8 pad[5];
	__u64 ann_comm[2];
	__u32 ann_tid;
	/* CPython execution contexts the thread is in (pyctx.bpf.h): depth may
	 * exceed ZT_CTX_DEPTH, deeper levels are not kept. */
	__u32 ctx_depth;
	__u64 ctx_ids[ZT_CTX_DEPTH];
	/* Filter verdict of the process, for filter generation verdict_gen
	 * (0: none yet) and cgroup verdict_cgid. */
	__u64 verdict_cgid;
	__u32 verdict_gen;
	__u8 verdict;
	__u8 pad3[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct zt_task);
} tasks SEC(".maps");

struct zt_conn {
	__u64 conn_id;
	__u8 role;
	__u8 tls;       /* a TLS library call used this socket: its syscall bytes are ciphertext */
	__u8 announced; /* the decoder knows its addresses (open record or zt_conn_info sent) */
	__u8 pad[5];
};

/* Connections, keyed by struct sock address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct zt_conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZT_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Data record under construction: the optional prefixes, the header, then
 * the payload; the record is output from the first part it needs. Room for
 * two captures (plus the prefixes' size) so the verifier can bound "offset
 * + length" when gathering iovecs and when outputting. `busy` guards it:
 * the syscall tracepoints run with preemption off, but uprobe programs
 * (TLS) can be preempted on their CPU by another program wanting the same
 * buffer. */
struct zt_scratch {
	__u64 busy;
	struct zt_conn_info conn;
	struct zt_thread_info thr;
	struct zt_data_event hdr;
	__u8 room[2 * ZT_MAX_CAPTURE + sizeof(struct zt_conn_info) + sizeof(struct zt_thread_info)];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zt_scratch);
} scratch SEC(".maps");

/* 1 while the reader reads on its own schedule (it waits for records to
 * gather, batch.rs): records then wake it only when they cross
 * zt_wakeup_bytes, and execs always do. 0 (the default): the first record
 * it has not consumed wakes it too. Written by user space only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reader_lazy SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &reason);
	if (c)
		*c += 1;
}

/* Wake the reader with the first record it has not consumed (the reader
 * drained everything and sleeps until data or its next deadline; not while
 * it batches, see reader_lazy), and with the record that makes the queued
 * data cross zt_wakeup_bytes. The first is the kernel's own default (flags
 * 0): at commit, it wakes the reader only if the reader's position is this
 * record's, which is exact even for a record reserved before it is filled.
 * Asking "is the ring empty?" here instead is wrong for reserved records
 * (the query counts the record itself, so the ring never looks empty) and
 * loses the wake-up: a new process's exec record then sat unread, with
 * everything after it, until the reader's next deadline, and the process
 * had exited before its /proc entry was read (e2e_tls's short-lived node
 * client lost its service name). While the reader lags, nothing wakes it:
 * records find their predecessors unread, and after a wake-up the reader
 * waits a short batching delay before draining again. */
static __always_inline __u64 rb_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (avail < zt_wakeup_bytes && avail + size >= zt_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	__u32 zero = 0;
	__u32 *lazy = bpf_map_lookup_elem(&reader_lazy, &zero);
	return lazy && *lazy ? BPF_RB_NO_WAKEUP : 0;
}

#include "filter.bpf.h"

/* Whether the current process is traced at all (the agent never is). */
static __always_inline bool traced_now(struct task_struct *task, __u32 tgid)
{
	if (tgid == zt_agent_tgid)
		return false;
	__u32 gen = 0;
	struct zt_filter_cfg *cfg = active_filter(&gen);
	if (!cfg || !(cfg->flags & ZT_F_PROC_MASK))
		return true;
	struct zt_task *t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	return proc_verdict(cfg, gen, t, tgid);
}

/* Whether the current thread's connection `sk` is traced. */
static __always_inline bool sock_traced(struct sock *sk)
{
	__u32 gen = 0;
	struct zt_filter_cfg *cfg = active_filter(&gen);
	return !cfg || port_verdict(cfg, gen, sk);
}

/* Learned from the first socket checked the long way, since these kernel
 * objects are not in kallsyms: every socket file has the same f_op
 * (socket_file_ops), and TCP sockets share their family's proto_ops
 * (inet_stream_ops, inet6_stream_ops). A learned value only ever comes from
 * an object that passed the full check, so a match is proof; a mismatch
 * falls back to the full check. */
__u64 zt_sock_fops = 0;
__u64 zt_tcp_ops[2] = {};

/* Read `n` u64 words of `obj` starting at field offset `first` into `w`;
 * `field` is then w[(offset(field) - first) / 8]. */
#define ZT_WORD(w, first, off) ((w)[((off) - (first)) / 8])

/* fd of the current task -> its struct sock, if it is a TCP/IPv4-or-6
 * socket. The task's fd table is read directly (BTF); the file and what
 * hangs off it need probe reads (the fd array holds plain pointers): one for
 * the file pointer, one for the file's f_op..f_inode, one for the socket's
 * sk and ops, once the objects above are learned. */
static __always_inline struct sock *fd_to_tcp_sock(struct task_struct *task, int fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;

	const __u32 o_op = bpf_core_field_offset(struct file, f_op);
	const __u32 o_priv = bpf_core_field_offset(struct file, private_data);
	const __u32 o_ino = bpf_core_field_offset(struct file, f_inode);
	__u64 fw[4];
	__u64 fops, priv, inode;
	if (o_priv > o_op && o_ino > o_op && o_priv - o_op < 32 && o_ino - o_op < 32 &&
	    !((o_priv - o_op) % 8) && !((o_ino - o_op) % 8)) {
		if (bpf_probe_read_kernel(fw, sizeof(fw), (void *)f + o_op))
			return NULL;
		fops = fw[0];
		priv = ZT_WORD(fw, o_op, o_priv);
		inode = ZT_WORD(fw, o_op, o_ino);
	} else {
		fops = (__u64)BPF_CORE_READ(f, f_op);
		priv = (__u64)BPF_CORE_READ(f, private_data);
		inode = (__u64)BPF_CORE_READ(f, f_inode);
	}
	__u64 known_fops = zt_sock_fops;
	if (known_fops) {
		if (fops != known_fops)
			return NULL;
	} else {
		umode_t mode = BPF_CORE_READ((struct inode *)inode, i_mode);
		if ((mode & S_IFMT) != S_IFSOCK)
			return NULL;
		zt_sock_fops = fops;
	}

	struct socket *sock = (struct socket *)priv;
	const __u32 o_sk = bpf_core_field_offset(struct socket, sk);
	const __u32 o_ops = bpf_core_field_offset(struct socket, ops);
	__u64 sw[2];
	__u64 sk, ops;
	if (o_ops == o_sk + 8) {
		if (bpf_probe_read_kernel(sw, sizeof(sw), (void *)sock + o_sk))
			return NULL;
		sk = sw[0];
		ops = sw[1];
	} else {
		sk = (__u64)BPF_CORE_READ(sock, sk);
		ops = (__u64)BPF_CORE_READ(sock, ops);
	}
	if (!sk)
		return NULL;
	if (ops && (ops == zt_tcp_ops[0] || ops == zt_tcp_ops[1]))
		return (struct sock *)sk;
	struct sock *s = (struct sock *)sk;
	if (BPF_CORE_READ(s, sk_protocol) != IPPROTO_TCP)
		return NULL;
	__u16 family = BPF_CORE_READ(s, __sk_common.skc_family);
	if (family == AF_INET) {
		if (!zt_tcp_ops[0])
			zt_tcp_ops[0] = ops;
	} else if (family == AF_INET6) {
		if (!zt_tcp_ops[1])
			zt_tcp_ops[1] = ops;
	} else {
		return NULL;
	}
	return s;
}

static __always_inline void read_tuple(struct sock *sk, struct zt_tuple *t)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->pad = 0;
	if (t->family == AF_INET) {
		__u32 *l = (__u32 *)t->laddr;
		__u32 *r = (__u32 *)t->raddr;
		l[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		r[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		l[1] = l[2] = l[3] = 0;
		r[1] = r[2] = r[3] = 0;
	} else {
		BPF_CORE_READ_INTO(&t->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&t->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline __u64 new_conn_id(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&conn_seq, &zero);
	if (!c)
		return 0;
	*c += 1;
	return (*c << 10) | (bpf_get_smp_processor_id() & 0x3ff);
}

/* The connection record of `sk`, created (role unknown) on first sight. */
static __always_inline struct zt_conn *conn_of(__u64 sk)
{
	struct zt_conn *c = bpf_map_lookup_elem(&conns, &sk);
	if (c)
		return c;
	struct zt_conn fresh = { .conn_id = new_conn_id(), .role = ZT_ROLE_UNKNOWN };
	if (bpf_map_update_elem(&conns, &sk, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&conns, &sk) == NULL) {
		count_drop(ZT_DROP_CONN_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &sk);
}

/* Copy min(want, zt_capture_max - off) user bytes to room[off..]. */
static __always_inline __u32 copy_user(__u8 *room, __u32 off, const void *src, __u64 want)
{
	__u32 cap = zt_capture_max;
	if (cap > ZT_MAX_CAPTURE)
		cap = ZT_MAX_CAPTURE;
	if (off >= cap)
		return 0;
	__u64 n = cap - off;
	if (want < n)
		n = want;
	off &= ZT_MAX_CAPTURE - 1;
	if (n > ZT_MAX_CAPTURE)
		n = ZT_MAX_CAPTURE;
	if (bpf_probe_read_user(room + off, n, src)) {
		count_drop(ZT_DROP_READ_FAIL);
		return 0;
	}
	return n;
}

struct zt_gather {
	__u8 *room;
	const struct iovec *iov;
	__u64 total; /* bytes the call transferred, still to attribute */
	__u32 iovcnt;
	__u32 off; /* bytes captured so far */
};

/* One iovec; bpf_loop callback (verified once, whatever the iovec count). */
static long gather_one(__u32 i, void *data)
{
	struct zt_gather *g = data;
	if (i >= g->iovcnt || g->total == 0 || g->off >= zt_capture_max)
		return 1;
	struct iovec v;
	if (bpf_probe_read_user(&v, sizeof(v), &g->iov[i]))
		return 1;
	__u64 n = v.iov_len < g->total ? v.iov_len : g->total;
	g->off += copy_user(g->room, g->off, v.iov_base, n);
	g->total -= n;
	return 0;
}

static __always_inline __u32 gather_iov(__u8 *room, const struct iovec *iov, __u32 iovcnt, __u64 total)
{
	struct zt_gather g = { .room = room, .iov = iov, .total = total, .iovcnt = iovcnt, .off = 0 };
	bpf_loop(ZT_MAX_IOV, gather_one, &g, 0);
	if (g.total > 0 && g.off < zt_capture_max)
		count_drop(ZT_DROP_IOV_TRUNC);
	return g.off;
}

#include "pyctx.bpf.h"
#include "go.bpf.h"

/* Build and output the data record of one call. `t` is the thread's task
 * storage, if the caller has it. */
static __always_inline int emit_data(struct task_struct *task, struct zt_task *t, struct zt_args *a, __u64 bytes,
				     __u8 source)
{
	__u32 zero = 0;
	struct zt_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct zt_conn *conn = a->sk ? conn_of(a->sk) : NULL;
	/* Ciphertext: the plaintext comes from the TLS probes. */
	if (conn && conn->tls && source != ZT_SRC_TLS)
		return 0;
	if (!t)
		t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		count_drop(ZT_DROP_ARGS_FULL);
		return 0;
	}
	if (__sync_lock_test_and_set(&s->busy, 1)) {
		count_drop(ZT_DROP_SCRATCH_BUSY);
		return 0;
	}

	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct zt_data_event *e = &s->hdr;
	e->kind = ZT_EV_DATA;
	e->pid = id >> 32;
	e->tid = tid;
	e->fd = a->fd;
	e->conn_id = conn ? conn->conn_id : 0;
	e->role = conn ? conn->role : ZT_ROLE_UNKNOWN;
	e->enter_ns = a->enter_ns;
	e->exit_ns = bpf_ktime_get_ns();
	e->bytes = bytes;
	e->seq = a->seq;
	e->direction = a->direction;
	e->source = source;
	e->call = a->call;
	e->pad = 0;
	e->ssl = a->ssl;
	e->ctx = zt_ctx_seen ? current_ctx(t) : 0;
	e->task = go_current_task(id);

	/* Prefixes: what the decoder does not know yet. Read directly from
	 * the task (BTF). */
	__u64 c0 = *(__u64 *)&task->comm[0];
	__u64 c1 = *(__u64 *)&task->comm[8];
	bool need_conn = conn && !conn->announced;
	bool need_thr =
		need_conn || !t->announced || t->ann_tid != tid || t->ann_comm[0] != c0 || t->ann_comm[1] != c1;
	__u32 pre = 0;
	if (need_conn) {
		s->conn.kind = ZT_EV_CONN_INFO;
		s->conn.pad = 0;
		s->conn.conn_id = conn->conn_id;
		read_tuple((struct sock *)a->sk, &s->conn.tuple);
		pre = sizeof(struct zt_conn_info) + sizeof(struct zt_thread_info);
	} else if (need_thr) {
		pre = sizeof(struct zt_thread_info);
	}
	if (need_thr) {
		s->thr.kind = ZT_EV_THREAD;
		s->thr.tid = tid;
		s->thr.start_ns = task->start_time;
		__u64 *comm = (__u64 *)s->thr.comm;
		comm[0] = c0;
		comm[1] = c1;
	}

	__u32 captured = 0;
	if (source != ZT_SRC_SENDFILE) {
		if (a->iovcnt)
			captured = gather_iov(s->room, (const struct iovec *)a->buf, a->iovcnt, bytes);
		else
			captured = copy_user(s->room, 0, (const void *)a->buf, bytes);
	}
	if (captured > ZT_MAX_CAPTURE)
		captured = ZT_MAX_CAPTURE;
	e->captured = captured;
	/* The masks change nothing (captured <= ZT_MAX_CAPTURE, pre <= 88) but
	 * give the verifier bounds it can see on the registers it checks. */
	barrier_var(captured);
	barrier_var(pre);
	pre &= 127;
	__u32 size = pre + sizeof(struct zt_data_event) + (captured & (2 * ZT_MAX_CAPTURE - 1));
	void *start = (void *)&s->hdr - pre;
	if (bpf_ringbuf_output(&events, start, size, rb_flags(size))) {
		count_drop(ZT_DROP_RINGBUF_DATA);
	} else {
		if (need_conn)
			conn->announced = 1;
		if (need_thr) {
			t->announced = 1;
			t->ann_tid = tid;
			t->ann_comm[0] = c0;
			t->ann_comm[1] = c1;
		}
	}
	s->busy = 0; /* after the output helper call: nothing is reordered past it */
	return 0;
}

/* A connection or TLS-binding record (with the socket's addresses), or a
 * close record (without). Whether it was output. */
static __always_inline bool emit_conn(__u32 kind, struct sock *sk, int fd, __u64 conn_id, __u8 role, __u64 ssl)
{
	struct zt_conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return false;
	}
	__u64 id = bpf_get_current_pid_tgid();
	e->kind = kind;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->conn_id = conn_id;
	e->ts = bpf_ktime_get_ns();
	e->role = role;
	e->ssl = ssl;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	if (kind == ZT_EV_CONN_CLOSE)
		__builtin_memset(&e->tuple, 0, sizeof(e->tuple));
	else
		read_tuple(sk, &e->tuple);
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
	return true;
}
#include "tls_state.bpf.h"
#include "tls.bpf.h"

/* A new connection of the current task: record its role and announce it. */
static __always_inline void conn_opened(struct task_struct *task, int fd, __u8 role)
{
	struct sock *sk = fd_to_tcp_sock(task, fd);
	if (!sk || !sock_traced(sk))
		return;
	__u64 key = (__u64)sk;
	struct zt_conn c = { .conn_id = new_conn_id(), .role = role };
	c.announced = emit_conn(ZT_EV_CONN_OPEN, sk, fd, c.conn_id, role, 0);
	if (bpf_map_update_elem(&conns, &key, &c, BPF_ANY))
		count_drop(ZT_DROP_CONN_FULL);
}

/* The agent connected: its addresses (the source port is chosen by now,
 * even for a non-blocking connect) let user space recognise the server side
 * of this connection when a traced process accepts it. Nothing is kept. */
static __always_inline void own_conn(struct task_struct *task, int fd)
{
	struct sock *sk = fd_to_tcp_sock(task, fd);
	if (sk)
		emit_conn(ZT_EV_OWN_CONN, sk, fd, 0, ZT_ROLE_CLIENT, 0);
}

static __always_inline int on_close(struct task_struct *task, int fd)
{
	struct sock *sk = fd_to_tcp_sock(task, fd);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct zt_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	__u64 conn_id = c->conn_id;
	__u8 role = c->role;
	bpf_map_delete_elem(&conns, &key);
	emit_conn(ZT_EV_CONN_CLOSE, sk, fd, conn_id, role, 0);
	return 0;
}

static __always_inline __u32 msg_iov(__u64 msg, __u64 *iov)
{
	struct user_msghdr m = {};
	if (bpf_probe_read_user(&m, sizeof(m), (void *)msg))
		return 0;
	*iov = (__u64)m.msg_iov;
	return (__u32)m.msg_iovlen;
}

/* Every syscall of every task enters here: the syscall number decides
 * first, then the process, then the fd. */
SEC("tp_btf/sys_enter")
int BPF_PROG(zt_sys_enter, struct pt_regs *regs, long nr)
{
	__u8 call;
	__u8 direction = ZT_EGRESS;
	switch (nr) {
	case ZT_NR_READ:
		call = ZT_CALL_READ;
		direction = ZT_INGRESS;
		break;
	case ZT_NR_WRITE:
		call = ZT_CALL_WRITE;
		break;
	case ZT_NR_READV:
		call = ZT_CALL_READV;
		direction = ZT_INGRESS;
		break;
	case ZT_NR_WRITEV:
		call = ZT_CALL_WRITEV;
		break;
	case ZT_NR_RECVFROM:
		call = ZT_CALL_RECVFROM;
		direction = ZT_INGRESS;
		break;
	case ZT_NR_SENDTO:
		call = ZT_CALL_SENDTO;
		break;
	case ZT_NR_RECVMSG:
		call = ZT_CALL_RECVMSG;
		direction = ZT_INGRESS;
		break;
	case ZT_NR_SENDMSG:
		call = ZT_CALL_SENDMSG;
		break;
	case ZT_NR_SENDFILE:
		call = ZT_CALL_SENDFILE;
		break;
	case ZT_NR_CONNECT:
		call = ZT_CALL_CONNECT;
		break;
	case ZT_NR_ACCEPT:
	case ZT_NR_ACCEPT4:
		call = ZT_CALL_ACCEPT;
		break;
	case ZT_NR_CLOSE:
		call = 0;
		break;
	default:
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	if (ZT_COMPAT_SYSCALL(task))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	/* The agent is never traced, but its connects are announced (at
	 * exit, see own_conn) so the server side of its export connections
	 * can be left out. */
	bool agent = tgid == zt_agent_tgid;
	if (agent && call != ZT_CALL_CONNECT)
		return 0;
	/* Filters first: with none set, one array lookup. */
	__u32 gen = 0;
	struct zt_filter_cfg *cfg = active_filter(&gen);
	struct zt_task *t = NULL;
	if (!agent && cfg && (cfg->flags & ZT_F_PROC_MASK)) {
		t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!proc_verdict(cfg, gen, t, tgid))
			return 0;
	}
	int fd = (int)ZT_SYSCALL_ARG0(regs);
	if (call == 0)
		return on_close(task, fd);

	if (call >= ZT_CALL_CONNECT) {
		/* The socket is looked at when the call has succeeded. */
		if (!t)
			t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t) {
			count_drop(ZT_DROP_ARGS_FULL);
			return 0;
		}
		t->fd = fd;
		t->arg1 = ZT_SYSCALL_ARG1(regs);
		t->nr = nr;
		t->call = call;
		return 0;
	}

	struct sock *sk = fd_to_tcp_sock(task, fd);
	if (!sk)
		return 0;
	if (cfg && !port_verdict(cfg, gen, sk))
		return 0;
	__u64 buf = ZT_SYSCALL_ARG1(regs);
	__u32 iovcnt = 0;
	if (call == ZT_CALL_READV || call == ZT_CALL_WRITEV) {
		iovcnt = ZT_SYSCALL_ARG2(regs);
	} else if (call == ZT_CALL_RECVMSG || call == ZT_CALL_SENDMSG) {
		iovcnt = msg_iov(buf, &buf);
		if (!iovcnt)
			return 0;
	} else if (call == ZT_CALL_SENDFILE) {
		buf = 0;
	}
	if (!t)
		t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		count_drop(ZT_DROP_ARGS_FULL);
		return 0;
	}
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	t->sk = (__u64)sk;
	t->buf = buf;
	t->enter_ns = bpf_ktime_get_ns();
	t->fd = fd;
	t->arg1 = ZT_SYSCALL_ARG1(regs);
	t->iovcnt = iovcnt;
	t->nr = nr;
	t->call = call;
	t->direction = direction;
	t->seq = direction == ZT_EGRESS ? BPF_CORE_READ(tp, write_seq) : BPF_CORE_READ(tp, copied_seq);
	if (zt_tls_seen)
		tls_note_syscall(id, sk, fd, direction);
	return 0;
}

/* Every syscall exit: only those whose entry left state go further. */
SEC("tp_btf/sys_exit")
int BPF_PROG(zt_sys_exit, struct pt_regs *regs, long ret)
{
	long nr = ZT_SYSCALL_NR(regs);
	switch (nr) {
	case ZT_NR_READ:
	case ZT_NR_WRITE:
	case ZT_NR_READV:
	case ZT_NR_WRITEV:
	case ZT_NR_RECVFROM:
	case ZT_NR_SENDTO:
	case ZT_NR_RECVMSG:
	case ZT_NR_SENDMSG:
	case ZT_NR_SENDFILE:
	case ZT_NR_CONNECT:
	case ZT_NR_ACCEPT:
	case ZT_NR_ACCEPT4:
		break;
	default:
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	struct zt_task *t = bpf_task_storage_get(&tasks, task, 0, 0);
	if (!t || !t->call)
		return 0;
	__u8 call = t->call;
	t->call = 0;
	/* The state must be this call's: same syscall, same first two
	 * arguments (an entry whose exit was never seen, e.g. while the
	 * programs were being attached, must not describe a later call). */
	if (t->nr != nr || t->fd != (int)ZT_SYSCALL_ARG0_AT_EXIT(regs) || t->arg1 != ZT_SYSCALL_ARG1(regs))
		return 0;
	if (call == ZT_CALL_CONNECT) {
		if (ret != 0 && ret != -EINPROGRESS)
			return 0;
		if ((__u32)(bpf_get_current_pid_tgid() >> 32) == zt_agent_tgid)
			own_conn(task, t->fd);
		else
			conn_opened(task, t->fd, ZT_ROLE_CLIENT);
		return 0;
	}
	if (call == ZT_CALL_ACCEPT) {
		if (ret >= 0)
			conn_opened(task, (int)ret, ZT_ROLE_SERVER);
		return 0;
	}
	if (ret <= 0)
		return 0;
	struct zt_args a = {
		.sk = t->sk,
		.buf = t->buf,
		.enter_ns = t->enter_ns,
		.ret = ret,
		.fd = t->fd,
		.seq = t->seq,
		.iovcnt = t->iovcnt,
		.call = call,
		.direction = t->direction,
	};
	return emit_data(task, t, &a, (__u64)ret, call == ZT_CALL_SENDFILE ? ZT_SRC_SENDFILE : ZT_SRC_SYSCALL);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(zt_sched_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_struct *task = bpf_get_current_task_btf();
	/* A new program: tell the decoder about the thread again (its comm
	 * changed, and a thread other than the leader that execs takes the
	 * leader's tid). */
	struct zt_task *t = bpf_task_storage_get(&tasks, task, 0, 0);
	if (t) {
		t->announced = 0;
		t->verdict_gen = 0; /* a new program may match other filters */
	}
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&filter_gen, &zero);
	if (gen && *gen) {
		/* Both slots: a filter being written to the inactive one sees
		 * processes started meanwhile. */
		match_exec(0, task->tgid, task, bprm->file);
		match_exec(1, task->tgid, task, bprm->file);
	}
	struct zt_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return 0;
	}
	e->kind = ZT_EV_PROC_EXEC;
	e->pid = task->tgid;
	e->ppid = task->real_parent->tgid;
	e->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename) < 0)
		e->filename[0] = 0;
	unsigned long start = task->mm->arg_start;
	unsigned long end = task->mm->arg_end;
	__u64 len = end > start ? end - start : 0;
	if (len > ZT_ARGS_LEN)
		len = ZT_ARGS_LEN;
	if (len && bpf_probe_read_user(e->args, len, (void *)start))
		len = 0;
	e->args_len = len;
	/* Always wake the reader: it reads the new process's /proc entry
	 * (service name, runtime) while the process still lives, and a
	 * reader waiting for records to gather (batch.rs) ends its wait on
	 * a forced wake-up. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* Every exiting thread: the process's last one reports the process's
 * exit; a thread the decoder knows (it made traced calls) reports its own. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(zt_sched_exit, struct task_struct *p, bool group_dead)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	if (group_dead) {
		__u32 zero = 0;
		__u32 *gen = bpf_map_lookup_elem(&filter_gen, &zero);
		if (gen && *gen) {
			struct zt_pid_key k0 = { .slot = 0, .pid = id >> 32 };
			struct zt_pid_key k1 = { .slot = 1, .pid = id >> 32 };
			bpf_map_delete_elem(&proc_match, &k0);
			bpf_map_delete_elem(&proc_match, &k1);
		}
	} else {
		struct zt_task *t = bpf_task_storage_get(&tasks, task, 0, 0);
		if (!t || !t->announced)
			return 0;
		struct zt_thread_exit *x = bpf_ringbuf_reserve(&events, sizeof(*x), 0);
		if (!x) {
			count_drop(ZT_DROP_RINGBUF_CTRL);
			return 0;
		}
		x->kind = ZT_EV_THREAD_EXIT;
		x->pid = id >> 32;
		x->tid = (__u32)id;
		x->pad = 0;
		bpf_ringbuf_submit(x, rb_flags(sizeof(*x)));
		return 0;
	}
	struct zt_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return 0;
	}
	e->kind = ZT_EV_PROC_EXIT;
	e->pid = id >> 32;
	e->ppid = 0;
	e->args_len = 0;
	e->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	e->filename[0] = 0;
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
	return 0;
}

/* A new process (not a thread): it inherits its parent's comm/exe filter
 * matches, since it runs the same program until it execs. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(zt_sched_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0;
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&filter_gen, &zero);
	if (!gen || !*gen)
		return 0;
	inherit_match(0, parent->tgid, child->tgid);
	inherit_match(1, parent->tgid, child->tgid);
	return 0;
}

/* The peer ended a traced connection: a FIN (ESTABLISHED -> CLOSE_WAIT)
 * or a RST (-> CLOSE with ECONNRESET, or EPIPE once half-closed). Says how
 * far the peer's bytes go and how far the process had read them, so user
 * space ends a request only once its process has read all it could. */
static __always_inline void emit_conn_end(const struct sock *sk, struct zt_conn *c, __u8 how)
{
	struct zt_conn_end *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return;
	}
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
	e->kind = ZT_EV_CONN_END;
	e->how = how;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->conn_id = c->conn_id;
	e->ts = bpf_ktime_get_ns();
	/* A FIN takes one sequence number, counted in rcv_nxt already. */
	e->peer_end_seq = how == ZT_END_PEER_CLOSED ? rcv_nxt - 1 : rcv_nxt;
	e->read_seq = BPF_CORE_READ(tp, copied_seq);
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
}

/* TCP state changes of traced connections: the peer's FIN or RST (see
 * emit_conn_end), and TCP_CLOSE (whether or not its owner called close),
 * after which the decoder may forget the connection's addresses. Data read
 * later (what was queued before a reset) announces them again. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(zt_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate != TCP_CLOSE && newstate != TCP_CLOSE_WAIT)
		return 0;
	__u64 key = (__u64)sk;
	struct zt_conn *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	if (newstate == TCP_CLOSE_WAIT) {
		if (oldstate == TCP_ESTABLISHED)
			emit_conn_end(sk, c, ZT_END_PEER_CLOSED);
		return 0;
	}
	int err = sk->sk_err;
	if (oldstate != TCP_SYN_SENT && (err == ECONNRESET || err == EPIPE))
		emit_conn_end(sk, c, ZT_END_PEER_RESET);
	if (!c->announced)
		return 0;
	c->announced = 0;
	struct zt_conn_gone *g = bpf_ringbuf_reserve(&events, sizeof(*g), 0);
	if (!g) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return 0;
	}
	g->kind = ZT_EV_CONN_GONE;
	g->pad = 0;
	g->conn_id = c->conn_id;
	bpf_ringbuf_submit(g, rb_flags(sizeof(*g)));
	return 0;
}
