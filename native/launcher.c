/*
 * slipway-launcher — runs before Node for `slipway-slirp4netns --enable-sandbox/--enable-seccomp`.
 *
 * THEORY OF OPERATION
 * ===================
 * Node is multi-threaded from its first instruction: it can no longer setns(CLONE_NEWUSER), and a
 * mount namespace or capability set changed by one thread is not the other threads'.  So the
 * confinement slirp4netns applies to itself is applied here, in a small single-threaded program
 * that then execs Node, and everything Node starts inherits it.
 *
 *   bin/slipway-slirp4netns  ──exec──►  slipway-launcher PKGDIR NODE ENTRY [SLIRP4NETNS ARGS...]
 *
 * The launcher reads the slirp4netns command line with getopt_long (the same table slirp4netns
 * uses, so prefixes and permutation agree with the TypeScript front end) for four things only:
 * --enable-sandbox, --enable-seccomp, and the target (PID|PATH, --netns-type, --userns-path).
 * With neither flag it just execs Node.  Otherwise:
 *
 *  1. Rootless (euid != 0): join the target's user namespace (/proc/PID/ns/user, or
 *     --userns-path), as slirp4netns does, so that we may create a mount namespace.
 *  2. Fork the AGENT BROKER.  The namespace agent must setns() into the container's netns, which
 *     needs CAP_SYS_ADMIN over it and a view of /proc/PID/ns or the netns path — exactly what the
 *     sandbox takes away from Node.  The broker keeps them: it stays in the caller's mount
 *     namespace with the caller's capabilities (it is under the seccomp filter, though), and
 *     starts `slipway-agent` on request, but only for the target given on this command line.
 *  3. (--enable-sandbox) unshare(CLONE_NEWNS); make every mount private (MS_REC|MS_PRIVATE)
 *     BEFORE touching anything, so nothing propagates to the caller's namespace; build a new root
 *     on a tmpfs: /etc and /run bound from the host (as slirp4netns), read-only binds of /usr,
 *     /lib*, /bin, /sbin (node and the C libraries it links), node's own install prefix if it is
 *     elsewhere, the package directory, a /dev holding only null, zero, full, random, urandom;
 *     no /proc, no /home, no /tmp contents.  pivot_root into it and detach the old root.
 *     build/Release is bound at /.slipway/native with the launcher itself mounted over
 *     `slipway-agent`, and SLIPWAY_NATIVE_DIR points Node there: when Node "spawns the agent",
 *     it runs the launcher in CLIENT mode, which hands the agent's argv and fds to the broker.
 *     Then, when euid is 0 (real root, or root of Podman's rootless user namespace): drop every
 *     capability except CAP_NET_BIND_SERVICE (bounding, permitted, effective, inheritable, ambient).
 *  4. PR_SET_NO_NEW_PRIVS (always), then (--enable-seccomp) the BPF filter below.
 *  5. exec Node with SLIPWAY_LAUNCHER=sandbox,seccomp (what was done), SLIPWAY_BROKER and
 *     SLIPWAY_NATIVE_DIR.
 *
 * BROKER PROTOCOL.  Node closes inherited descriptors in the processes it spawns, so the broker
 * is reached by path: the launcher binds a SOCK_SEQPACKET listening socket at /.slipway/broker
 * inside the new root and hands the listening fd to the broker (fd passing works across mount
 * namespaces).  Per connection (peer uid must be ours, SO_PEERCRED):
 *   client → broker: one message "argv\0argv\0..." with 2 fds: [agent channel (its fd 3), stderr].
 *   broker: checks that the target arguments equal the launch target (--pid N, or --netns-path P
 *           [--userns-path U]), replaces --ppid with its own pid, forks + execs slipway-agent with
 *           fd 3 = channel, fd 2 = stderr; waits for it (pidfd) while watching the connection:
 *           if the client goes away the agent is killed.  Then it writes "exit N" / "signal N",
 *           which the client turns into its own exit status.
 *   The broker dies with the launcher's process (PR_SET_PDEATHSIG), the agent with the broker.
 *
 * SECCOMP FILTER (--enable-seccomp): native architecture only (anything else is killed, so the
 * i386/x32 syscall tables cannot be used to get around it); EPERM for mount, umount2,
 * pivot_root, move_mount, open_tree, fsopen, fsconfig, fsmount, fspick, chroot, ptrace,
 * process_vm_readv/writev, kexec_load, kexec_file_load, bpf, perf_event_open, init_module,
 * finit_module, delete_module, reboot, swapon, swapoff, acct, settimeofday, clock_settime,
 * clock_adjtime, adjtimex, syslog, quotactl, open_by_handle_at, name_to_handle_at, userfaultfd,
 * keyctl, add_key, request_key, unshare, iopl, ioperm, lookup_dcookie, vhangup,
 * mount_setattr, personality; ENOSYS for io_uring_setup/enter/register (libuv then falls back to
 * its thread pool).  Everything else Node and the agent use (setns included) stays allowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static const char *prog = "slipway-launcher";

/* Where the broker listens, as seen inside the sandbox. */
#define BROKER_PATH "/.slipway/broker"

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void die_errno(const char *fmt, ...) {
  int e = errno;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", prog);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, ": %s\n", strerror(e));
  va_end(ap);
  exit(1);
}

