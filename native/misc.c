/* socketpair/setCloexec/closeFd, mallocTrim, FdWatch, PingSocket, AgentChannel. */
#include "addon.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHAN_MAX_FDS 4
#define CHAN_BUF (64 * 1024)
#define PING_BUF (64 * 1024)
#define PING_MAX_PER_WAKE 64

static napi_value undef(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static bool get_fd(napi_env env, napi_value v, int *fd) {
  int64_t x;
  if (!sw_get_int(env, v, "fd", 0, INT_MAX, &x)) return false;
  *fd = (int)x;
  return true;
}


/* ---- plain functions --------------------------------------------------------------------- */

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    sw_throw_errno(env, "socketpair(AF_UNIX, SOCK_SEQPACKET)", errno);
    return NULL;
  }
  return sw_int_pair(env, sv[0], sv[1]);
}

static napi_value js_set_cloexec(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  bool on = true;
  if (argc < 1 || !get_fd(env, argv[0], &fd)) { if (argc < 1) sw_throw_type(env, "setCloexec(fd, on)"); return NULL; }
  if (argc > 1) napi_get_value_bool(env, argv[1], &on);
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC) < 0) {
    sw_throw_errno(env, "fcntl(F_SETFD)", errno);
    return NULL;
  }
  return undef(env);
}

static napi_value js_close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (argc < 1) { sw_throw_type(env, "closeFd(fd)"); return NULL; }
  if (!get_fd(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) { sw_throw_errno(env, "close", errno); return NULL; }
  return undef(env);
}

/* mallocTrim(): give the C heap's free memory back to the kernel (glibc malloc_trim(0)). After a
 * burst of traffic the allocator keeps freed buffers mapped; this returns them, so RSS after
 * load reflects what is in use. Returns whether any memory was released. */
static napi_value js_malloc_trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_get_boolean(env, malloc_trim(0) == 1, &v);
  return v;
}

/* idleTimeMetricsOff(): Node configures its loop with UV_METRICS_IDLE_TIME (for
 * performance.eventLoopUtilization()). With it on, libuv's epoll backend polls once with a zero
 * timeout before every blocking poll, so each time the loop goes to sleep costs one more
 * epoll_pwait: two per request/response exchange. slipway never reads the loop's idle time.
 * libuv has no call that turns the option off; it is a bit in the first member of the loop's
 * private internal fields (uv__loop_internal_fields_t.flags, the same layout from libuv 1.39,
 * which added it, through 1.51). Clear it only for a libuv in that range and only when the word
 * holds nothing but known option bits. Returns true when it was on and is now off. */
static napi_value js_idle_time_metrics_off(napi_env env, napi_callback_info info) {
  (void)info;
  bool done = false;
  unsigned int v = uv_version();
  uv_loop_t *loop;
  if (v >= 0x012700 && v < 0x013400 && napi_get_uv_event_loop(env, &loop) == napi_ok && loop->internal_fields != NULL) {
    unsigned int *flags = (unsigned int *)loop->internal_fields;
    /* libuv sets it with `lfields->flags |= UV_METRICS_IDLE_TIME` (the enum's value, 1) and tests
     * it the same way; no other bit of that word is in use in these versions. */
    const unsigned int bit = (unsigned int)UV_METRICS_IDLE_TIME;
    if (*flags == bit) { *flags = 0; done = true; }
  }
  napi_value r;
  napi_get_boolean(env, done, &r);
  return r;
}

/* ---- FdWatch ----------------------------------------------------------------------------- */

typedef struct { sw_handle h; } fdwatch_t;

static void fdwatch_on_poll(sw_handle *h, int status, int events) {
  napi_env env = h->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[1];
  napi_create_int32(env, status < 0 ? status : events, &argv[0]);
  sw_handle_call(h, 0, 1, argv);
  napi_close_handle_scope(env, scope);
}

static napi_value fdwatch_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!sw_is_new(env, info, "FdWatch")) return NULL;
  if (argc < 3) { sw_throw_type(env, "new FdWatch(fd, 'readable'|'any', cb)"); return NULL; }
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  char ev[16] = "";
  size_t evlen;
  if (napi_get_value_string_utf8(env, argv[1], ev, sizeof ev, &evlen) != napi_ok ||
      (strcmp(ev, "readable") && strcmp(ev, "any"))) {
    sw_throw_type(env, "events must be 'readable' or 'any'");
    return NULL;
  }
  int events = !strcmp(ev, "any") ? UV_READABLE | UV_DISCONNECT | UV_PRIORITIZED : UV_READABLE;
  fdwatch_t *w = calloc(1, sizeof *w);
  if (!w) { sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  if (!sw_handle_init(env, &w->h, self, fd, false, "slipway.FdWatch", argv[2], NULL, fdwatch_on_poll)) return NULL;
  if (!sw_handle_start(&w->h, events)) { sw_handle_close(&w->h); return NULL; }
  return self;
}

