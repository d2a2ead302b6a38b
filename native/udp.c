/*
 * UdpHost: the host socket of one UDP NAT binding (src/flows/udp.ts), with the kernel's UDP
 * segmentation offloads on both sides.
 *
 * THEORY OF OPERATION
 * ===================
 * Receive (host -> guest): the socket has UDP_GRO on, so the kernel may hand us several
 * datagrams of one sender, of equal size (the last may be shorter), as one buffer plus a
 * UDP_GRO control message with that size.  The stack writes such a buffer to the guest as one
 * tap frame with a virtio-net header of type GSO_UDP_L4: the guest kernel cuts it back into the
 * original datagrams.  One read, one JS call and one tap write for up to 64 datagrams instead of
 * one of each per datagram.  recvmmsg reads into a ring that every UdpHost shares (16 slots of
 * 64 KiB: the JS callback consumes the batch before it returns, so one ring serves all
 * bindings, however many there are); per slot, `meta` holds [length, segment size (0: one
 * datagram), source port, IPv4 source (host order)] and `addrs` 16 bytes of an IPv6 source.
 *
 * Send (guest -> host): sendSegments() sends datagrams straight from the tap ring (an iovec per
 * datagram, no copy).  Several datagrams of one size to one destination go in one sendmsg with a
 * UDP_SEGMENT control message (the kernel segments them late, after one trip through its
 * stack); one, or any the route does not take with segmentation (EINVAL when the segment is over
 * the path MTU, EIO where the device cannot checksum), go with sendmmsg, one message each.
 * Non-blocking: what the socket will not take (EAGAIN, ENOBUFS) is dropped, as UDP may.
 */
#include "addon.h"
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define UH_SLOTS 16
#define UH_SLOT_SIZE 65536
#define UH_MAX_SEGMENTS 64
#define UH_META 4

typedef struct {
  sw_handle h;
  int family;
  int gso_fail_min;   /* segment sizes from here up failed with UDP_SEGMENT: send them one by one */
  double rx, rx_datagrams, tx, errors;
} udphost_t;

/* The shared receive ring and the buffers it exposes to JS (created by the first UdpHost). */
static uint8_t *uh_data;
static int32_t *uh_meta;
static uint8_t *uh_addrs;
static napi_ref uh_ring_ref;
static napi_env uh_env;
static napi_async_context uh_actx;
static struct mmsghdr uh_msgs[UH_SLOTS];
static struct iovec uh_iov[UH_SLOTS];
static struct sockaddr_storage uh_names[UH_SLOTS];
static char uh_cmsg[UH_SLOTS][CMSG_SPACE(sizeof(int))];

static void uh_on_poll(sw_handle *h, int status, int events) {
  udphost_t *u = (udphost_t *)h;
  (void)events;
  if (status < 0) { u->errors++; return; }
  for (int round = 0; round < 8; round++) {
    for (int i = 0; i < UH_SLOTS; i++) {
      uh_iov[i].iov_base = uh_data + (size_t)i * UH_SLOT_SIZE;
      uh_iov[i].iov_len = UH_SLOT_SIZE;
      struct msghdr *m = &uh_msgs[i].msg_hdr;
      memset(m, 0, sizeof *m);
      m->msg_name = &uh_names[i];
      m->msg_namelen = sizeof uh_names[i];
      m->msg_iov = &uh_iov[i];
      m->msg_iovlen = 1;
      m->msg_control = uh_cmsg[i];
      m->msg_controllen = sizeof uh_cmsg[i];
    }
    int n = recvmmsg(h->fd, uh_msgs, UH_SLOTS, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      u->errors++; /* a queued ICMP error (ECONNREFUSED, ...): reported once, read on */
      continue;
    }
    if (n == 0) return;
    for (int i = 0; i < n; i++) {
      struct msghdr *m = &uh_msgs[i].msg_hdr;
      int32_t *meta = uh_meta + i * UH_META;
      int seg = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&seg, CMSG_DATA(c), sizeof seg);
      }
      int len = (int)uh_msgs[i].msg_len;
      if (m->msg_flags & MSG_TRUNC) len = -1; /* cannot happen with 64 KiB slots; dropped by JS */
      meta[0] = len;
      meta[1] = seg > 0 && len > seg ? seg : 0;
      const struct sockaddr_storage *ss = &uh_names[i];
      if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        meta[2] = ntohs(a->sin_port);
        meta[3] = (int32_t)ntohl(a->sin_addr.s_addr);
        memset(uh_addrs + i * 16, 0, 16);
      } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        meta[2] = ntohs(a->sin6_port);
        meta[3] = 0;
        memcpy(uh_addrs + i * 16, &a->sin6_addr, 16);
      }
      u->rx_datagrams += meta[1] > 0 ? (len + meta[1] - 1) / meta[1] : 1;
    }
    u->rx += n;
    if (!sw_ring_deliver(h, (size_t)n) || !h->polling) return;
    if (n < UH_SLOTS) return;
  }
}

