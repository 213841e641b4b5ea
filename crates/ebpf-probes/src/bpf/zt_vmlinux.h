/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * The few kernel types zt-trace's probes read, declared by hand.
 *
 * Every struct is marked preserve_access_index, so each field access is a
 * CO-RE relocation that the loader resolves against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux): the layout here does not need to match any
 * kernel, only the field names and types do. Only fields the probes read are
 * declared.
 */
#ifndef ZT_VMLINUX_H
#define ZT_VMLINUX_H
/* Tells bpf_tracing.h to use the kernel's pt_regs field names. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef unsigned short umode_t;
typedef _Bool bool;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	u16 sk_protocol;
	u16 sk_type;
	int sk_err;
};

struct tcp_sock {
	u32 rcv_nxt;
	u32 copied_seq;
	u32 write_seq;
};

struct proto_ops;
struct socket {
	short type;
	struct sock *sk;
	const struct proto_ops *ops;
};

struct super_block {
	unsigned int s_dev;
};

struct inode {
	umode_t i_mode;
	struct super_block *i_sb;
	unsigned long i_ino;
};

struct file_operations;
struct file {
	const struct file_operations *f_op;
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct thread_struct {
	unsigned long fsbase;
};

struct thread_info {
	__u32 status; /* x86: TS_COMPAT while in a 32-bit syscall */
};

struct task_struct {
	struct thread_info thread_info;
	pid_t pid;
	pid_t tgid;
	u64 start_time;
	u64 start_boottime;
	struct thread_struct thread;
	char comm[16];
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct files_struct *files;
	struct mm_struct *mm;
};

/* Register frames: the (u)probe context and the tp_btf/sys_enter|exit
 * argument. Relocated like the rest (field names only). */
#if defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
struct pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
	__u64 orig_x0;
	__s32 syscallno;
};
#else
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip;
	unsigned long flags, sp;
};
#endif

struct linux_binprm {
	struct file *file;
	const char *filename;
};

#pragma clang attribute pop

/* User-space ABI structs (stable layout, read with bpf_probe_read_user). */
struct iovec {
	void *iov_base;
	unsigned long iov_len;
};

struct user_msghdr {
	void *msg_name;
	int msg_namelen;
	struct iovec *msg_iov;
	unsigned long msg_iovlen;
};

/* Tracepoint contexts: fixed ABI of the trace event format files. */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

/* syscalls/sys_enter_* : args start at offset 16, each 8 bytes wide. */
struct zt_sys_enter {
	struct trace_entry ent;
	int syscall_nr;
	int pad;
	unsigned long args[6];
};

/* syscalls/sys_exit_* */
struct zt_sys_exit {
	struct trace_entry ent;
	int syscall_nr;
	int pad;
	long ret;
};

/* sched/sched_process_exec */
struct zt_sched_exec {
	struct trace_entry ent;
	unsigned int data_loc_filename;
	pid_t pid;
	pid_t old_pid;
};

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define EPIPE 32
#define ECONNRESET 104

#endif /* ZT_VMLINUX_H */
