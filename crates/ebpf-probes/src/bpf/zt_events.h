/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Records the probes put on the ring buffer. Shared by the C programs and
 * mirrored by #[repr(C)] structs in src/raw.rs, whose sizes and field
 * offsets are asserted by tests there: change both together (and bump
 * FORMAT_VERSION in src/record.rs).
 *
 * What does not change from one call to the next is sent once and kept by
 * the decoder (src/raw.rs, `Decoder`): a thread's comm and start time (a
 * zt_thread_info before the first data event of a thread, and again when
 * its comm changes; ZT_EV_THREAD_EXIT when it exits), and a connection's
 * addresses (its open record, or a zt_conn_info before its first data
 * event; ZT_EV_CONN_GONE when the socket reaches TCP_CLOSE). A data record
 * is therefore [zt_conn_info [zt_thread_info]] zt_data_event payload: the
 * prefixes, when present, are in the same record as the data, so they are
 * never lost apart from it.
 */
#ifndef ZT_EVENTS_H
#define ZT_EVENTS_H

#define ZT_MAX_CAPTURE 8192 /* upper bound of the per-call payload prefix; power of two (the per-CPU scratch holds 2x this plus the header, under the 32 KiB per-CPU value limit) */
#define ZT_MAX_IOV 1024      /* iovecs walked per vectored call (UIO_MAXIOV; gRPC C-core writes one slice per iovec) */
#define ZT_ARGS_LEN 512      /* bytes of argv kept per exec */
#define ZT_PATH_LEN 256

enum zt_event_kind {
	ZT_EV_DATA = 1,
	ZT_EV_CONN_OPEN = 2,
	ZT_EV_CONN_CLOSE = 3,
	ZT_EV_PROC_EXEC = 4,
	ZT_EV_PROC_EXIT = 5,
	ZT_EV_TLS_BIND = 6, /* a TLS session (SSL*) was bound to its socket late */
	ZT_EV_THREAD = 7,      /* zt_thread_info prefix of a data record */
	ZT_EV_CONN_INFO = 8,   /* zt_conn_info prefix of a data record */
	ZT_EV_THREAD_EXIT = 9, /* zt_thread_exit: forget a thread's info */
	ZT_EV_CONN_GONE = 10,  /* zt_conn_gone: forget a connection's info */
	ZT_EV_TASK_START = 11, /* a goroutine was created (go.bpf.h) */
	ZT_EV_TASK_END = 12,   /* a goroutine ended */
	ZT_EV_CONN_END = 13,   /* zt_conn_end: the peer closed (FIN) or reset (RST) a traced connection */
	ZT_EV_OWN_CONN = 14,   /* zt_conn_event: the agent itself connected (its addresses; never traced) */
};

enum zt_direction {
	ZT_EGRESS = 0,
	ZT_INGRESS = 1,
};

enum zt_role {
	ZT_ROLE_UNKNOWN = 0,
	ZT_ROLE_CLIENT = 1,
	ZT_ROLE_SERVER = 2,
};

enum zt_source {
	ZT_SRC_SYSCALL = 0,
	ZT_SRC_TLS = 1,
	ZT_SRC_SENDFILE = 2,
};

/* Which call produced a data event (diagnostics and tests). */
enum zt_call {
	ZT_CALL_READ = 1,
	ZT_CALL_WRITE,
	ZT_CALL_READV,
	ZT_CALL_WRITEV,
	ZT_CALL_RECVFROM,
	ZT_CALL_SENDTO,
	ZT_CALL_RECVMSG,
	ZT_CALL_SENDMSG,
	ZT_CALL_SENDFILE,
	ZT_CALL_SSL_READ,
	ZT_CALL_SSL_WRITE,
};

/* Indices of the per-CPU drop counters. */
enum zt_drop {
	ZT_DROP_RINGBUF_DATA = 0, /* data event lost: ring buffer full */
	ZT_DROP_RINGBUF_CTRL = 1, /* connection/process event lost: ring buffer full */
	ZT_DROP_ARGS_FULL = 2,    /* call not traced: no room for its state (task storage, TLS table) */
	ZT_DROP_CONN_FULL = 3,    /* connection table update failed */
	ZT_DROP_IOV_TRUNC = 4,    /* vectored call had more iovecs than walked (capture shortened) */
	ZT_DROP_READ_FAIL = 5,    /* user memory could not be read (capture lost) */
	ZT_DROP_TAIL_CALL = 6,    /* data event lost: the TLS emit program could not be reached */
	ZT_DROP_TLS_UNBOUND = 7,  /* TLS data whose socket could not be found */
	ZT_DROP_SCRATCH_BUSY = 8, /* data event lost: a preempted probe held the CPU's scratch buffer */
	ZT_DROP_FILTER_FULL = 9,  /* a process's comm/exe filter match could not be recorded */
	ZT_DROP_GO_UNTRACKED = 10, /* data event of a Go process from a goroutine without a task (born before the probes, or evicted) */
	ZT_DROP_MAX = 11,
};

