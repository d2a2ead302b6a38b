/*
 * slipway-agent — the namespace agent.
 *
 * THEORY OF OPERATION
 * ===================
 * Node is multi-threaded, and a multi-threaded process can never setns(CLONE_NEWUSER).  So
 * slipway starts this tiny single-threaded helper.  It joins the target user namespace (when
 * needed) and network namespace, creates the tap device there, optionally configures lo and the
 * tap over rtnetlink, and passes the tap fd back to slipway with SCM_RIGHTS over an AF_UNIX
 * SOCK_SEQPACKET socket that slipway gives it as fd 3.  It then stays alive to create sockets
 * *inside* the netns on request (port forwarding needs them), until fd 3 closes or its parent
 * dies (PR_SET_PDEATHSIG; note the "parent" is the thread that spawned us, so slipway spawns
 * agents from its main thread).
 *
 * ARGV (agent mode)
 * -----------------
 *   slipway-agent [--ppid PID]
 *                 (--pid PID | --netns-path PATH [--userns-path PATH])
 *                 [--join-userns auto|never|always]            (default auto)
 *                 --ifname NAME --mtu N [--mac xx:xx:xx:xx:xx:xx] [--vnet-hdr]
 *                 [--configure --address A.B.C.D/N --gateway A.B.C.D]
 *
 *   --ppid          pid of the spawning process; if our parent is no longer that pid after
 *                   PR_SET_PDEATHSIG is armed, the parent is already gone and we exit.
 *                   (Without it, getppid() at start is compared with getppid() after prctl.)
 *   --join-userns   auto:   --pid: join /proc/PID/ns/user only when it differs from ours
 *                                  (st_dev/st_ino compare);
 *                           --netns-path: join only when --userns-path is given.
 *                   never:  never join a user namespace (e.g. root driving a root netns).
 *                   always: --pid: join /proc/PID/ns/user (skipped if it *is* ours);
 *                           --netns-path: --userns-path, or else the owning userns of the
 *                           netns (ioctl NS_GET_USERNS).
 *   Order: all namespace fds are opened first, then setns(userns), then setns(netns).
 *
 *   --vnet-hdr      IFF_VNET_HDR + TUNSETVNETHDRSZ 12 (virtio_net_hdr_mrg_rxbuf) and
 *                   TUNSETOFFLOAD(TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6): the guest may hand us frames
 *                   with partial checksums and TCP super-frames up to 64 KiB at any MTU.
 *   --configure     rtnetlink: lo up, address on the tap, tap up, default route via gateway.
 *                   Without it the tap is only created (left down), like slirp4netns.
 *   --no-ipv4       with --configure: no IPv4 address or route (--address/--gateway not needed).
 *   --ipv6 slaac|off  with --configure, before the tap goes up (sysctls of the tap, written
 *                   through /proc/sys/net/ipv6/conf/IFNAME, which shows our netns):
 *                   slaac: accept_ra=1, autoconf=1, accept_dad=0 — addresses come from slipway's
 *                   router advertisements; DAD is off because slipway is the only other node on
 *                   the link and never claims the guest's addresses, and it would delay the
 *                   link-local address (and so the router solicitation) by a second or more.
 *                   off: disable_ipv6=1.  A sysctl that cannot be written is not fatal: it is
 *                   reported in the hello as "ipv6note".
 *
 * Then ONE message is sent on fd 3:
 *   {"ok":true,"ifindex":N,"mac":"xx:xx:xx:xx:xx:xx","mtu":N}   + tap fd (SCM_RIGHTS)
 *   {"ok":false,"error":"<actionable message>","code":"ENOENT"}  and exit(1)
 *
 * Then requests, one flat JSON object per SEQPACKET message (strings and integers only):
 *   {"id":N,"op":"ping"}                                  -> {"id":N,"ok":true}
 *   {"id":N,"op":"addr6"}  -> {"id":N,"ok":true,"global":"ADDR"|"","tentative":0|1}: the tap's
 *        first global IPv6 address that is not tentative ("" when none yet), so slipway can wait
 *        for SLAAC before signalling ready.
 *   {"id":N,"op":"socket","family":4|6,"type":"stream"|"dgram",
 *    "bind":"addr","bindPort":N,"connect":"addr","port":N}
 *        -> {"id":N,"ok":true} + fd   (SOCK_NONBLOCK|SOCK_CLOEXEC, made inside the netns;
 *                                       non-blocking connect, EINPROGRESS counts as success)
 *        -> {"id":N,"ok":false,"error":"...","code":"ECONNREFUSED"}
 *   Garbage gets {"id":N|null,"ok":false,"error":"...","code":"EINVAL"}; never a crash.
 * EOF on fd 3 -> exit(0).
 * With --pid, the agent also watches the target with a pidfd: when the target process exits it
 * exits with code 10 (EXIT_TARGET_GONE), so slipway notices the container is gone (our own
 * presence in the netns would otherwise keep it alive).
 *
 * ARGV (hold mode, for `slipway run`)
 * -----------------------------------
 *   slipway-agent hold [--ppid PID] [--] CMD [ARGS...]
 *   unshare(CLONE_NEWUSER|CLONE_NEWNET); setgroups "deny"; uid_map "0 <uid> 1";
 *   gid_map "0 <gid> 1"; write "R" on fd 3; block until "G" arrives on fd 3 (slipway attached
 *   an agent with --pid and configured the network); close fd 3; execvp(CMD).
 *   On failure before exec: writes "E<message>\n" on fd 3 (and stderr) and exits 1.
 *   EOF on fd 3 before "G": exit 1.  execvp failure: message on stderr, exit 127 (not found) or
 *   126.  PR_SET_PDEATHSIG(SIGKILL) stays armed across exec: the command dies with slipway.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/nsfs.h>

#define CHAN_FD 3
#define EXIT_TARGET_GONE 10

static int target_pidfd = -1;

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                              */