/* ------------------------------------------------------------------------------------------ */
/* the slirp4netns command line (only what the launcher needs)                                */

struct target {
  bool sandbox, seccomp;
  bool by_path;
  long pid;
  const char *path;        /* netns path (--netns-type=path) */
  const char *userns_path; /* --userns-path */
};

static void parse_slirp_args(int argc, char **argv, struct target *t) {
  static const struct option longopts[] = {
      {"configure", no_argument, NULL, 'c'},      {"exit-fd", required_argument, NULL, 'e'},
      {"ready-fd", required_argument, NULL, 'r'}, {"mtu", required_argument, NULL, 'm'},
      {"cidr", required_argument, NULL, 1},       {"disable-host-loopback", no_argument, NULL, 2},
      {"no-host-loopback", no_argument, NULL, 2}, {"netns-type", required_argument, NULL, 3},
      {"userns-path", required_argument, NULL, 4}, {"api-socket", required_argument, NULL, 'a'},
      {"enable-ipv6", no_argument, NULL, '6'},    {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},        {"enable-sandbox", no_argument, NULL, 5},
      {"create-sandbox", no_argument, NULL, 5},   {"enable-seccomp", no_argument, NULL, 6},
      {"outbound-addr", required_argument, NULL, 7}, {"outbound-addr6", required_argument, NULL, 7},
      {"disable-dns", no_argument, NULL, 7},      {"macaddress", required_argument, NULL, 7},
      {"target-type", required_argument, NULL, 7}, {NULL, 0, NULL, 0},
  };
  memset(t, 0, sizeof *t);
  const char *netns_type = "pid";
  opterr = 0; /* the TypeScript front end reports usage errors */
  optind = 1;
  int c;
  bool bail = false;
  while ((c = getopt_long(argc, argv, "ce:r:m:a:6hv", longopts, NULL)) != -1) {
    switch (c) {
    case 3: netns_type = optarg; break;
    case 4: t->userns_path = optarg; break;
    case 5: t->sandbox = true; break;
    case 6: t->seccomp = true; break;
    case 'h': case 'v': case '?': case ':': bail = true; break;
    default: break;
    }
  }
  if (bail) { t->sandbox = t->seccomp = false; return; } /* Node prints help/version/usage */
  if (optind >= argc) { t->sandbox = t->seccomp = false; return; }
  const char *first = argv[optind];
  /* A target the front end will reject: let Node (outside any sandbox) say why. The sandbox
   * hides these paths from Node, so they are checked here, before it is built. */
  if (t->userns_path && access(t->userns_path, F_OK) < 0) { t->sandbox = t->seccomp = false; return; }
  if (!strcmp(netns_type, "path")) {
    t->by_path = true;
    t->path = first;
    if (access(first, F_OK) < 0) { t->sandbox = t->seccomp = false; return; }
  } else {
    char *end = NULL;
    errno = 0;
    t->pid = strtol(first, &end, 10);
    if (errno || !end || *end || t->pid <= 0) { t->sandbox = t->seccomp = false; return; }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* seccomp                                                                                    */

#if defined(__x86_64__)
#define SLW_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SLW_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "slipway-launcher: add the AUDIT_ARCH of this architecture"
#endif

#define DENY(nr, err) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err))

static void install_seccomp(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SLW_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
      /* x32 ABI numbers have bit 30 set. */
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#endif
      DENY(__NR_mount, EPERM),
      DENY(__NR_umount2, EPERM),
      DENY(__NR_pivot_root, EPERM),
      DENY(__NR_chroot, EPERM),
#ifdef __NR_move_mount
      DENY(__NR_move_mount, EPERM),
      DENY(__NR_open_tree, EPERM),
      DENY(__NR_fsopen, EPERM),
      DENY(__NR_fsconfig, EPERM),
      DENY(__NR_fsmount, EPERM),
      DENY(__NR_fspick, EPERM),
#endif
#ifdef __NR_mount_setattr
      DENY(__NR_mount_setattr, EPERM),
#endif
      DENY(__NR_ptrace, EPERM),
      DENY(__NR_process_vm_readv, EPERM),
      DENY(__NR_process_vm_writev, EPERM),
      DENY(__NR_kexec_load, EPERM),
#ifdef __NR_kexec_file_load
      DENY(__NR_kexec_file_load, EPERM),
#endif
      DENY(__NR_bpf, EPERM),
      DENY(__NR_perf_event_open, EPERM),
      DENY(__NR_init_module, EPERM),
      DENY(__NR_finit_module, EPERM),
      DENY(__NR_delete_module, EPERM),
      DENY(__NR_reboot, EPERM),
      DENY(__NR_swapon, EPERM),
      DENY(__NR_swapoff, EPERM),
      DENY(__NR_acct, EPERM),
      DENY(__NR_settimeofday, EPERM),
      DENY(__NR_clock_settime, EPERM),
      DENY(__NR_clock_adjtime, EPERM),
      DENY(__NR_adjtimex, EPERM),
      DENY(__NR_syslog, EPERM),
      DENY(__NR_quotactl, EPERM),
      DENY(__NR_open_by_handle_at, EPERM),
      DENY(__NR_name_to_handle_at, EPERM),
      DENY(__NR_userfaultfd, EPERM),
      DENY(__NR_keyctl, EPERM),
      DENY(__NR_add_key, EPERM),
      DENY(__NR_request_key, EPERM),
      DENY(__NR_unshare, EPERM),
      DENY(__NR_personality, EPERM),
      DENY(__NR_vhangup, EPERM),
#if defined(__x86_64__)
      DENY(__NR_iopl, EPERM),
      DENY(__NR_ioperm, EPERM),
      DENY(__NR_lookup_dcookie, EPERM),
#endif
#ifdef __NR_io_uring_setup
      DENY(__NR_io_uring_setup, ENOSYS),
      DENY(__NR_io_uring_enter, ENOSYS),
      DENY(__NR_io_uring_register, ENOSYS),
#endif
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog_ = {.len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_errno("prctl(PR_SET_NO_NEW_PRIVS)");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog_) < 0) die_errno("seccomp(SECCOMP_SET_MODE_FILTER)");
}

/* ------------------------------------------------------------------------------------------ */
/* fd passing                                                                                 */

static ssize_t send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  union {
    char b[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.b;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t r;
  do r = sendmsg(sock, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r;
}

static ssize_t recv_with_fds(int sock, void *buf, size_t len, int *fds, int *nfds) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  union {
    char b[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
  ssize_t r;
  do r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  *nfds = 0;
  if (r < 0) return r;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*nfds < 4) fds[(*nfds)++] = fd;
      else close(fd);
    }
  }
  return r;
}

/* ------------------------------------------------------------------------------------------ */
/* broker                                                                                     */

#define MAX_ARGS 64

/* Does the agent argv name exactly the launch target? */
static bool target_matches(char **av, int ac, const struct target *t) {
  const char *pid = NULL, *netns = NULL, *userns = NULL;
  for (int i = 0; i + 1 < ac; i++) {
    if (!strcmp(av[i], "--pid")) pid = av[++i];
    else if (!strcmp(av[i], "--netns-path")) netns = av[++i];
    else if (!strcmp(av[i], "--userns-path")) userns = av[++i];
  }
  if (t->by_path) {
    if (pid || !netns || strcmp(netns, t->path)) return false;
    if (!!userns != !!t->userns_path) return false;
    return !userns || !strcmp(userns, t->userns_path);
  }
  char want[32];
  snprintf(want, sizeof want, "%ld", t->pid);
  return pid && !netns && !userns && !strcmp(pid, want);
}

static void serve_one(int reply, const char *agent_path, const struct target *t, char *buf, ssize_t n, int *fds, int nfds) {
  if (nfds != 2) {
    for (int i = 0; i < nfds; i++) close(fds[i]);
    return;
  }
  int chan = fds[0], err = fds[1];
  char *av[MAX_ARGS + 2];
  int ac = 0;
  av[ac++] = (char *)agent_path;
  buf[n] = 0;
  for (char *p = buf; p < buf + n && ac < MAX_ARGS; p += strlen(p) + 1) av[ac++] = p;
  av[ac] = NULL;
  char ppid[32];
  snprintf(ppid, sizeof ppid, "%d", (int)getpid());
  for (int i = 1; i + 1 < ac; i++)
    if (!strcmp(av[i], "--ppid")) av[i + 1] = ppid;
  char status[64];
  if (!target_matches(av + 1, ac - 1, t)) {
    dprintf(err, "%s: the sandboxed front end asked for an agent for another target than the command line's; refused\n", prog);
    snprintf(status, sizeof status, "exit 1");
    send(reply, status, strlen(status), MSG_NOSIGNAL);
    close(chan); close(err);
    return;
  }
  pid_t child = fork();
  if (child < 0) {
    snprintf(status, sizeof status, "exit 1");
    send(reply, status, strlen(status), MSG_NOSIGNAL);
    close(chan); close(err);
    return;
  }
  if (child == 0) {
    if (dup2(chan, 3) < 0 || dup2(err, 2) < 0) _exit(127);
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul >= 0) { dup2(nul, 0); dup2(nul, 1); }
    close(reply);
    execv(agent_path, av);
    dprintf(2, "%s: cannot run %s: %s\n", prog, agent_path, strerror(errno));
    _exit(127);
  }
  close(chan);
  close(err);
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  bool killed = false;
  while (pidfd >= 0) {
    /* Wait for the agent to exit; kill it if the client (Node's child) goes away first. */
    struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = reply, .events = POLLIN}};
    int r = poll(p, killed ? 1 : 2, -1);
    if (r < 0 && errno != EINTR) break;
    if (p[0].revents & POLLIN) break;
    if (!killed && (p[1].revents & (POLLHUP | POLLERR | POLLIN))) {
      kill(child, SIGKILL);
      killed = true;
    }
  }
  int ws = 0;
  while (waitpid(child, &ws, 0) < 0 && errno == EINTR) {}
  if (WIFSIGNALED(ws)) snprintf(status, sizeof status, "signal %d", WTERMSIG(ws));
  else snprintf(status, sizeof status, "exit %d", WEXITSTATUS(ws));
  send(reply, status, strlen(status), MSG_NOSIGNAL);
  if (pidfd >= 0) close(pidfd);
}

