/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * What differs between architectures for the raw syscall tracepoints
 * (tp_btf/sys_enter, tp_btf/sys_exit): syscall numbers, where the arguments
 * and the syscall number sit in the register frame, and how a 32-bit
 * (compat) syscall is recognised. build.rs defines __TARGET_ARCH_<arch> from
 * the Rust target.
 */
#ifndef ZT_ARCH_H
#define ZT_ARCH_H

#if defined(__TARGET_ARCH_x86)
#define ZT_NR_READ 0
#define ZT_NR_WRITE 1
#define ZT_NR_CLOSE 3
#define ZT_NR_READV 19
#define ZT_NR_WRITEV 20
#define ZT_NR_SENDFILE 40
#define ZT_NR_CONNECT 42
#define ZT_NR_ACCEPT 43
#define ZT_NR_SENDTO 44
#define ZT_NR_RECVFROM 45
#define ZT_NR_SENDMSG 46
#define ZT_NR_RECVMSG 47
#define ZT_NR_ACCEPT4 288
/* Syscall arguments as the sys_enter tracepoint sees the user frame. */
#define ZT_SYSCALL_ARG0(r) ((r)->di)
#define ZT_SYSCALL_ARG1(r) ((r)->si)
#define ZT_SYSCALL_ARG2(r) ((r)->dx)
#define ZT_SYSCALL_NR(r) ((r)->orig_ax)
/* The first argument as sys_exit sees the frame (x86_64 keeps it). */
#define ZT_SYSCALL_ARG0_AT_EXIT(r) ((r)->di)
/* TS_COMPAT: a 32-bit syscall, numbered from another table; the classic
 * syscall tracepoints skip those too. */
#define ZT_COMPAT_SYSCALL(task) ((task)->thread_info.status & 0x0002)
#elif defined(__TARGET_ARCH_arm64)
#define ZT_NR_READ 63
#define ZT_NR_WRITE 64
#define ZT_NR_CLOSE 57
#define ZT_NR_READV 65
#define ZT_NR_WRITEV 66
#define ZT_NR_SENDFILE 71
#define ZT_NR_CONNECT 203
#define ZT_NR_ACCEPT 202
#define ZT_NR_SENDTO 206
#define ZT_NR_RECVFROM 207
#define ZT_NR_SENDMSG 211
#define ZT_NR_RECVMSG 212
#define ZT_NR_ACCEPT4 242
#define ZT_SYSCALL_ARG0(r) ((r)->regs[0])
#define ZT_SYSCALL_ARG1(r) ((r)->regs[1])
#define ZT_SYSCALL_ARG2(r) ((r)->regs[2])
#define ZT_SYSCALL_NR(r) ((r)->syscallno)
/* x0 holds the return value at exit; the first argument is kept in orig_x0. */
#define ZT_SYSCALL_ARG0_AT_EXIT(r) ((r)->orig_x0)
/* AArch32 tasks: not handled (their syscall table differs); the probes
 * are only built for arm64 tasks' numbers. */
#define ZT_COMPAT_SYSCALL(task) 0
#else
#error "zt-trace's probes know the syscall numbers of x86_64 and arm64 only"
#endif

#endif /* ZT_ARCH_H */
