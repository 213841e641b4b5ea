/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * OpenSSL uprobes (1.1 and 3.x share these signatures), included by
 * capture.bpf.c:
 *   int SSL_write(SSL *s, const void *buf, int num);
 *   int SSL_read(SSL *s, void *buf, int num);
 *   int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written);
 *   int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *readbytes);
 *   int SSL_set_fd(SSL *s, int fd);  void SSL_free(SSL *s);
 * The plaintext goes out as ZT_SRC_TLS data events through zt_emit_tls.
 */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} emit_tls_prog SEC(".maps");

static __always_inline int tls_enter(struct pt_regs *ctx, __u8 direction, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!traced_now(bpf_get_current_task_btf(), tgid))
		return 0;
	struct zt_tls_args t = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.outlen = ex ? PT_REGS_PARM4(ctx) : 0,
		.enter_ns = bpf_ktime_get_ns(),
		.direction = direction,
		.ex = ex,
	};
	if (!zt_tls_seen)
		zt_tls_seen = 1;
	if (!bpf_map_lookup_elem(&tls_procs, &tgid)) {
		__u8 one = 1;
		bpf_map_update_elem(&tls_procs, &tgid, &one, BPF_ANY);
	}
	if (bpf_map_update_elem(&tls_inflight, &id, &t, BPF_ANY))
		count_drop(ZT_DROP_ARGS_FULL);
	return 0;
}

SEC("uprobe") int zt_ssl_write(struct pt_regs *ctx) { return tls_enter(ctx, ZT_EGRESS, 0); }
SEC("uprobe") int zt_ssl_write_ex(struct pt_regs *ctx) { return tls_enter(ctx, ZT_EGRESS, 1); }
SEC("uprobe") int zt_ssl_read(struct pt_regs *ctx) { return tls_enter(ctx, ZT_INGRESS, 0); }
SEC("uprobe") int zt_ssl_read_ex(struct pt_regs *ctx) { return tls_enter(ctx, ZT_INGRESS, 1); }

/* Return of any of the four calls. */
SEC("uretprobe") int zt_ssl_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct zt_tls_args *p = bpf_map_lookup_elem(&tls_inflight, &id);
	if (!p)
		return 0;
	struct zt_tls_args t = *p;
	bpf_map_delete_elem(&tls_inflight, &id);
	long rc = PT_REGS_RC(ctx);
	__u64 bytes = 0;
	if (t.ex) {
		if ((int)rc != 1 || bpf_probe_read_user(&bytes, sizeof(bytes), (void *)t.outlen))
			return 0;
	} else {
		if ((int)rc <= 0)
			return 0;
		bytes = (__u32)(int)rc;
	}
	if (!bytes)
		return 0;

	__u64 sk = t.sk;
	if (sk) {
		bind_ssl(tgid, t.ssl, sk);
	} else {
		struct zt_ssl_key k = { .tgid = tgid, .ssl = t.ssl };
		__u64 *known = bpf_map_lookup_elem(&ssl_socks, &k);
		if (known) {
			sk = *known;
		} else if (t.direction == ZT_INGRESS) {
			__u64 *last = bpf_map_lookup_elem(&last_read_sk, &id);
			if (last) {
				sk = *last;
				bind_ssl(tgid, t.ssl, sk);
			}
		} else {
			/* Bound (ZT_EV_TLS_BIND) at the thread's next socket write. */
			bpf_map_update_elem(&tls_pending_write, &id, &t.ssl, BPF_ANY);
		}
	}
	if (!sk)
		count_drop(ZT_DROP_TLS_UNBOUND);
	else if (!sock_traced((struct sock *)sk))
		return 0;
	struct zt_args a = {
		.sk = sk,
		.buf = t.buf,
		.enter_ns = t.enter_ns,
		.ret = bytes,
		.ssl = t.ssl,
		.fd = -1,
		.call = t.direction == ZT_EGRESS ? ZT_CALL_SSL_WRITE : ZT_CALL_SSL_READ,
		.direction = t.direction,
		.source = ZT_SRC_TLS,
	};
	if (bpf_map_update_elem(&inflight, &id, &a, BPF_ANY)) {
		count_drop(ZT_DROP_ARGS_FULL);
		return 0;
	}
	bpf_tail_call(ctx, &emit_tls_prog, 0);
	bpf_map_delete_elem(&inflight, &id);
	count_drop(ZT_DROP_TAIL_CALL);
	return 0;
}

/* Tail-called by zt_ssl_ret; never attached itself. */
SEC("uprobe/zt_emit_tls")
int zt_emit_tls(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct zt_args *p = bpf_map_lookup_elem(&inflight, &id);
	if (!p)
		return 0;
	struct zt_args a = *p;
	bpf_map_delete_elem(&inflight, &id);
	return emit_data(bpf_get_current_task_btf(), NULL, &a, (__u64)a.ret, ZT_SRC_TLS);
}

SEC("uprobe") int zt_ssl_set_fd(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced_now(bpf_get_current_task_btf(), id >> 32))
		return 0;
	struct sock *sk = fd_to_tcp_sock(bpf_get_current_task_btf(), (int)PT_REGS_PARM2(ctx));
	if (sk)
		bind_ssl(id >> 32, PT_REGS_PARM1(ctx), (__u64)sk);
	return 0;
}

SEC("uprobe") int zt_ssl_free(struct pt_regs *ctx)
{
	struct zt_ssl_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .ssl = PT_REGS_PARM1(ctx) };
	bpf_map_delete_elem(&ssl_socks, &k);
	return 0;
}