/* ---- PingSocket -------------------------------------------------------------------------- */

typedef struct {
  sw_handle h;
  int family;
  uint8_t buf[PING_BUF];
} ping_t;

static void ping_on_poll(sw_handle *h, int status, int events) {
  ping_t *p = (ping_t *)h;
  napi_env env = h->env;
  (void)events;
  if (status < 0) { sw_handle_stop(h); return; }
  for (int i = 0; i < PING_MAX_PER_WAKE; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t r = recvfrom(h->fd, p->buf, sizeof p->buf, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
    if (r < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN, or an ICMP error queued on the socket: nothing to deliver */
    }
    char addr[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
    else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value argv[2];
    void *copy;
    napi_create_buffer_copy(env, (size_t)r, p->buf, &copy, &argv[0]);
    napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &argv[1]);
    bool open = sw_handle_call(h, 0, 2, argv);
    napi_close_handle_scope(env, scope);
    if (!open || !h->polling) return;
  }
}

static napi_value ping_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!sw_is_new(env, info, "PingSocket")) return NULL;
  if (argc < 2) { sw_throw_type(env, "new PingSocket(4|6, onReply)"); return NULL; }
  int64_t fam;
  if (!sw_get_int(env, argv[0], "family", 4, 6, &fam) || fam == 5) {
    if (fam == 5) sw_throw_range(env, "family must be 4 or 6");
    return NULL;
  }
  int fd = fam == 4 ? socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP)
                    : socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) {
    sw_throw_errno(env, fam == 4 ? "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)" : "socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)", errno);
    return NULL;
  }
  ping_t *p = calloc(1, sizeof *p);
  if (!p) { close(fd); sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  p->family = fam == 4 ? AF_INET : AF_INET6;
  if (!sw_handle_init(env, &p->h, self, fd, true, "slipway.PingSocket", argv[1], NULL, ping_on_poll)) { close(fd); return NULL; }
  if (!sw_handle_start(&p->h, UV_READABLE)) { sw_handle_close(&p->h); return NULL; }
  return self;
}

static napi_value ping_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  ping_t *p = (ping_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!p) return NULL;
  if (argc < 2) { sw_throw_type(env, "send(dst, icmpMessage)"); return NULL; }
  char dst[INET6_ADDRSTRLEN + 1];
  size_t dl;
  if (napi_get_value_string_utf8(env, argv[0], dst, sizeof dst, &dl) != napi_ok) { sw_throw_type(env, "dst must be a string"); return NULL; }
  uint8_t *d;
  size_t n;
  if (!sw_get_bytes(env, argv[1], "icmpMessage", &d, &n)) return NULL;
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  if (p->family == AF_INET) {
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    if (inet_pton(AF_INET, dst, &s->sin_addr) != 1) { sw_throw_type(env, "dst is not an IPv4 address"); return NULL; }
    sl = sizeof *s;
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, dst, &s->sin6_addr) != 1) { sw_throw_type(env, "dst is not an IPv6 address"); return NULL; }
    sl = sizeof *s;
  }
  ssize_t r;
  do r = sendto(p->h.fd, d, n, 0, (struct sockaddr *)&ss, sl); while (r < 0 && errno == EINTR);
  napi_value ok;
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) { napi_get_boolean(env, false, &ok); return ok; }
    sw_throw_errno(env, "sendto", errno);
    return NULL;
  }
  napi_get_boolean(env, true, &ok);
  return ok;
}

/* ---- AgentChannel ------------------------------------------------------------------------ */

typedef struct {
  sw_handle h;
  bool eof;
  uint8_t buf[CHAN_BUF];
} chan_t;

static void chan_eof(sw_handle *h) {
  chan_t *c = (chan_t *)h;
  if (c->eof) return;
  c->eof = true;
  sw_handle_stop(h);
  napi_handle_scope scope;
  napi_open_handle_scope(h->env, &scope);
  sw_handle_call(h, 1, 0, NULL);
  napi_close_handle_scope(h->env, scope);
}