/* The shared ring as { ring, meta, addrs }, made once. */
static bool uh_ring(napi_env env, napi_value *out) {
  if (uh_ring_ref && uh_env == env) return napi_get_reference_value(env, uh_ring_ref, out) == napi_ok;
  if (uh_ring_ref) { sw_throw_type(env, "UdpHost: one environment only"); return false; }
  napi_value o, buf, mab, meta, aab, addrs;
  void *data, *mdata, *adata;
  if (napi_create_object(env, &o) != napi_ok) return false;
  if (napi_create_buffer(env, (size_t)UH_SLOTS * UH_SLOT_SIZE, &data, &buf) != napi_ok) return false;
  if (napi_create_arraybuffer(env, UH_SLOTS * UH_META * 4, &mdata, &mab) != napi_ok) return false;
  if (napi_create_typedarray(env, napi_int32_array, UH_SLOTS * UH_META, mab, 0, &meta) != napi_ok) return false;
  if (napi_create_arraybuffer(env, UH_SLOTS * 16, &adata, &aab) != napi_ok) return false;
  if (napi_create_typedarray(env, napi_uint8_array, UH_SLOTS * 16, aab, 0, &addrs) != napi_ok) return false;
  napi_set_named_property(env, o, "ring", buf);
  napi_set_named_property(env, o, "meta", meta);
  napi_set_named_property(env, o, "addrs", addrs);
  if (napi_create_reference(env, o, 1, &uh_ring_ref) != napi_ok) return false;
  uh_env = env;
  uh_data = data;
  uh_meta = mdata;
  uh_addrs = adata;
  *out = o;
  return true;
}

/* udpHostRing(): the shared receive ring { ring: Buffer, meta: Int32Array, addrs: Uint8Array }. */
static napi_value js_udp_host_ring(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o;
  if (!uh_ring(env, &o)) return NULL;
  return o;
}

