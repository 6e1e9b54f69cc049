"""The RuntimeDefault seccomp profile of a pod, as Docker (moby) and containerd give it.

Kubernetes' ``RuntimeDefault`` is the container runtime's default profile; for Docker
and containerd that is moby's ``profiles/seccomp/default.json`` (Apache License 2.0,
moby/moby). This module restates that policy as data — the syscalls allowed to every
container, and the rules that depend on the container's capabilities, architecture and
kernel — and :func:`runtime_default` filters it the way moby does
(``profiles/seccomp/seccomp_linux.go``: a rule applies when the container has every
capability it ``includes`` and none it ``excludes``, on an included architecture, on a
kernel at least ``minKernel``) into the OCI runtime spec's ``linux.seccomp`` object.

What matters for a builder in a pod: ``unshare``, ``mount``, ``umount2``, ``setns`` and
``clone`` with any namespace flag are refused (EPERM) unless the container has
CAP_SYS_ADMIN; ``clone3`` fails with ENOSYS so that libc falls back to ``clone``;
``chroot`` needs CAP_SYS_CHROOT in the container's set; ``ptrace`` is allowed on
kernels 4.8 and later; ``seccomp`` (a process adding its own filter) is allowed.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALWAYS_ALLOWED", "Rule", "runtime_default"]

def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ALWAYS_ALLOWED: tuple[str, ...] = _words("""
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal
pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask
uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev
""")

# The namespace flags of clone(2): CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
CLONE_NAMESPACE_FLAGS = 0x7E020000
_EPERM = 1
_ENOSYS = 38
_AF_VSOCK = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    errno: int | None = None
    args: tuple[dict[str, Any], ...] = ()
    caps: frozenset[str] = frozenset()  # applies only when the container has all of these
    not_caps: frozenset[str] = frozenset()  # ... and none of these
    arches: frozenset[str] = frozenset()  # ... on one of these (Go names); empty: every architecture
    not_arches: frozenset[str] = frozenset()
    min_kernel: tuple[int, int] | None = None

    def applies(self, caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
        return (self.caps <= caps and not self.not_caps & caps
                and (not self.arches or arch in self.arches) and arch not in self.not_arches
                and (self.min_kernel is None or kernel >= self.min_kernel))

    def to_spec(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"names": list(self.names), "action": self.action}
        if self.errno is not None:
            entry["errnoRet"] = self.errno
        if self.args:
            entry["args"] = [dict(a) for a in self.args]
        return entry


def _cap(*names: str) -> frozenset[str]:
    return frozenset(names)


_S390 = frozenset({"s390", "s390x"})
RULES: tuple[Rule, ...] = (
    Rule(names=ALWAYS_ALLOWED),
    Rule(names=("process_vm_readv", "process_vm_writev", "ptrace"), min_kernel=(4, 8)),
    Rule(names=("socket",), args=({"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"},)),
    *(Rule(names=("personality",), args=({"index": 0, "value": v, "op": "SCMP_CMP_EQ"},))
      for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
    Rule(names=("sync_file_range2", "swapcontext"), arches=frozenset({"ppc64le"})),
    Rule(names=("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                "set_tls"), arches=frozenset({"arm", "arm64"})),
    Rule(names=("arch_prctl",), arches=frozenset({"amd64", "x32"})),
    Rule(names=("modify_ldt",), arches=frozenset({"amd64", "x32", "x86"})),
    Rule(names=("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"), arches=_S390),
    Rule(names=("riscv_flush_icache",), arches=frozenset({"riscv64"})),
    Rule(names=("open_by_handle_at",), caps=_cap("CAP_DAC_READ_SEARCH")),
    Rule(names=("bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                "umount2", "unshare"), caps=_cap("CAP_SYS_ADMIN")),
    Rule(names=("clone",), args=({"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                  "op": "SCMP_CMP_MASKED_EQ"},),
         not_caps=_cap("CAP_SYS_ADMIN"), not_arches=_S390),
    Rule(names=("clone",), args=({"index": 1, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                  "op": "SCMP_CMP_MASKED_EQ"},),
         arches=_S390, not_caps=_cap("CAP_SYS_ADMIN")),
    Rule(names=("clone3",), action="SCMP_ACT_ERRNO", errno=_ENOSYS, not_caps=_cap("CAP_SYS_ADMIN")),
    Rule(names=("reboot",), caps=_cap("CAP_SYS_BOOT")),
    Rule(names=("chroot",), caps=_cap("CAP_SYS_CHROOT")),
    Rule(names=("delete_module", "init_module", "finit_module"), caps=_cap("CAP_SYS_MODULE")),
    Rule(names=("acct",), caps=_cap("CAP_SYS_PACCT")),
    Rule(names=("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
         caps=_cap("CAP_SYS_PTRACE")),
    Rule(names=("iopl", "ioperm"), caps=_cap("CAP_SYS_RAWIO")),
    Rule(names=("settimeofday", "stime", "clock_settime", "clock_settime64"), caps=_cap("CAP_SYS_TIME")),
    Rule(names=("vhangup",), caps=_cap("CAP_SYS_TTY_CONFIG")),
    Rule(names=("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), caps=_cap("CAP_SYS_NICE")),
    Rule(names=("syslog",), caps=_cap("CAP_SYSLOG")),
    Rule(names=("bpf",), caps=_cap("CAP_BPF")),
    Rule(names=("perf_event_open",), caps=_cap("CAP_PERFMON")),
)

# Go's GOARCH for this machine, and the seccomp architectures the profile's archMap lists for it.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_ARCHES = {"amd64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
           "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Host:
    arch: str = field(default_factory=lambda: _GOARCH.get(platform.machine(), platform.machine()))
    kernel: tuple[int, int] = field(default_factory=lambda: _kernel(platform.release()))


def _kernel(release: str) -> tuple[int, int]:
    major, _, rest = release.partition(".")
    minor = "".join(c for c in rest.split(".")[0] if c.isdigit()) or "0"
    return int(major), int(minor)


def runtime_default(capabilities: Iterable[str], *, arch: str | None = None,
                    kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """``linux.seccomp`` of the runtime spec for a container with *capabilities* (its bounding set)."""
    host = _Host()
    goarch = arch or host.arch
    caps = frozenset(capabilities)
    rules = [r.to_spec() for r in RULES if r.applies(caps, goarch, kernel or host.kernel)]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": _EPERM,
            "architectures": _ARCHES.get(goarch, []), "syscalls": rules}