static void chan_on_poll(sw_handle *h, int status, int events) {
  chan_t *c = (chan_t *)h;
  napi_env env = h->env;
  (void)events;
  if (status < 0) { chan_eof(h); return; }
  for (int i = 0; i < 64; i++) {
    union { char b[CMSG_SPACE(sizeof(int) * CHAN_MAX_FDS)]; struct cmsghdr align; } u;
    struct iovec iov = { .iov_base = c->buf, .iov_len = sizeof c->buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
    ssize_t r = recvmsg(h->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      chan_eof(h); /* ECONNRESET and friends */
      return;
    }
    int fds[CHAN_MAX_FDS];
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k; j++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + j * sizeof(int), sizeof fd);
        if (nfds < CHAN_MAX_FDS) fds[nfds++] = fd; else close(fd);
      }
    }
    if (r == 0 && nfds == 0) {
      /* SEQPACKET: 0 is EOF *or* an empty message; only a hangup means EOF */
      struct pollfd pfd = { .fd = h->fd, .events = POLLIN | POLLRDHUP };
      if (poll(&pfd, 1, 0) < 0 || (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR))) { chan_eof(h); return; }
    }
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value argv[2];
    void *copy;
    napi_create_buffer_copy(env, (size_t)r, c->buf, &copy, &argv[0]);
    napi_create_array_with_length(env, (size_t)nfds, &argv[1]);
    for (int j = 0; j < nfds; j++) {
      napi_value v;
      napi_create_int32(env, fds[j], &v);
      napi_set_element(env, argv[1], (uint32_t)j, v);
    }
    bool open = sw_handle_call(h, 0, 2, argv);
    napi_close_handle_scope(env, scope);
    if (!open || !h->polling) return;
  }
}

static napi_value chan_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!sw_is_new(env, info, "AgentChannel")) return NULL;
  if (argc < 3) { sw_throw_type(env, "new AgentChannel(fd, onMessage, onClose)"); return NULL; }
  int fd;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  chan_t *c = calloc(1, sizeof *c);
  if (!c) { sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  if (!sw_handle_init(env, &c->h, self, fd, true, "slipway.AgentChannel", argv[1], argv[2], chan_on_poll)) return NULL;
  if (!sw_handle_start(&c->h, UV_READABLE | UV_DISCONNECT)) { c->h.owns_fd = false; sw_handle_close(&c->h); return NULL; }
  return self;
}

static napi_value chan_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  chan_t *c = (chan_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!c) return NULL;
  if (argc < 1) { sw_throw_type(env, "send(msg)"); return NULL; }
  uint8_t *d;
  size_t n;
  if (!sw_get_bytes(env, argv[0], "msg", &d, &n)) return NULL;
  ssize_t r;
  do r = send(c->h.fd, d, n, MSG_DONTWAIT | MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  napi_value ok;
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) { napi_get_boolean(env, false, &ok); return ok; }
    sw_throw_errno(env, "send", errno);
    return NULL;
  }
  napi_get_boolean(env, true, &ok);
  return ok;
}

/* ---- registration ------------------------------------------------------------------------ */

napi_value sw_init_misc(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
    { "socketpair", NULL, js_socketpair, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setCloexec", NULL, js_set_cloexec, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, js_close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "csum", NULL, sw_csum, NULL, NULL, NULL, napi_enumerable, NULL },
    { "mallocTrim", NULL, js_malloc_trim, NULL, NULL, NULL, napi_enumerable, NULL },
    { "lowMemory", NULL, sw_low_memory, NULL, NULL, NULL, napi_enumerable, NULL },
    { "idleTimeMetricsOff", NULL, js_idle_time_metrics_off, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  NAPI_OK(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));

  napi_property_descriptor w[] = { SW_METHOD("close", sw_close_method) };
  if (!sw_def_class(env, exports, "FdWatch", fdwatch_new, 1, w)) return NULL;

  napi_property_descriptor p[] = { SW_METHOD("send", ping_send), SW_METHOD("close", sw_close_method) };
  if (!sw_def_class(env, exports, "PingSocket", ping_new, 2, p)) return NULL;

  napi_property_descriptor c[] = { SW_METHOD("send", chan_send), SW_METHOD("close", sw_close_method) };
  if (!sw_def_class(env, exports, "AgentChannel", chan_new, 2, c)) return NULL;
  return exports;
}