static const char *errcode(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "EIO";
}

/* Append JSON-escaped s to out (bounded). */
static void json_str(char *out, size_t cap, const char *s) {
  size_t n = strlen(out);
  if (n + 1 >= cap) return;
  out[n++] = '"';
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
    else if (c < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    else out[n++] = (char)c;
  }
  if (n + 1 < cap) out[n++] = '"';
  out[n] = 0;
}

static int send_msg(const char *json, int fd) {
  struct iovec iov = { .iov_base = (void *)json, .iov_len = strlen(json) };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  ssize_t r;
  do r = sendmsg(CHAN_FD, &mh, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : 0;
}

/* Setup failure: report on fd 3 and exit 1. */
__attribute__((noreturn, format(printf, 2, 3)))
static void fail(int err, const char *fmt, ...) {
  char msg[1024], out[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  strcpy(out, "{\"ok\":false,\"error\":");
  json_str(out, sizeof out, msg);
  strcat(out, ",\"code\":");
  json_str(out, sizeof out, errcode(err));
  strcat(out, "}");
  if (send_msg(out, -1) < 0) fprintf(stderr, "slipway-agent: %s\n", msg);
  _exit(1);
}

static int parse_int(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static pid_t parent_pid;

/* Arm PDEATHSIG, then make sure the parent did not already go away. */
static void die_with_parent(long ppid_arg) {
  pid_t before = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) _exit(1);
  parent_pid = ppid_arg > 0 ? (pid_t)ppid_arg : before;
  if (getppid() != parent_pid) _exit(1);
}

/* ------------------------------------------------------------------------------------------ */
/* rtnetlink (family-generic so IPv6 address/route can be added later)                        */

struct nlreq {
  struct nlmsghdr nh;
  char buf[512];
};

static int nl_fd = -1;
static uint32_t nl_seq = 1;

static void nl_attr(struct nlreq *r, unsigned short type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)&r->nh + NLMSG_ALIGN(r->nh.nlmsg_len));
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  memcpy(RTA_DATA(a), data, len);
  r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Send one request with NLM_F_ACK; return 0 or -errno. */
static int nl_talk(struct nlreq *r) {
  if (nl_fd < 0) {
    nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl_fd < 0) return -errno;
  }
  r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  r->nh.nlmsg_seq = ++nl_seq;
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  if (sendto(nl_fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) return -errno;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(nl_fd, buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; return -errno; }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != r->nh.nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error; /* 0 = ack */
      }
    }
  }
}

static int nl_link_up(int ifindex) {
  struct nlreq r;
  memset(&r, 0, sizeof r);
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_NEWLINK;
  struct ifinfomsg *ifi = NLMSG_DATA(&r.nh);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return nl_talk(&r);
}

/* Frames the tap queues toward us (txqueuelen; the kernel default is 1000). */
#define TAP_TXQLEN 10000

/* A deep tap queue: the guest's bursts toward us wait in it instead of being dropped (loss the
 * container's TCP would see). rtnetlink, not SIOCSIFTXQLEN: the ioctl wants CAP_NET_ADMIN in the
 * initial user namespace. Best effort (the default queue still works). */
static int nl_link_txqlen(int ifindex, uint32_t qlen) {
  struct nlreq r;
  memset(&r, 0, sizeof r);
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  r.nh.nlmsg_type = RTM_NEWLINK;
  struct ifinfomsg *ifi = NLMSG_DATA(&r.nh);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  nl_attr(&r, IFLA_TXQLEN, &qlen, sizeof qlen);
  return nl_talk(&r);
}

static int nl_addr_add(int ifindex, int family, const void *addr, int prefix) {
  size_t alen = family == AF_INET ? 4 : 16;
  struct nlreq r;
  memset(&r, 0, sizeof r);
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  r.nh.nlmsg_type = RTM_NEWADDR;
  r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  struct ifaddrmsg *ifa = NLMSG_DATA(&r.nh);
  ifa->ifa_family = (unsigned char)family;
  ifa->ifa_prefixlen = (unsigned char)prefix;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = (unsigned)ifindex;
  nl_attr(&r, IFA_LOCAL, addr, alen);
  nl_attr(&r, IFA_ADDRESS, addr, alen);
  if (family == AF_INET) {
    uint32_t a, mask = prefix ? htonl(~0u << (32 - prefix)) : 0, brd;
    memcpy(&a, addr, 4);
    brd = a | ~mask;
    if (prefix < 31) nl_attr(&r, IFA_BROADCAST, &brd, 4);
  }
  return nl_talk(&r);
}