/*
 * The broker: receives the listening socket (bound inside the sandbox at BROKER_PATH) from the
 * launcher over `sync`, then serves one connection at a time: an agent request, then the wait.
 */
static void run_broker(int sync, const char *agent_path, const struct target *t, pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(1);
  prctl(PR_SET_NAME, "slipway-broker", 0, 0, 0);
  char b;
  int lfd[4], nl;
  if (recv_with_fds(sync, &b, 1, lfd, &nl) <= 0 || nl != 1) _exit(0); /* the launcher failed */
  close(sync);
  int lsock = lfd[0];
  for (;;) {
    int conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      _exit(1);
    }
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0 || cr.uid != geteuid()) {
      close(conn);
      continue;
    }
    char buf[8192];
    int fds[4], nfds;
    ssize_t n = recv_with_fds(conn, buf, sizeof buf - 1, fds, &nfds);
    if (n > 0) serve_one(conn, agent_path, t, buf, n, fds, nfds);
    else for (int i = 0; i < nfds; i++) close(fds[i]);
    close(conn);
  }
}

/* Client mode: we were exec'd by Node (inside the sandbox) as "slipway-agent ARGS". */
static int run_client(const char *broker_path, int argc, char **argv) {
  char buf[8192];
  size_t len = 0;
  for (int i = 1; i < argc; i++) {
    size_t l = strlen(argv[i]) + 1;
    if (len + l > sizeof buf) die("agent arguments too long");
    memcpy(buf + len, argv[i], l);
    len += l;
  }
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) die_errno("socket");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", broker_path);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die_errno("cannot reach the agent broker at %s", broker_path);
  int fds[2] = {3, 2};
  if (send_with_fds(s, buf, len, fds, 2) < 0) die_errno("cannot talk to the agent broker");
  close(3);
  char st[64];
  ssize_t n;
  do n = recv(s, st, sizeof st - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return 1;
  st[n] = 0;
  int v = 1;
  if (sscanf(st, "exit %d", &v) == 1) return v;
  if (sscanf(st, "signal %d", &v) == 1) {
    signal(v, SIG_DFL);
    raise(v);
    return 128 + v;
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* sandbox                                                                                    */

static void mkdir_p(const char *path, mode_t mode) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) die_errno("mkdir %s", tmp);
    *p = '/';
  }
  if (mkdir(tmp, mode) < 0 && errno != EEXIST) die_errno("mkdir %s", tmp);
}