/* new UdpHost(family, bindAddress | null, onBatch(count)) */
static napi_value uh_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!sw_is_new(env, info, "UdpHost")) return NULL;
  if (argc < 3) { sw_throw_type(env, "new UdpHost(family, bindAddress, onBatch)"); return NULL; }
  int64_t fam;
  if (!sw_get_int(env, argv[0], "family", 4, 6, &fam)) return NULL;
  if (fam != 4 && fam != 6) { sw_throw_type(env, "family must be 4 or 6"); return NULL; }
  int family = fam == 6 ? AF_INET6 : AF_INET;
  char bind_addr[64] = "";
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_string) {
    size_t l;
    napi_get_value_string_utf8(env, argv[1], bind_addr, sizeof bind_addr, &l);
  } else if (t != napi_null && t != napi_undefined) {
    sw_throw_type(env, "bindAddress must be a string or null");
    return NULL;
  }
  napi_value ring;
  if (!uh_ring(env, &ring)) return NULL;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { sw_throw_errno(env, "socket", errno); return NULL; }
  struct sockaddr_storage ss;
  socklen_t sl;
  if (sw_fill_addr(family, bind_addr[0] ? bind_addr : (family == AF_INET6 ? "::" : "0.0.0.0"), 0, &ss, &sl) != 0) {
    close(fd);
    sw_throw_type(env, "bindAddress is not an address of this family");
    return NULL;
  }
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) { int e = errno; close(fd); sw_throw_errno(env, "bind", e); return NULL; }
  int one = 1;
  setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one); /* best effort: without it, one datagram a read */
  udphost_t *u = calloc(1, sizeof *u);
  if (!u) { close(fd); sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  u->family = family;
  u->gso_fail_min = INT_MAX;
  /* One async context for every UdpHost, as for HostSocket: a binding per DNS query is common. */
  if (!uh_actx) {
    napi_value res, name;
    napi_create_object(env, &res);
    napi_create_string_utf8(env, "slipway.UdpHost", NAPI_AUTO_LENGTH, &name);
    if (napi_async_init(env, res, name, &uh_actx) != napi_ok) uh_actx = NULL;
  }
  if (uh_actx) {
    u->h.actx = uh_actx;
    u->h.actx_shared = true;
  }
  if (!sw_handle_init(env, &u->h, self, fd, true, "slipway.UdpHost", argv[2], NULL, uh_on_poll)) { close(fd); return NULL; }
  if (!sw_handle_start_new(&u->h, UV_READABLE)) { close(fd); return NULL; }
  return self;
}

/* Send msgs [0, k) one message each; returns how many went out. */
static int uh_send_each(int fd, struct mmsghdr *msgs, int k) {
  int sent = 0;
  while (sent < k) {
    int r = sendmmsg(fd, msgs + sent, (unsigned)(k - sent), MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      return sent > 0 ? sent : -errno;
    }
    if (r == 0) break;
    sent += r;
  }
  return sent;
}

/*
 * sendSegments(buf, offsets: Int32Array, lengths: Int32Array, count, address, port): datagrams
 * buf[offsets[i], +lengths[i]) for i < count (at most 64), to address:port.  Returns how many
 * went out, or -errno when none did (an error the guest may hear of as ICMP).
 */