static int nl_default_route(int ifindex, int family, const void *gw) {
  size_t alen = family == AF_INET ? 4 : 16;
  struct nlreq r;
  memset(&r, 0, sizeof r);
  r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  r.nh.nlmsg_type = RTM_NEWROUTE;
  r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  struct rtmsg *rt = NLMSG_DATA(&r.nh);
  rt->rtm_family = (unsigned char)family;
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_BOOT;
  rt->rtm_scope = RT_SCOPE_UNIVERSE;
  rt->rtm_type = RTN_UNICAST;
  rt->rtm_dst_len = 0;
  uint32_t oif = (uint32_t)ifindex;
  nl_attr(&r, RTA_GATEWAY, gw, alen);
  nl_attr(&r, RTA_OIF, &oif, sizeof oif);
  return nl_talk(&r);
}

/* ------------------------------------------------------------------------------------------ */
/* agent mode                                                                                 */

struct opts {
  long ppid;
  long pid;
  const char *netns_path, *userns_path;
  enum { JOIN_AUTO, JOIN_NEVER, JOIN_ALWAYS } join;
  const char *ifname;
  long mtu;
  const char *mac;
  bool vnet_hdr;
  bool configure;
  const char *address; /* A.B.C.D/N */
  const char *gateway;
  bool no_ipv4;
  enum { IPV6_LEAVE, IPV6_SLAAC, IPV6_OFF } ipv6;
};

static int tap_ifindex = -1;
static char ipv6_note[160];

static void usage_fail(const char *what) { fail(EINVAL, "slipway-agent: %s", what); }

static void parse_args(int argc, char **argv, struct opts *o) {
  memset(o, 0, sizeof *o);
  o->mtu = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) fail(EINVAL, "slipway-agent: %s needs a value", a); i++; } while (0)
    if (!strcmp(a, "--ppid")) { NEEDV(); if (parse_int(v, 1, INT_MAX, &o->ppid)) usage_fail("bad --ppid"); }
    else if (!strcmp(a, "--pid")) { NEEDV(); if (parse_int(v, 1, INT_MAX, &o->pid)) fail(EINVAL, "invalid --pid %s", v); }
    else if (!strcmp(a, "--netns-path")) { NEEDV(); o->netns_path = v; }
    else if (!strcmp(a, "--userns-path")) { NEEDV(); o->userns_path = v; }
    else if (!strcmp(a, "--join-userns")) {
      NEEDV();
      if (!strcmp(v, "auto")) o->join = JOIN_AUTO;
      else if (!strcmp(v, "never")) o->join = JOIN_NEVER;
      else if (!strcmp(v, "always")) o->join = JOIN_ALWAYS;
      else fail(EINVAL, "--join-userns must be auto, never or always (got %s)", v);
    }
    else if (!strcmp(a, "--ifname")) { NEEDV(); o->ifname = v; }
    else if (!strcmp(a, "--mtu")) { NEEDV(); if (parse_int(v, 68, 65535, &o->mtu)) fail(EINVAL, "invalid --mtu %s (68..65535)", v); }
    else if (!strcmp(a, "--mac")) { NEEDV(); o->mac = v; }
    else if (!strcmp(a, "--vnet-hdr")) o->vnet_hdr = true;
    else if (!strcmp(a, "--configure")) o->configure = true;
    else if (!strcmp(a, "--address")) { NEEDV(); o->address = v; }
    else if (!strcmp(a, "--gateway")) { NEEDV(); o->gateway = v; }
    else if (!strcmp(a, "--no-ipv4")) o->no_ipv4 = true;
    else if (!strcmp(a, "--ipv6")) {
      NEEDV();
      if (!strcmp(v, "slaac")) o->ipv6 = IPV6_SLAAC;
      else if (!strcmp(v, "off")) o->ipv6 = IPV6_OFF;
      else fail(EINVAL, "--ipv6 must be slaac or off (got %s)", v);
    }
    else fail(EINVAL, "slipway-agent: unknown argument %s", a);
#undef NEEDV
  }
  if (!o->pid == !o->netns_path) usage_fail("exactly one of --pid or --netns-path is required");
  if (o->userns_path && !o->netns_path) usage_fail("--userns-path goes with --netns-path");
  if (!o->ifname || !*o->ifname) usage_fail("--ifname is required");
  if (strlen(o->ifname) >= IFNAMSIZ) fail(EINVAL, "interface name %s is too long (max %d characters)", o->ifname, IFNAMSIZ - 1);
  if (o->mtu < 0) usage_fail("--mtu is required");
  if (o->configure && !o->no_ipv4 && (!o->address || !o->gateway)) usage_fail("--configure needs --address A.B.C.D/N and --gateway A.B.C.D");
}

static int parse_mac(const char *s, unsigned char m[6]) {
  unsigned v[6];
  char tail;
  if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return -1;
  for (int i = 0; i < 6; i++) { if (v[i] > 255) return -1; m[i] = (unsigned char)v[i]; }
  if (m[0] & 1) return -1; /* multicast */
  return 0;
}