static void touch(const char *path) {
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) die_errno("create %s", path);
  close(fd);
}

/* Bind `src` (a path, or /proc/self/fd/N) onto ROOT/dst, read-only if asked. */
static void bind_into(const char *root, const char *src, const char *dst, bool is_dir, bool ro) {
  char target[PATH_MAX];
  snprintf(target, sizeof target, "%s%s", root, dst);
  if (is_dir) mkdir_p(target, 0755);
  else {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", target);
    char *slash = strrchr(parent, '/');
    struct stat st;
    if (stat(target, &st) < 0) { /* a file already there (e.g. in a read-only bind) is mounted over as is */
      if (slash && slash != parent) { *slash = 0; mkdir_p(parent, 0755); }
      touch(target);
    }
  }
  if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0) die_errno("bind %s on %s", src, target);
  if (ro && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0) {
    /* Locked mounts (in a user namespace) may refuse the flag change; keep going without it. */
    if (errno != EPERM) die_errno("remount %s read-only", target);
  }
}

/* /lib, /lib64, /bin, /sbin: a symlink (merged /usr) is recreated, a directory is bound read-only. */
static void system_dir(const char *root, const char *dir) {
  struct stat st;
  if (lstat(dir, &st) < 0) return;
  char target[PATH_MAX];
  snprintf(target, sizeof target, "%s%s", root, dir);
  if (S_ISLNK(st.st_mode)) {
    char link[PATH_MAX];
    ssize_t n = readlink(dir, link, sizeof link - 1);
    if (n < 0) die_errno("readlink %s", dir);
    link[n] = 0;
    if (symlink(link, target) < 0 && errno != EEXIST) die_errno("symlink %s", target);
  } else if (S_ISDIR(st.st_mode)) {
    bind_into(root, dir, dir, true, true);
  }
}

