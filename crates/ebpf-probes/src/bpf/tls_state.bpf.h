/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * TLS session -> socket bookkeeping, included by capture.bpf.c (shares its
 * maps and helpers). The uprobes themselves are in tls.bpf.h.
 *
 * How an SSL* is bound to its socket, strongest first:
 *  - SSL_set_fd(ssl, fd): the socket behind fd;
 *  - a socket syscall made on the same thread *inside* SSL_read/SSL_write
 *    (OpenSSL's socket BIO reading or writing the ciphertext);
 *  - memory-BIO users (Node.js): the runtime feeds ciphertext it read itself,
 *    synchronously, before SSL_read, and writes SSL_write's ciphertext itself,
 *    synchronously, right after: the last socket read on the thread before
 *    SSL_read, or the next socket write after SSL_write, is the session's.
 * Bindings are forgotten at SSL_free, so a reused SSL* never inherits one.
 */

struct zt_tls_args {
	__u64 ssl;
	__u64 buf;
	__u64 outlen; /* size_t *written / *readbytes for the _ex calls */
	__u64 enter_ns;
	__u64 sk; /* set by a socket syscall nested in the call */
	__u8 direction;
	__u8 ex;
	__u8 pad[6];
};

struct zt_ssl_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl;
};

/* SSL call in flight, by pid_tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct zt_tls_args);
} tls_inflight SEC(".maps");

/* (tgid, SSL*) -> struct sock *. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct zt_ssl_key);
	__type(value, __u64);
} ssl_socks SEC(".maps");

/* Processes that called a TLS function: only they pay for the per-thread
 * bookkeeping below. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} tls_procs SEC(".maps");

/* pid_tgid -> SSL* written with no socket known yet (memory BIO). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} tls_pending_write SEC(".maps");

/* pid_tgid -> last TCP socket the thread read (TLS processes only). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} last_read_sk SEC(".maps");

static __always_inline void bind_ssl(__u32 tgid, __u64 ssl, __u64 sk)
{
	struct zt_ssl_key k = { .tgid = tgid, .ssl = ssl };
	bpf_map_update_elem(&ssl_socks, &k, &sk, BPF_ANY);
	struct zt_conn *c = conn_of(sk);
	if (c)
		c->tls = 1;
}

/* Called for every traced socket syscall entry. */
static __always_inline void tls_note_syscall(__u64 id, struct sock *sk, int fd, __u8 direction)
{
	__u32 tgid = id >> 32;
	if (!bpf_map_lookup_elem(&tls_procs, &tgid))
		return;
	struct zt_tls_args *t = bpf_map_lookup_elem(&tls_inflight, &id);
	if (t) {
		t->sk = (__u64)sk;
		return;
	}
	__u64 skv = (__u64)sk;
	if (direction == ZT_EGRESS) {
		__u64 *pending = bpf_map_lookup_elem(&tls_pending_write, &id);
		if (pending) {
			__u64 ssl = *pending;
			bpf_map_delete_elem(&tls_pending_write, &id);
			bind_ssl(tgid, ssl, skv);
			struct zt_conn *c = conn_of(skv);
			emit_conn(ZT_EV_TLS_BIND, sk, fd, c ? c->conn_id : 0, c ? c->role : ZT_ROLE_UNKNOWN, ssl);
		}
	} else {
		bpf_map_update_elem(&last_read_sk, &id, &skv, BPF_ANY);
	}
}