static int open_ns(const char *path, const char *kind, long pid) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return fd;
  int e = errno;
  if (pid) {
    if (e == ENOENT || e == ESRCH)
      fail(e, "cannot open %s: no such process (is PID %ld running?)", path, pid);
    if (e == EACCES || e == EPERM)
      fail(e, "cannot open %s: permission denied (PID %ld belongs to another user? run slipway as the user who owns the container)", path, pid);
  } else {
    if (e == ENOENT) fail(e, "%s path %s does not exist", kind, path);
    if (e == EACCES || e == EPERM) fail(e, "cannot open %s path %s: permission denied", kind, path);
  }
  fail(e, "cannot open %s: %s", path, strerror(e));
}

static bool same_file(int a, int b) {
  struct stat sa, sb;
  if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void describe_target(const struct opts *o, char *buf, size_t cap) {
  if (o->pid) snprintf(buf, cap, "PID %ld", o->pid);
  else snprintf(buf, cap, "%s", o->netns_path);
}

static void join_namespaces(const struct opts *o) {
  char path[PATH_MAX], target[PATH_MAX + 16];
  describe_target(o, target, sizeof target);
  int netfd, userfd = -1;

  if (o->pid) {
#ifdef SYS_pidfd_open
    target_pidfd = (int)syscall(SYS_pidfd_open, (pid_t)o->pid, 0); /* -1 on old kernels: no watch */
    if (target_pidfd >= 0) fcntl(target_pidfd, F_SETFD, FD_CLOEXEC);
#endif
    snprintf(path, sizeof path, "/proc/%ld/ns/net", o->pid);
    netfd = open_ns(path, "netns", o->pid);
    if (o->join != JOIN_NEVER) {
      snprintf(path, sizeof path, "/proc/%ld/ns/user", o->pid);
      userfd = open_ns(path, "userns", o->pid);
    }
  } else {
    struct stat st;
    if (stat(o->netns_path, &st) < 0 && errno == ENOENT) fail(ENOENT, "netns path %s does not exist", o->netns_path);
    netfd = open_ns(o->netns_path, "netns", 0);
    if (o->join != JOIN_NEVER) {
      if (o->userns_path) userfd = open_ns(o->userns_path, "userns", 0);
      else if (o->join == JOIN_ALWAYS) {
        userfd = ioctl(netfd, NS_GET_USERNS);
        if (userfd < 0) fail(errno, "cannot find the user namespace owning netns %s: %s", o->netns_path, strerror(errno));
      }
    }
  }

  if (userfd >= 0) {
    int self = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    if (self >= 0 && same_file(self, userfd)) { close(userfd); userfd = -1; } /* already there */
    if (self >= 0) close(self);
  }

  if (userfd >= 0) {
    if (setns(userfd, CLONE_NEWUSER) < 0) {
      int e = errno;
      if (e == EPERM || e == EACCES)
        fail(e, "cannot join user namespace of %s: permission denied (run slipway as the user who owns the container)", target);
      fail(e, "cannot join user namespace of %s: %s", target, strerror(e));
    }
    close(userfd);
    /* Joining a userns changes our credentials, which clears the parent-death signal: re-arm. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent_pid) _exit(1);
  }
  if (setns(netfd, CLONE_NEWNET) < 0) {
    int e = errno;
    if (e == EPERM || e == EACCES)
      fail(e, "cannot join network namespace of %s: permission denied (%s)", target,
           userfd < 0 && o->join != JOIN_ALWAYS
               ? "it belongs to another user namespace: join it with --join-userns always or --userns-path"
               : "run slipway as the user who owns the container");
    if (e == EINVAL) fail(e, "%s is not a network namespace", o->pid ? path : o->netns_path);
    fail(e, "cannot join network namespace of %s: %s", target, strerror(e));
  }
  close(netfd);
}

static int open_tap(const struct opts *o, uid_t outer_uid) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
      fail(e, "/dev/net/tun is missing (%s): load the tun module (modprobe tun) or, in a container, pass --device /dev/net/tun", strerror(e));
    if (e == EACCES || e == EPERM)
      fail(e, "permission denied opening /dev/net/tun: it must be readable and writable by uid %u (mode 0666 on most desktop distributions)", (unsigned)outer_uid);
    fail(e, "cannot open /dev/net/tun: %s", strerror(e));
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (o->vnet_hdr ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, o->ifname, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    if (e == EBUSY)
      fail(e, "tap name %s is already in use in the target namespace", o->ifname);
    if (e == EINVAL)
      fail(e, "cannot create tap %s: an interface with that name already exists in the target namespace and is not a tap (or the name is invalid)", o->ifname);
    if (e == EPERM || e == EACCES)
      fail(e, "permission denied creating tap %s: CAP_NET_ADMIN is needed in the user namespace that owns the netns (use --join-userns always or --userns-path)", o->ifname);
    fail(e, "cannot create tap %s (TUNSETIFF): %s", o->ifname, strerror(e));
  }
  if (o->vnet_hdr) {
    int sz = 12; /* struct virtio_net_hdr_mrg_rxbuf */
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) fail(errno, "TUNSETVNETHDRSZ failed: %s", strerror(errno));
    /* We accept partial checksums and TCP super-frames from the guest; see native/tap.c. */
    unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if (ioctl(fd, TUNSETOFFLOAD, off) < 0) fail(errno, "TUNSETOFFLOAD failed: %s", strerror(errno));
  }
  return fd;
}

