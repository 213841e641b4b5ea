/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * zt-trace capture: TCP payload prefixes from socket syscalls, connection
 * lifecycle, and process exec/exit, sent to user space on one ring buffer.
 *
 * Cost discipline (see ARCHITECTURE.md, "Capture cost"): every syscall
 * tracepoint fires for every task, so the enter handlers reject early and
 * cheaply (own pid, pid filter, non-socket fd, non-TCP socket) before touching
 * any map; exit handlers only do a hash lookup unless the call was on a TCP
 * socket; payload is copied once into a per-CPU scratch buffer and only the
 * captured prefix is put on the ring; wake-ups are batched.
 */
#include "zt_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "zt_events.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before load (read-only at run time). */
volatile const __u32 zt_agent_tgid = 0;
volatile const __u32 zt_capture_max = 4096;     /* <= ZT_MAX_CAPTURE */
volatile const __u64 zt_wakeup_bytes = 1 << 18; /* wake the reader once this much is queued */
volatile const __u8 zt_filter_pids = 0;         /* trace only pids in pid_filter */

/* Internal call codes (not in data events). */
#define ZT_CALL_CONNECT 100
#define ZT_CALL_ACCEPT 101

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* A syscall in flight on a TCP socket, keyed by pid_tgid. */
struct zt_args {
	__u64 sk;
	__u64 buf; /* buffer, or iovec array when iovcnt > 0 */
	__u64 enter_ns;
	__s64 ret; /* set at exit, read by zt_emit */
	__u64 ssl; /* TLS: the SSL* */
	__s32 fd;
	__u32 seq;
	__u32 iovcnt;
	__u8 call;
	__u8 direction;
	__u8 source;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct zt_args);
} inflight SEC(".maps");

struct zt_conn {
	__u64 conn_id;
	__u8 role;
	__u8 tls; /* a TLS library call used this socket: its syscall bytes are ciphertext */
	__u8 pad[6];
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

/* Data event under construction: header, then the payload. Room for two
 * captures so the verifier can bound "offset + length" when gathering iovecs. */
struct zt_scratch {
	struct zt_data_event hdr;
	__u8 room[2 * ZT_MAX_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zt_scratch);
} scratch SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&drops, &reason);
	if (c)
		*c += 1;
}

/* Wake the reader with the first record put into an empty ring (the
 * reader drained everything and sleeps until data or its next deadline),
 * and with the record that makes the queued data cross zt_wakeup_bytes.
 * Nothing else wakes it: the reader drains until empty before it sleeps,
 * the ring buffer's poll reports queued data itself, and after a wake-up
 * the reader waits a short batching delay before draining again, so while
 * data flows most records find the ring non-empty and cost no wake-up.
 * Forcing one with every record while the reader lags would cost an
 * irq_work per syscall in the traced process, exactly when the host is
 * busiest. */
static __always_inline __u64 rb_flags(__u64 size)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (avail == 0)
		return BPF_RB_FORCE_WAKEUP;
	return avail < zt_wakeup_bytes && avail + size >= zt_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									   : BPF_RB_NO_WAKEUP;
}

/* Whether the current process is traced at all. */
static __always_inline bool traced(__u32 tgid)
{
	if (tgid == zt_agent_tgid)
		return false;
	if (zt_filter_pids && !bpf_map_lookup_elem(&pid_filter, &tgid))
		return false;
	return true;
}