/* Is `path` under `dir` (both absolute, canonical)? */
static bool under(const char *path, const char *dir) {
  size_t l = strlen(dir);
  return !strncmp(path, dir, l) && (path[l] == '/' || path[l] == 0);
}

static void drop_caps_but_net_bind(void) {
  for (int c = 0; c <= 63; c++) {
    if (c == CAP_NET_BIND_SERVICE) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) die_errno("prctl(PR_CAPBSET_DROP, %d)", c);
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  d[0].effective = d[0].permitted = d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
  if (syscall(SYS_capset, &h, d) < 0) die_errno("capset");
}

static void build_sandbox(const char *pkgdir, const char *node, const char *self, int broker_sync, char *native_dir_out, size_t native_dir_len) {
  char pkg_real[PATH_MAX], node_real[PATH_MAX], self_real[PATH_MAX];
  if (!realpath(pkgdir, pkg_real)) die_errno("package directory %s", pkgdir);
  if (!realpath(node, node_real)) die_errno("node %s", node);
  if (!realpath(self, self_real)) die_errno("launcher %s", self);
  char native_src[PATH_MAX];
  snprintf(native_src, sizeof native_src, "%s", self_real);
  *strrchr(native_src, '/') = 0; /* build/Release */
  if (unshare(CLONE_NEWNS) < 0) die_errno("unshare(CLONE_NEWNS)");
  /* First: nothing we do below may propagate to the caller's mount namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die_errno("make / private");

  /* Open every bind source (in the new namespace: binds need mounts of our own) before the
   * tmpfs covers /tmp, where the package may live. */
  int pkg_fd = open(pkg_real, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int native_fd = open(native_src, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int self_fd = open(self_real, O_PATH | O_CLOEXEC);
  char node_prefix[PATH_MAX];
  snprintf(node_prefix, sizeof node_prefix, "%s", node_real);
  for (int i = 0; i < 2; i++) { char *s = strrchr(node_prefix, '/'); if (s && s != node_prefix) *s = 0; }
  int node_fd = open(node_prefix, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (pkg_fd < 0 || native_fd < 0 || self_fd < 0 || node_fd < 0) die_errno("open bind sources");

  char root[] = "/tmp";
  if (mount("slipway-sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0) die_errno("mount tmpfs on %s", root);
  char fdpath[64];
  bind_into(root, "/etc", "/etc", true, false);
  bind_into(root, "/run", "/run", true, false);
  bind_into(root, "/usr", "/usr", true, true);
  system_dir(root, "/lib");
  system_dir(root, "/lib64");
  system_dir(root, "/lib32");
  system_dir(root, "/libx32");
  system_dir(root, "/bin");
  system_dir(root, "/sbin");
  if (!under(node_prefix, "/usr") && strcmp(node_prefix, "/")) {
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", node_fd);
    bind_into(root, fdpath, node_prefix, true, true);
  }
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", pkg_fd);
  bind_into(root, fdpath, pkg_real, true, true);
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", native_fd);
  bind_into(root, fdpath, "/.slipway/native", true, true);
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", self_fd);
  bind_into(root, fdpath, "/.slipway/native/slipway-agent", false, true);
  const char *devs[] = {"null", "zero", "full", "random", "urandom"};
  for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
    char d[64];
    snprintf(d, sizeof d, "/dev/%s", devs[i]);
    bind_into(root, d, d, false, false);
  }
  /* The broker's listening socket, bound inside the new root, handed to the broker (which lives
   * in the caller's mount namespace and accepts on it). */
  int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (ls < 0) die_errno("socket");
  struct sockaddr_un la = {.sun_family = AF_UNIX};
  snprintf(la.sun_path, sizeof la.sun_path, "%s%s", root, BROKER_PATH);
  if (bind(ls, (struct sockaddr *)&la, sizeof la) < 0 || listen(ls, 4) < 0) die_errno("broker socket %s", la.sun_path);
  if (send_with_fds(broker_sync, "L", 1, &ls, 1) < 0) die_errno("hand the socket to the broker");
  close(ls);
  close(broker_sync);
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/tmp", root);
  mkdir_p(p, 01777);
  snprintf(p, sizeof p, "%s/.oldroot", root);
  mkdir_p(p, 0700);
  if (syscall(SYS_pivot_root, root, p) < 0) die_errno("pivot_root");
  if (chdir("/") < 0) die_errno("chdir /");
  if (umount2("/.oldroot", MNT_DETACH) < 0) die_errno("detach the old root");
  rmdir("/.oldroot");
  /* The new root itself becomes read-only (its contents are the binds above). */
  mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  close(pkg_fd); close(native_fd); close(self_fd); close(node_fd);
  snprintf(native_dir_out, native_dir_len, "/.slipway/native");
}

static void join_userns(const struct target *t) {
  char path[PATH_MAX];
  if (t->userns_path) snprintf(path, sizeof path, "%s", t->userns_path);
  else if (!t->by_path) snprintf(path, sizeof path, "/proc/%ld/ns/user", t->pid);
  else die("--enable-sandbox as an unprivileged user needs the target's user namespace to create a mount namespace: give a PID (--netns-type=pid) or --userns-path");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die_errno("%s", path);
  struct stat a, b;
  if (fstat(fd, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
    close(fd);
    return;
  }
  if (setns(fd, CLONE_NEWUSER) < 0) die_errno("setns(CLONE_NEWUSER) into %s", path);
  close(fd);
}

int main(int argc, char **argv) {
  const char *broker_env = getenv("SLIPWAY_BROKER");
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (broker_env && !strcmp(base, "slipway-agent")) {
    prog = "slipway-agent (sandbox client)";
    return run_client(broker_env, argc, argv);
  }
  if (argc < 4) {
    fprintf(stderr, "usage: %s PKGDIR NODE ENTRY [SLIRP4NETNS ARGS...]\n", prog);
    return 2;
  }
  const char *pkgdir = argv[1], *node = argv[2], *entry = argv[3];
  /* argv for getopt: [argv0, slirp args...] */
  int sargc = argc - 3;
  char **sargv = calloc((size_t)sargc + 1, sizeof *sargv);
  if (!sargv) die("out of memory");
  sargv[0] = argv[0];
  for (int i = 1; i < sargc; i++) sargv[i] = argv[i + 3];
  struct target t;
  parse_slirp_args(sargc, sargv, &t);

  int nargc = argc - 1; /* node entry args... */
  char **nargv = calloc((size_t)nargc + 1, sizeof *nargv);
  if (!nargv) die("out of memory");
  nargv[0] = (char *)node;
  nargv[1] = (char *)entry;
  for (int i = 4; i < argc; i++) nargv[i - 2] = argv[i];
  nargv[nargc] = NULL;

  if (!t.sandbox && !t.seccomp) {
    execv(node, nargv);
    die_errno("exec %s", node);
  }

  char self[PATH_MAX];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl < 0) die_errno("readlink /proc/self/exe");
  self[sl] = 0;
  char agent_path[PATH_MAX];
  snprintf(agent_path, sizeof agent_path, "%s", self);
  snprintf(strrchr(agent_path, '/') + 1, sizeof agent_path - (size_t)(strrchr(agent_path, '/') + 1 - agent_path), "slipway-agent");

  if (t.sandbox && geteuid() != 0) join_userns(&t);

  char done[32] = "";
  char native_dir[PATH_MAX] = "";
  if (t.sandbox) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) die_errno("socketpair");
    pid_t parent = getpid();
    pid_t b = fork();
    if (b < 0) die_errno("fork");
    if (b == 0) {
      close(sv[0]);
      if (t.seccomp) install_seccomp();
      run_broker(sv[1], agent_path, &t, parent);
      _exit(0);
    }
    close(sv[1]);
    build_sandbox(pkgdir, node, self, sv[0], native_dir, sizeof native_dir);
    if (geteuid() == 0) drop_caps_but_net_bind();
    strcat(done, "sandbox");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_errno("prctl(PR_SET_NO_NEW_PRIVS)");
  if (t.seccomp) {
    install_seccomp();
    strcat(done, done[0] ? ",seccomp" : "seccomp");
  }
  setenv("SLIPWAY_LAUNCHER", done, 1);
  if (t.sandbox) {
    setenv("SLIPWAY_BROKER", BROKER_PATH, 1);
    setenv("SLIPWAY_NATIVE_DIR", native_dir, 1);
  }
  execv(node, nargv);
  die_errno("exec %s", node);
  return 1;
}