struct link_info { int ifindex; unsigned char mac[6]; int mtu; };

static void setup_link(const struct opts *o, struct link_info *li) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail(errno, "socket(AF_INET) in the target netns failed: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, o->ifname, IFNAMSIZ - 1);
  ifr.ifr_mtu = (int)o->mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) fail(errno, "cannot set MTU %ld on %s: %s", o->mtu, o->ifname, strerror(errno));
  if (o->mac) {
    unsigned char m[6];
    if (parse_mac(o->mac, m) < 0) fail(EINVAL, "invalid MAC address %s (want xx:xx:xx:xx:xx:xx, unicast)", o->mac);
    memset(&ifr.ifr_hwaddr, 0, sizeof ifr.ifr_hwaddr);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, m, 6);
    if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) fail(errno, "cannot set MAC %s on %s: %s", o->mac, o->ifname, strerror(errno));
  }
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) fail(errno, "SIOCGIFINDEX %s: %s", o->ifname, strerror(errno));
  li->ifindex = ifr.ifr_ifindex;
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) fail(errno, "SIOCGIFHWADDR %s: %s", o->ifname, strerror(errno));
  memcpy(li->mac, ifr.ifr_hwaddr.sa_data, 6);
  if (ioctl(s, SIOCGIFMTU, &ifr) < 0) fail(errno, "SIOCGIFMTU %s: %s", o->ifname, strerror(errno));
  li->mtu = ifr.ifr_mtu;
  close(s);
}

/* Write an IPv6 sysctl of the tap; on failure remember why (the hello reports it). */
static void ipv6_sysctl(const char *ifname, const char *name, const char *value) {
  char path[128];
  snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/%s", ifname, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  int e = 0;
  if (fd < 0) e = errno;
  else {
    if (write(fd, value, strlen(value)) < 0) e = errno;
    close(fd);
  }
  if (e && !ipv6_note[0]) snprintf(ipv6_note, sizeof ipv6_note, "cannot write %s: %s", path, strerror(e));
}

static void configure_ipv6(const struct opts *o) {
  if (o->ipv6 == IPV6_SLAAC) {
    ipv6_sysctl(o->ifname, "disable_ipv6", "0");
    ipv6_sysctl(o->ifname, "accept_ra", "1");
    ipv6_sysctl(o->ifname, "autoconf", "1");
    ipv6_sysctl(o->ifname, "accept_dad", "0");
  } else if (o->ipv6 == IPV6_OFF) {
    ipv6_sysctl(o->ifname, "disable_ipv6", "1");
  }
}

static void configure(const struct opts *o, const struct link_info *li) {
  int r;
  int lo = (int)if_nametoindex("lo");
  if (lo > 0 && (r = nl_link_up(lo)) < 0) fail(-r, "cannot bring lo up: %s", strerror(-r));
  configure_ipv6(o);
  if (o->no_ipv4) {
    if ((r = nl_link_up(li->ifindex)) < 0) fail(-r, "cannot bring %s up: %s", o->ifname, strerror(-r));
    return;
  }
  char abuf[64];
  snprintf(abuf, sizeof abuf, "%s", o->address);
  char *slash = strchr(abuf, '/');
  long prefix = 24;
  if (slash) {
    *slash = 0;
    if (parse_int(slash + 1, 0, 32, &prefix)) fail(EINVAL, "invalid prefix length in --address %s", o->address);
  }
  struct in_addr addr, gw;
  if (inet_pton(AF_INET, abuf, &addr) != 1) fail(EINVAL, "invalid --address %s (want A.B.C.D/N)", o->address);
  if (inet_pton(AF_INET, o->gateway, &gw) != 1) fail(EINVAL, "invalid --gateway %s (want A.B.C.D)", o->gateway);

  if ((r = nl_addr_add(li->ifindex, AF_INET, &addr, (int)prefix)) < 0)
    fail(-r, "cannot add address %s to %s: %s", o->address, o->ifname, strerror(-r));
  if ((r = nl_link_up(li->ifindex)) < 0) fail(-r, "cannot bring %s up: %s", o->ifname, strerror(-r));
  if ((r = nl_default_route(li->ifindex, AF_INET, &gw)) < 0) {
    if (r == -EEXIST) fail(-r, "cannot add default route via %s: the target namespace already has a default route", o->gateway);
    fail(-r, "cannot add default route via %s dev %s: %s%s", o->gateway, o->ifname, strerror(-r),
         r == -ENETUNREACH ? " (is the gateway inside the --address prefix?)" : "");
  }
  /* IPv6 addresses and the default route come from slipway's router advertisements (SLAAC). */
}

/* ---- request loop ------------------------------------------------------------------------ */