/* fd of the current task -> its struct sock, if it is a TCP/IPv4-or-6 socket. */
static __always_inline struct sock *fd_to_tcp_sock(int fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = (struct socket *)BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	return sk;
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

static __always_inline int emit_data(struct zt_args *a, __u64 bytes, __u8 source)
{
	__u32 zero = 0;
	struct zt_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct zt_conn *conn = a->sk ? conn_of(a->sk) : NULL;
	/* Ciphertext: the plaintext comes from the TLS probes. */
	if (conn && conn->tls && source != ZT_SRC_TLS)
		return 0;

	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct zt_data_event *e = &s->hdr;
	e->kind = ZT_EV_DATA;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = a->fd;
	e->thread_start_ns = BPF_CORE_READ(task, start_time);
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
	e->ctx = current_ctx(id);
	e->task = go_current_task(id);
	if (a->sk)
		read_tuple((struct sock *)a->sk, &e->tuple);
	else
		__builtin_memset(&e->tuple, 0, sizeof(e->tuple));
	bpf_get_current_comm(&e->comm, sizeof(e->comm));

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
	/* The mask changes nothing (captured <= ZT_MAX_CAPTURE) but gives the
	 * verifier a bound it can see on the register it checks. */
	barrier_var(captured);
	__u32 size = sizeof(struct zt_data_event) + (captured & (2 * ZT_MAX_CAPTURE - 1));
	if (bpf_ringbuf_output(&events, s, size, rb_flags(size)))
		count_drop(ZT_DROP_RINGBUF_DATA);
	return 0;
}

static __always_inline void emit_conn(__u32 kind, struct sock *sk, int fd, __u64 conn_id, __u8 role, __u64 ssl)
{
	struct zt_conn_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return;
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
	read_tuple(sk, &e->tuple);
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
}

#include "tls_state.bpf.h"

static __always_inline int on_enter(int fd, __u64 buf, __u32 iovcnt, __u8 call, __u8 direction)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	struct sock *sk = fd_to_tcp_sock(fd);
	if (!sk)
		return 0;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct zt_args a = {
		.sk = (__u64)sk,
		.buf = buf,
		.enter_ns = bpf_ktime_get_ns(),
		.fd = fd,
		.iovcnt = iovcnt,
		.call = call,
		.direction = direction,
	};
	a.seq = direction == ZT_EGRESS ? BPF_CORE_READ(tp, write_seq) : BPF_CORE_READ(tp, copied_seq);
	tls_note_syscall(id, sk, fd, direction);
	if (bpf_map_update_elem(&inflight, &id, &a, BPF_ANY))
		count_drop(ZT_DROP_ARGS_FULL);
	return 0;
}

/* Slot 0: zt_emit. One program builds every data event, so the verifier
 * checks that code once instead of once per syscall exit. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} emit_prog SEC(".maps");

static __always_inline int on_exit(void *ctx, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct zt_args *p = bpf_map_lookup_elem(&inflight, &id);
	if (!p)
		return 0;
	if (ret <= 0 || p->call >= ZT_CALL_CONNECT) {
		bpf_map_delete_elem(&inflight, &id);
		return 0;
	}
	p->ret = ret;
	bpf_tail_call(ctx, &emit_prog, 0);
	/* Only reached if the tail call failed. */
	bpf_map_delete_elem(&inflight, &id);
	count_drop(ZT_DROP_TAIL_CALL);
	return 0;
}

/* Tail-called by the syscall exit programs; never attached itself. */
SEC("tracepoint/zt/emit")
int zt_emit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct zt_args *p = bpf_map_lookup_elem(&inflight, &id);
	if (!p)
		return 0;
	struct zt_args a = *p;
	bpf_map_delete_elem(&inflight, &id);
	if (a.ret <= 0)
		return 0;
	return emit_data(&a, (__u64)a.ret, a.call == ZT_CALL_SENDFILE ? ZT_SRC_SENDFILE : ZT_SRC_SYSCALL);
}

#include "tls.bpf.h"

static __always_inline __u32 msg_iov(__u64 msg, __u64 *iov)
{
	struct user_msghdr m = {};
	if (bpf_probe_read_user(&m, sizeof(m), (void *)msg))
		return 0;
	*iov = (__u64)m.msg_iov;
	return (__u32)m.msg_iovlen;
}

#define ENTER(name) SEC("tracepoint/syscalls/sys_enter_" #name) int zt_enter_##name(struct zt_sys_enter *ctx)
#define EXIT(name)                                                                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name) int zt_exit_##name(struct zt_sys_exit *ctx)       \
	{                                                                                            \
		return on_exit(ctx, ctx->ret);                                                       \
	}

ENTER(read) { return on_enter(ctx->args[0], ctx->args[1], 0, ZT_CALL_READ, ZT_INGRESS); }
EXIT(read)
ENTER(write) { return on_enter(ctx->args[0], ctx->args[1], 0, ZT_CALL_WRITE, ZT_EGRESS); }
EXIT(write)
ENTER(readv) { return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ZT_CALL_READV, ZT_INGRESS); }
EXIT(readv)
ENTER(writev) { return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ZT_CALL_WRITEV, ZT_EGRESS); }
EXIT(writev)
ENTER(recvfrom) { return on_enter(ctx->args[0], ctx->args[1], 0, ZT_CALL_RECVFROM, ZT_INGRESS); }
EXIT(recvfrom)
ENTER(sendto) { return on_enter(ctx->args[0], ctx->args[1], 0, ZT_CALL_SENDTO, ZT_EGRESS); }
EXIT(sendto)