static napi_value uh_send_segments(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  udphost_t *u = (udphost_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!u) return NULL;
  const char *usage = "sendSegments(buf, offsets, lengths, count, address, port)";
  if (argc < 6) { sw_throw_type(env, usage); return NULL; }
  uint8_t *buf;
  size_t blen;
  if (!sw_get_bytes(env, argv[0], "buf", &buf, &blen)) return NULL;
  int32_t *offs, *lens;
  size_t n1, n2;
  if (!sw_get_int32s(env, argv[1], usage, &offs, &n1) || !sw_get_int32s(env, argv[2], usage, &lens, &n2)) return NULL;
  int64_t count, port;
  if (!sw_get_int(env, argv[3], "count", 1, UH_MAX_SEGMENTS, &count)) return NULL;
  if ((size_t)count > n1 || (size_t)count > n2) { sw_throw_range(env, "count is over the offsets/lengths given"); return NULL; }
  if (!sw_get_int(env, argv[5], "port", 1, 65535, &port)) return NULL;
  char addr[64];
  size_t alen;
  if (napi_get_value_string_utf8(env, argv[4], addr, sizeof addr, &alen) != napi_ok) { sw_throw_type(env, "address must be a string"); return NULL; }
  struct sockaddr_storage ss;
  socklen_t sl;
  if (sw_fill_addr(u->family, addr, (int)port, &ss, &sl) != 0) { sw_throw_type(env, "address is not an address of this socket's family"); return NULL; }
  static struct iovec iov[UH_MAX_SEGMENTS];
  static struct mmsghdr msgs[UH_MAX_SEGMENTS];
  size_t total = 0;
  for (int i = 0; i < count; i++) {
    if (offs[i] < 0 || lens[i] < 0 || (size_t)offs[i] + (size_t)lens[i] > blen) { sw_throw_range(env, "a datagram is outside buf"); return NULL; }
    iov[i].iov_base = buf + offs[i];
    iov[i].iov_len = (size_t)lens[i];
    total += (size_t)lens[i];
  }
  int seg = lens[0];
  int result = 0;
  bool sent = false; /* result is final (a count, or -errno: -1 is EPERM, not "not yet") */
  /* One sendmsg with UDP_SEGMENT when every datagram but the last has the first one's size. */
  bool gso = count > 1 && seg > 0 && seg < u->gso_fail_min && total <= 65000;
  for (int i = 1; gso && i < count; i++) {
    if (lens[i] > seg || (i < count - 1 && lens[i] != seg)) gso = false;
  }
  if (gso) {
    char cbuf[CMSG_SPACE(sizeof(uint16_t))];
    memset(cbuf, 0, sizeof cbuf);
    struct msghdr m = { .msg_name = &ss, .msg_namelen = sl, .msg_iov = iov, .msg_iovlen = (size_t)count, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t s16 = (uint16_t)seg;
    memcpy(CMSG_DATA(c), &s16, sizeof s16);
    ssize_t r;
    do r = sendmsg(u->h.fd, &m, MSG_DONTWAIT); while (r < 0 && errno == EINTR);
    if (r >= 0) { result = (int)count; sent = true; }
    else if (errno == EINVAL || errno == EIO || errno == EOPNOTSUPP || errno == EMSGSIZE) u->gso_fail_min = seg; /* one by one below */
    else { result = -errno; sent = true; }
  }
  if (!sent) {
    for (int i = 0; i < count; i++) {
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &ss;
      msgs[i].msg_hdr.msg_namelen = sl;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    result = uh_send_each(u->h.fd, msgs, (int)count);
  }
  if (result > 0) u->tx += result;
  napi_value v;
  napi_create_int32(env, result, &v);
  return v;
}

/* localPort(): the bound port (getsockname). */
static napi_value uh_local_port(napi_env env, napi_callback_info info) {
  udphost_t *u = (udphost_t *)sw_unwrap(env, info, NULL, NULL, true);
  if (!u) return NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int port = 0;
  if (getsockname(u->h.fd, (struct sockaddr *)&ss, &sl) == 0) {
    port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  napi_value v;
  napi_create_int32(env, port, &v);
  return v;
}

static napi_value uh_stats(napi_env env, napi_callback_info info) {
  udphost_t *u = (udphost_t *)sw_unwrap(env, info, NULL, NULL, false);
  if (!u) return NULL;
  napi_value o;
  napi_create_object(env, &o);
  sw_set_num(env, o, "reads", u->rx);
  sw_set_num(env, o, "datagramsIn", u->rx_datagrams);
  sw_set_num(env, o, "datagramsOut", u->tx);
  sw_set_num(env, o, "errors", u->errors);
  return o;
}

napi_value sw_init_udp(napi_env env, napi_value exports) {
  napi_property_descriptor m[] = {
    SW_METHOD("sendSegments", uh_send_segments),
    SW_METHOD("localPort", uh_local_port),
    SW_METHOD("stats", uh_stats),
    SW_METHOD("close", sw_close_method),
    { "fd", NULL, NULL, sw_fd_getter, NULL, NULL, napi_default_jsproperty, NULL },
  };
  if (!sw_def_class(env, exports, "UdpHost", uh_new, sizeof m / sizeof m[0], m)) return NULL;
  napi_value fn;
  NAPI_OK(env, napi_create_function(env, "udpHostRing", NAPI_AUTO_LENGTH, js_udp_host_ring, NULL, &fn));
  NAPI_OK(env, napi_set_named_property(env, exports, "udpHostRing", fn));
  return exports;
}