/* Tiny scanner for a flat JSON object of string/integer values. */
struct req {
  long id; bool has_id;
  char op[64];
  long family;
  char type[64];
  char bind[64]; bool has_bind;
  long bind_port; bool has_bind_port;
  char connect[64]; bool has_connect;
  long port; bool has_port;
};

static const char *ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Parse a JSON string at p (pointing at '"') into out; returns pointer after it or NULL. */
static const char *jstring(const char *p, const char *e, char *out, size_t cap) {
  if (p >= e || *p != '"') return NULL;
  p++;
  size_t n = 0;
  while (p < e && *p != '"') {
    char c = *p++;
    if (c == '\\') {
      if (p >= e) return NULL;
      c = *p++;
      if (c == 'n') c = '\n'; else if (c == 't') c = '\t'; else if (c == 'u') return NULL;
      else if (c != '"' && c != '\\' && c != '/') return NULL;
    } else if ((unsigned char)c < 0x20) return NULL;
    if (n + 1 >= cap) return NULL;
    out[n++] = c;
  }
  if (p >= e) return NULL;
  out[n] = 0;
  return p + 1;
}

static const char *jint(const char *p, const char *e, long *out) {
  char tmp[24];
  size_t n = 0;
  if (p < e && *p == '-') tmp[n++] = *p++;
  while (p < e && *p >= '0' && *p <= '9' && n < sizeof tmp - 1) tmp[n++] = *p++;
  tmp[n] = 0;
  if (p < e && *p >= '0' && *p <= '9') return NULL; /* too long */
  if (parse_int(tmp, -2147483647L, 2147483647L, out)) return NULL;
  return p;
}

/* Returns NULL on success or an error text. */
static const char *parse_req(const char *p, size_t len, struct req *r) {
  const char *e = p + len;
  memset(r, 0, sizeof *r);
  p = ws(p, e);
  if (p >= e || *p != '{') return "request is not a JSON object";
  p = ws(p + 1, e);
  if (p < e && *p == '}') return "empty request";
  for (;;) {
    char key[16];
    p = ws(p, e);
    if (!(p = jstring(p, e, key, sizeof key))) return "bad key";
    p = ws(p, e);
    if (p >= e || *p != ':') return "expected ':'";
    p = ws(p + 1, e);
    if (p >= e) return "truncated";
    char sval[64];
    long ival = 0;
    bool is_str = *p == '"';
    if (is_str) { if (!(p = jstring(p, e, sval, sizeof sval))) return "bad string value"; }
    else if (!(p = jint(p, e, &ival))) return "values must be strings or integers";
#define STR(k, dst, flag) else if (!strcmp(key, k)) { if (!is_str) return k " must be a string"; \
      snprintf(dst, sizeof dst, "%s", sval); flag; }
#define INT(k, dst, flag) else if (!strcmp(key, k)) { if (is_str) return k " must be an integer"; \
      dst = ival; flag; }
    if (0) {}
    INT("id", r->id, r->has_id = true)
    STR("op", r->op, (void)0)
    INT("family", r->family, (void)0)
    STR("type", r->type, (void)0)
    STR("bind", r->bind, r->has_bind = true)
    INT("bindPort", r->bind_port, r->has_bind_port = true)
    STR("connect", r->connect, r->has_connect = true)
    INT("port", r->port, r->has_port = true)
    /* unknown keys are ignored */
#undef STR
#undef INT
    p = ws(p, e);
    if (p < e && *p == ',') { p++; continue; }
    if (p < e && *p == '}') break;
    return "expected ',' or '}'";
  }
  return NULL;
}

static void reply_err(const struct req *r, int err, const char *msg) {
  char out[512];
  if (r && r->has_id) snprintf(out, sizeof out, "{\"id\":%ld,\"ok\":false,\"error\":", r->id);
  else strcpy(out, "{\"id\":null,\"ok\":false,\"error\":");
  json_str(out, sizeof out, msg);
  strcat(out, ",\"code\":");
  json_str(out, sizeof out, errcode(err));
  strcat(out, "}");
  send_msg(out, -1);
}

static int fill_sa(int family, const char *addr, long port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  if (port < 0 || port > 65535) return -1;
  if (family == AF_INET) {
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)port);
    if (addr && inet_pton(AF_INET, addr, &s->sin_addr) != 1) return -1;
    *len = sizeof *s;
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons((uint16_t)port);
    if (addr && inet_pton(AF_INET6, addr, &s->sin6_addr) != 1) return -1;
    *len = sizeof *s;
  }
  return 0;
}