ENTER(recvmsg)
{
	__u64 iov = 0;
	__u32 n = msg_iov(ctx->args[1], &iov);
	if (!n)
		return 0;
	return on_enter(ctx->args[0], iov, n, ZT_CALL_RECVMSG, ZT_INGRESS);
}
EXIT(recvmsg)

ENTER(sendmsg)
{
	__u64 iov = 0;
	__u32 n = msg_iov(ctx->args[1], &iov);
	if (!n)
		return 0;
	return on_enter(ctx->args[0], iov, n, ZT_CALL_SENDMSG, ZT_EGRESS);
}
EXIT(sendmsg)

/* sendfile(out_fd, in_fd, offset, count): bytes counted, never captured. */
ENTER(sendfile64) { return on_enter(ctx->args[0], 0, 0, ZT_CALL_SENDFILE, ZT_EGRESS); }
EXIT(sendfile64)

/* A new connection of the current task: record its role and announce it. */
static __always_inline void conn_opened(int fd, __u8 role)
{
	struct sock *sk = fd_to_tcp_sock(fd);
	if (!sk)
		return;
	__u64 key = (__u64)sk;
	struct zt_conn c = { .conn_id = new_conn_id(), .role = role };
	if (bpf_map_update_elem(&conns, &key, &c, BPF_ANY)) {
		count_drop(ZT_DROP_CONN_FULL);
		return;
	}
	emit_conn(ZT_EV_CONN_OPEN, sk, fd, c.conn_id, role, 0);
}

static __always_inline int lifecycle_enter(int fd, __u8 call)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	struct zt_args a = { .fd = fd, .call = call };
	if (bpf_map_update_elem(&inflight, &id, &a, BPF_ANY))
		count_drop(ZT_DROP_ARGS_FULL);
	return 0;
}

static __always_inline int lifecycle_exit(long ret, __u8 call)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct zt_args *p = bpf_map_lookup_elem(&inflight, &id);
	if (!p)
		return 0;
	struct zt_args a = *p;
	bpf_map_delete_elem(&inflight, &id);
	if (a.call != call)
		return 0;
	if (call == ZT_CALL_CONNECT && (ret == 0 || ret == -EINPROGRESS))
		conn_opened(a.fd, ZT_ROLE_CLIENT);
	else if (call == ZT_CALL_ACCEPT && ret >= 0)
		conn_opened((int)ret, ZT_ROLE_SERVER);
	return 0;
}

ENTER(connect) { return lifecycle_enter(ctx->args[0], ZT_CALL_CONNECT); }
SEC("tracepoint/syscalls/sys_exit_connect") int zt_exit_connect(struct zt_sys_exit *ctx)
{
	return lifecycle_exit(ctx->ret, ZT_CALL_CONNECT);
}
ENTER(accept) { return lifecycle_enter(-1, ZT_CALL_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept") int zt_exit_accept(struct zt_sys_exit *ctx)
{
	return lifecycle_exit(ctx->ret, ZT_CALL_ACCEPT);
}
ENTER(accept4) { return lifecycle_enter(-1, ZT_CALL_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept4") int zt_exit_accept4(struct zt_sys_exit *ctx)
{
	return lifecycle_exit(ctx->ret, ZT_CALL_ACCEPT);
}

ENTER(close)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id >> 32))
		return 0;
	int fd = ctx->args[0];
	struct sock *sk = fd_to_tcp_sock(fd);
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

SEC("tracepoint/sched/sched_process_exec")
int zt_sched_exec(struct zt_sched_exec *ctx)
{
	struct zt_proc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(ZT_DROP_RINGBUF_CTRL);
		return 0;
	}
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->kind = ZT_EV_PROC_EXEC;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	unsigned int off = ctx->data_loc_filename & 0xFFFF;
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + off) < 0)
		e->filename[0] = 0;
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	if (len > ZT_ARGS_LEN)
		len = ZT_ARGS_LEN;
	if (len && bpf_probe_read_user(e->args, len, (void *)start))
		len = 0;
	e->args_len = len;
	bpf_ringbuf_submit(e, rb_flags(sizeof(*e)));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int zt_sched_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id != (id >> 32)) /* only the thread-group leader */
		return 0;
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