struct zt_tuple {
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 lport;  /* host byte order */
	__u16 rport;  /* host byte order */
	__u16 pad;
	__u8 laddr[16]; /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
};

struct zt_data_event {
	__u32 kind; /* ZT_EV_DATA */
	__u32 pid;  /* tgid */
	__u32 tid;
	__s32 fd;
	__u64 conn_id; /* 0: no connection known (TLS data not yet bound) */
	__u64 enter_ns;
	__u64 exit_ns;
	__u64 bytes;    /* bytes the call transferred */
	__u32 seq;      /* TCP sequence of the first byte */
	__u32 captured; /* payload bytes that follow */
	__u8 direction;
	__u8 source;
	__u8 role;
	__u8 call;
	__u32 pad;
	__u64 ssl; /* TLS session (SSL*) for ZT_SRC_TLS, else 0 */
	__u64 ctx; /* execution context (pyctx.bpf.h) the call was made in, else 0 */
	__u64 task; /* goroutine task (go.bpf.h) the call was made for, else 0 */
	/* followed by `captured` payload bytes */
};

struct zt_task_event {
	__u32 kind; /* ZT_EV_TASK_START or ZT_EV_TASK_END */
	__u32 pid;  /* tgid */
	__u64 task;
	__u64 parent; /* ZT_EV_TASK_START: the creating goroutine's task, or 0 */
	__u64 ts;
};

/* Prefix: the thread of the data event that follows. */
struct zt_thread_info {
	__u32 kind; /* ZT_EV_THREAD */
	__u32 tid;
	__u64 start_ns; /* thread start time (monotonic ns) */
	char comm[16];
};

/* Prefix: the connection of the data event that follows (then a
 * zt_thread_info always follows too). */
struct zt_conn_info {
	__u32 kind; /* ZT_EV_CONN_INFO */
	__u32 pad;
	__u64 conn_id;
	struct zt_tuple tuple;
};

struct zt_thread_exit {
	__u32 kind; /* ZT_EV_THREAD_EXIT */
	__u32 pid;
	__u32 tid;
	__u32 pad;
};

enum zt_conn_end_how {
	ZT_END_PEER_CLOSED = 0,
	ZT_END_PEER_RESET = 1,
};

/* What the process could still read when the peer ended the connection:
 * bytes from read_seq up to peer_end_seq were received but not read yet. */
struct zt_conn_end {
	__u32 kind; /* ZT_EV_CONN_END */
	__u8 how;   /* enum zt_conn_end_how */
	__u8 pad[3];
	__u64 conn_id;
	__u64 ts;
	__u32 peer_end_seq; /* rcv_nxt, the FIN not counted */
	__u32 read_seq;     /* copied_seq */
};

struct zt_conn_gone {
	__u32 kind; /* ZT_EV_CONN_GONE */
	__u32 pad;
	__u64 conn_id;
};

struct zt_conn_event {
	__u32 kind; /* ZT_EV_CONN_OPEN, ZT_EV_CONN_CLOSE, ZT_EV_TLS_BIND or ZT_EV_OWN_CONN */
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u64 conn_id;
	__u64 ts;
	__u8 role;
	__u8 pad[7];
	struct zt_tuple tuple; /* zero in ZT_EV_CONN_CLOSE */
	__u64 ssl;             /* ZT_EV_TLS_BIND: the session bound to this connection */
};

struct zt_proc_event {
	__u32 kind; /* ZT_EV_PROC_EXEC or ZT_EV_PROC_EXIT */
	__u32 pid;
	__u32 ppid;
	__u32 args_len; /* bytes of args (NUL-separated argv) */
	__u64 ts;
	char comm[16];
	char filename[ZT_PATH_LEN];
	char args[ZT_ARGS_LEN];
};

#endif /* ZT_EVENTS_H */