static void do_socket(const struct req *r) {
  char msg[256];
  int family = r->family == 4 ? AF_INET : r->family == 6 ? AF_INET6 : -1;
  if (family < 0) { reply_err(r, EINVAL, "family must be 4 or 6"); return; }
  int type = !strcmp(r->type, "stream") ? SOCK_STREAM : !strcmp(r->type, "dgram") ? SOCK_DGRAM : -1;
  if (type < 0) { reply_err(r, EINVAL, "type must be \"stream\" or \"dgram\""); return; }
  if (r->has_connect && !r->has_port) { reply_err(r, EINVAL, "connect needs port"); return; }
  int s = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) {
    int e = errno;
    snprintf(msg, sizeof msg, "socket() in the netns failed: %s", strerror(e));
    reply_err(r, e, msg);
    return;
  }
  struct sockaddr_storage ss;
  socklen_t sl;
  if (r->has_bind || r->has_bind_port) {
    if (fill_sa(family, r->has_bind ? r->bind : NULL, r->has_bind_port ? r->bind_port : 0, &ss, &sl) < 0) {
      snprintf(msg, sizeof msg, "invalid bind address %s port %ld", r->has_bind ? r->bind : "(any)", r->bind_port);
      reply_err(r, EINVAL, msg);
      close(s);
      return;
    }
    if (bind(s, (struct sockaddr *)&ss, sl) < 0) {
      int e = errno;
      snprintf(msg, sizeof msg, "bind to %s port %ld in the netns failed: %s", r->has_bind ? r->bind : "(any)", r->bind_port, strerror(e));
      reply_err(r, e, msg);
      close(s);
      return;
    }
  }
  if (r->has_connect) {
    if (fill_sa(family, r->connect, r->port, &ss, &sl) < 0) {
      snprintf(msg, sizeof msg, "invalid connect address %s port %ld", r->connect, r->port);
      reply_err(r, EINVAL, msg);
      close(s);
      return;
    }
    int c;
    do c = connect(s, (struct sockaddr *)&ss, sl); while (c < 0 && errno == EINTR);
    if (c < 0 && errno != EINPROGRESS) {
      int e = errno;
      snprintf(msg, sizeof msg, "connect to %s port %ld in the netns failed: %s", r->connect, r->port, strerror(e));
      reply_err(r, e, msg);
      close(s);
      return;
    }
  }
  char out[64];
  snprintf(out, sizeof out, "{\"id\":%ld,\"ok\":true}", r->id);
  send_msg(out, s);
  close(s);
}

/* The tap's first global, non-tentative IPv6 address into out ("" when none); -errno on failure. */
static int nl_global_addr6(char *out, size_t cap, bool *tentative) {
  out[0] = 0;
  *tentative = false;
  if (nl_fd < 0) {
    nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl_fd < 0) return -errno;
  }
  struct { struct nlmsghdr nh; struct ifaddrmsg ifa; } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  req.nh.nlmsg_type = RTM_GETADDR;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = ++nl_seq;
  req.ifa.ifa_family = AF_INET6;
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  if (sendto(nl_fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) return -errno;
  static char buf[16384];
  for (;;) {
    ssize_t n = recv(nl_fd, buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; return -errno; }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != req.nh.nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
      if (h->nlmsg_type != RTM_NEWADDR) continue;
      struct ifaddrmsg *ifa = NLMSG_DATA(h);
      if ((int)ifa->ifa_index != tap_ifindex || ifa->ifa_scope != RT_SCOPE_UNIVERSE || out[0]) continue;
      unsigned flags = ifa->ifa_flags;
      const void *addr = NULL;
      int len = (int)IFA_PAYLOAD(h);
      for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == IFA_ADDRESS && RTA_PAYLOAD(a) == 16) addr = RTA_DATA(a);
        else if (a->rta_type == IFA_FLAGS && RTA_PAYLOAD(a) >= 4) memcpy(&flags, RTA_DATA(a), 4);
      }
      if (!addr) continue;
      if (flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) { *tentative = true; continue; }
      inet_ntop(AF_INET6, addr, out, (socklen_t)cap);
    }
  }
}

static void do_addr6(const struct req *r) {
  char addr[INET6_ADDRSTRLEN];
  bool tentative;
  int e = nl_global_addr6(addr, sizeof addr, &tentative);
  if (e < 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "listing IPv6 addresses in the netns failed: %s", strerror(-e));
    reply_err(r, -e, msg);
    return;
  }
  char out[160];
  snprintf(out, sizeof out, "{\"id\":%ld,\"ok\":true,\"global\":\"%s\",\"tentative\":%d}", r->id, addr, tentative ? 1 : 0);
  send_msg(out, -1);
}

static int serve(void) {
  static char buf[4096];
  for (;;) {
    struct pollfd pf[2] = { { .fd = CHAN_FD, .events = POLLIN }, { .fd = target_pidfd, .events = POLLIN } };
    int pr = poll(pf, target_pidfd >= 0 ? 2 : 1, -1);
    if (pr < 0) { if (errno == EINTR) continue; return 1; }
    if (target_pidfd >= 0 && (pf[1].revents & POLLIN)) return EXIT_TARGET_GONE;
    if (!pf[0].revents) continue;
    ssize_t n = recv(CHAN_FD, buf, sizeof buf - 1, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == ECONNRESET ? 0 : 1;
    }
    if (n == 0) {
      /* SEQPACKET: 0 is EOF *or* an empty message; only a hangup means EOF */
      struct pollfd pfd = { .fd = CHAN_FD, .events = POLLIN | POLLRDHUP };
      if (poll(&pfd, 1, 0) < 0 || (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR))) return 0;
    }
    buf[n] = 0;
    struct req r;
    const char *err = parse_req(buf, (size_t)n, &r);
    if (err) { reply_err(&r, EINVAL, err); continue; }
    if (!r.has_id) { reply_err(&r, EINVAL, "request needs an integer id"); continue; }
    if (!strcmp(r.op, "ping")) {
      char out[64];
      snprintf(out, sizeof out, "{\"id\":%ld,\"ok\":true}", r.id);
      send_msg(out, -1);
    } else if (!strcmp(r.op, "addr6")) {
      do_addr6(&r);
    } else if (!strcmp(r.op, "socket")) {
      do_socket(&r);
    } else {
      reply_err(&r, EINVAL, "unknown op");
    }
  }
}

static int agent_main(int argc, char **argv) {
  struct opts o;
  uid_t outer_uid = getuid();
  parse_args(argc, argv, &o);
  join_namespaces(&o);
  int tap = open_tap(&o, outer_uid);
  struct link_info li;
  setup_link(&o, &li);
  tap_ifindex = li.ifindex;
  (void)nl_link_txqlen(li.ifindex, TAP_TXQLEN);
  if (o.configure) configure(&o, &li);
  if (nl_fd >= 0) { close(nl_fd); nl_fd = -1; }

  char out[512];
  snprintf(out, sizeof out, "{\"ok\":true,\"ifindex\":%d,\"mac\":\"%02x:%02x:%02x:%02x:%02x:%02x\",\"mtu\":%d",
           li.ifindex, li.mac[0], li.mac[1], li.mac[2], li.mac[3], li.mac[4], li.mac[5], li.mtu);
  if (ipv6_note[0]) {
    strcat(out, ",\"ipv6note\":");
    json_str(out, sizeof out, ipv6_note);
  }
  strcat(out, "}");
  if (send_msg(out, tap) < 0) return 1;
  close(tap); /* slipway owns the tap now */
  return serve();
}

/* ------------------------------------------------------------------------------------------ */
/* hold mode                                                                                  */

__attribute__((noreturn, format(printf, 2, 3)))
static void hold_fail(int err, const char *fmt, ...) {
  char msg[600], out[640];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  (void)err;
  int n = snprintf(out, sizeof out, "E%s\n", msg);
  if (write(CHAN_FD, out, (size_t)n) < 0) { /* nothing more to do */ }
  fprintf(stderr, "slipway-agent hold: %s\n", msg);
  _exit(1);
}

static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, s, strlen(s));
  int e = errno;
  close(fd);
  return n < 0 ? -e : 0;
}

static int hold_main(int argc, char **argv) {
  int i = 2;
  long ppid = 0;
  while (i < argc) {
    if (!strcmp(argv[i], "--ppid") && i + 1 < argc) {
      if (parse_int(argv[i + 1], 1, INT_MAX, &ppid)) hold_fail(EINVAL, "bad --ppid");
      i += 2;
    } else if (!strcmp(argv[i], "--")) { i++; break; }
    else break;
  }
  die_with_parent(ppid);
  if (i >= argc) hold_fail(EINVAL, "usage: slipway-agent hold [--ppid PID] [--] CMD [ARGS...]");

  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
    int e = errno;
    hold_fail(e, "unshare(user+net) failed: %s%s", strerror(e),
              e == EPERM || e == ENOSPC || e == EINVAL
                  ? " (are unprivileged user namespaces enabled? check user.max_user_namespaces and kernel.unprivileged_userns_clone)"
                  : "");
  }
  /* unshare(CLONE_NEWUSER) changed our credentials, which clears the parent-death signal. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent_pid) _exit(1);
  char map[64];
  int r = write_file("/proc/self/setgroups", "deny");
  if (r < 0 && r != -ENOENT) hold_fail(-r, "cannot write /proc/self/setgroups: %s", strerror(-r));
  snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
  if ((r = write_file("/proc/self/uid_map", map)) < 0) hold_fail(-r, "cannot write uid_map \"%s\": %s", map, strerror(-r));
  snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
  if ((r = write_file("/proc/self/gid_map", map)) < 0) hold_fail(-r, "cannot write gid_map \"%s\": %s", map, strerror(-r));

  if (write(CHAN_FD, "R", 1) != 1) _exit(1);
  for (;;) {
    char c;
    ssize_t n = read(CHAN_FD, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(1); /* slipway went away without "go" */
    if (c == 'G') break;
  }
  close(CHAN_FD);
  signal(SIGPIPE, SIG_DFL); /* SIG_IGN would be inherited across exec */
  execvp(argv[i], argv + i);
  int e = errno;
  fprintf(stderr, "slipway run: cannot execute %s: %s%s\n", argv[i], strerror(e),
          e == ENOENT ? " (command not found)" : "");
  _exit(e == ENOENT ? 127 : 126);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (fcntl(CHAN_FD, F_GETFD) < 0) {
    fprintf(stderr, "slipway-agent: fd 3 must be the channel to slipway (this program is started by slipway)\n");
    return 2;
  }
  if (argc >= 2 && !strcmp(argv[1], "hold")) return hold_main(argc, argv);
  long ppid = 0;
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--ppid")) { if (parse_int(argv[i + 1], 1, INT_MAX, &ppid)) ppid = 0; break; }
  die_with_parent(ppid);
  return agent_main(argc, argv);
}
