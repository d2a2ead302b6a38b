/* Socket I/O for the TCP relay (src/flows/tcp.ts): write slices of one buffer (the tap ring)
 * straight to a connected stream socket's fd, so guest data reaches the host kernel without a
 * user-space copy when the socket has no backlog. The caller guarantees ordering (it only calls
 * this while libuv has nothing queued on the socket) and copies what the kernel did not take.
 *
 *   writeSlices(fd, buf, offLen: Int32Array, count) → bytes written (>= 0), or -errno
 *
 * offLen holds `count` (offset, length) pairs into buf. Never blocks (MSG_DONTWAIT), never raises
 * SIGPIPE (MSG_NOSIGNAL), never throws on I/O errors: EAGAIN and hard errors come back as -errno
 * and the caller lets its stream (net.Socket) write the data and report the error. */
#include "addon.h"
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SIO_MAX_IOV 64

static napi_value sio_write_slices(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  const char *usage = "writeSlices(fd, buf, offLen: Int32Array, count)";
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) { sw_throw_type(env, usage); return NULL; }
  int64_t fd, count;
  if (!sw_get_int(env, argv[0], "fd", 0, INT_MAX, &fd)) return NULL;
  uint8_t *buf;
  size_t buf_len;
  if (!sw_get_bytes(env, argv[1], "buf", &buf, &buf_len)) return NULL;
  int32_t *ol;
  size_t ol_n;
  if (!sw_get_int32s(env, argv[2], usage, &ol, &ol_n)) return NULL;
  if (!sw_get_int(env, argv[3], "count", 0, (int64_t)(ol_n / 2), &count)) return NULL;
  for (int64_t i = 0; i < count; i++) {
    int32_t off = ol[2 * i], len = ol[2 * i + 1];
    if (off < 0 || len < 0 || (size_t)off + (size_t)len > buf_len) { sw_throw_range(env, "writeSlices: slice outside buf"); return NULL; }
  }

  double total = 0;
  int err = 0;
  int64_t i = 0;
  while (i < count) {
    struct iovec iov[SIO_MAX_IOV];
    int k = 0;
    size_t want = 0;
    for (; i < count && k < SIO_MAX_IOV; i++) {
      if (ol[2 * i + 1] == 0) continue;
      iov[k].iov_base = buf + ol[2 * i];
      iov[k++].iov_len = (size_t)ol[2 * i + 1];
      want += (size_t)ol[2 * i + 1];
    }
    if (k == 0) break;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)k;
    ssize_t r;
    do r = sendmsg((int)fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
    if (r < 0) { err = errno; break; }
    total += (double)r;
    if ((size_t)r < want) break; /* the socket buffer is full: the caller keeps the rest */
  }
  napi_value v;
  NAPI_OK(env, napi_create_double(env, total > 0 || err == 0 ? total : -(double)err, &v));
  return v;
}

napi_value sw_init_sockio(napi_env env, napi_value exports) {
  napi_value fn;
  NAPI_OK(env, napi_create_function(env, "writeSlices", NAPI_AUTO_LENGTH, sio_write_slices, NULL, &fn));
  NAPI_OK(env, napi_set_named_property(env, exports, "writeSlices", fn));
  return exports;
}

/* ---- HostSocket ---------------------------------------------------------------------------
 * A TCP flow's host side without net.Socket: a non-blocking stream socket polled by one uv_poll.
 * No JS object per socket (a wrapped object cost a short connection ~3 us of CPU: the object,
 * napi_wrap's private property and weak reference, references to the callbacks): sockets live in
 * a slot table and JS holds a number, the socket's id (slot index | generation << 20, so an id
 * kept after its socket closed matches nothing). Events go to two functions given once.
 *
 *   hostSocketSetup(onState(id, status), onRead(id, length, status), out: Int32Array(2+))
 *   hostSocketOpen(family 4|6, address, port, bindAddress|null) → id; out[0] = its fd, out[1] = 1
 *     when the connect finished at once (then no onState(id, 0) follows: the caller reports it)
 *
 * The socket gets TCP_NODELAY, is bound when asked and starts connect(); a synchronous failure
 * throws (code = errno name). onState(id, 0) once the connect finished, onState(id, -errno) when
 * it failed (the socket is then dead), onState(id, 1) when the socket became writable after
 * wantWrite. onRead(id, length, status): status 0 = data, 1 = the peer's EOF (with the last data
 * when both were there in one wake-up), -errno = read error. The data is the first `length` bytes
 * of the buffer last given to setHostReadBuffer (shared by all sockets): the JS side keeps big
 * reads as they are and installs a fresh buffer, and copies small ones out, so there is neither a
 * copy per bulk read nor a 64 KiB allocation per small one. Reading starts when the connect
 * finishes; hostSocketRead(id, false/true) pauses and resumes it.
 *   hostSocketWrite(id, buf) → bytes written or -errno (never blocks, no SIGPIPE)
 *   hostSocketWantWrite(id, on)
 *   hostSocketShutdown(id) → 0 or -errno (SHUT_WR)
 *   hostSocketClose(id, reset): SO_LINGER 0 first when reset; the id is void from then on
 *   hostSocketExpressAttach(id, tap, state, hdr) / hostSocketExpressDetach(id) /
 *   hostSocketExpressUnacked(id): the express lane (below)
 * A void id is not an error: writes and shutdown return -EBADF, the rest do nothing. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <stdlib.h>

/* The read buffer: a JS Buffer given by setHostReadBuffer (JS hands big reads on as they are and
 * gives a fresh buffer; small ones it copies out and the buffer is reused). */
static napi_ref hs_buf_ref;
static uint8_t *hs_buf;
static size_t hs_buf_len;
/* hostSocketSetup: the two event functions, a receiver object for them, `out`, and one async
 * context for every socket (async_hooks see them as one resource: a context of its own cost each
 * short connection an init and a destroy). */
static napi_env hs_env;
static napi_ref hs_cb[2], hs_recv, hs_out_ref;
static int32_t *hs_out;
static napi_async_context hs_actx;

typedef struct {
  sw_handle h;
  uint32_t id;
  bool connecting, reading, want_write, eof;
  sw_xflow *xf; /* on the tap's express lane (expressAttach), or NULL */
} hostsock_t;

/* ---- the slot table ---- */
#define HS_IDX_BITS 20
#define HS_IDX_MASK ((1u << HS_IDX_BITS) - 1)
#define HS_GEN_MASK 0x7ffu /* ids stay below 2^31 */
typedef struct {
  hostsock_t *s;
  uint32_t gen;  /* of the current occupant, or of the next one while free */
  uint32_t next; /* free list */
} hs_slot;
static hs_slot *hs_slots;
static uint32_t hs_nslots, hs_cap, hs_free = UINT32_MAX;

static bool hs_slot_take(hostsock_t *s) {
  uint32_t i;
  if (hs_free != UINT32_MAX) {
    i = hs_free;
    hs_free = hs_slots[i].next;
  } else {
    if (hs_nslots == hs_cap) {
      uint32_t cap = hs_cap ? hs_cap * 2 : 256;
      if (cap > HS_IDX_MASK + 1) return false;
      hs_slot *n = realloc(hs_slots, cap * sizeof *n);
      if (!n) return false;
      hs_slots = n;
      hs_cap = cap;
    }
    i = hs_nslots++;
    hs_slots[i].gen = 0;
  }
  hs_slots[i].s = s;
  s->id = i | hs_slots[i].gen << HS_IDX_BITS;
  return true;
}

static void hs_slot_give(hostsock_t *s) {
  uint32_t i = s->id & HS_IDX_MASK;
  if (i >= hs_nslots || hs_slots[i].s != s) return;
  hs_slots[i].s = NULL;
  hs_slots[i].gen = (hs_slots[i].gen + 1) & HS_GEN_MASK;
  hs_slots[i].next = hs_free;
  hs_free = i;
}

/* The open socket `v` names, or NULL (no exception) for a void id; a TypeError when v is no id. */
static hostsock_t *hs_find(napi_env env, napi_value v, bool *bad) {
  uint32_t id;
  *bad = false;
  if (napi_get_value_uint32(env, v, &id) != napi_ok) { sw_throw_type(env, "id must be a number"); *bad = true; return NULL; }
  uint32_t i = id & HS_IDX_MASK;
  if (i >= hs_nslots || hs_slots[i].s == NULL || hs_slots[i].s->id != id || hs_slots[i].s->h.closed) return NULL;
  return hs_slots[i].s;
}

/* argv[0] is the id: the socket, or NULL with *bad false for a void id. */
static hostsock_t *hs_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, bool *bad) {
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok) { *bad = true; return NULL; }
  if (*argc < 1) { sw_throw_type(env, "the socket's id is missing"); *bad = true; return NULL; }
  return hs_find(env, argv[0], bad);
}

static void hs_update(hostsock_t *s) {
  if (s->h.closed) return;
  int ev = 0;
  if (s->connecting || s->want_write) ev |= UV_WRITABLE;
  if (!s->connecting && s->reading && !s->eof) ev |= UV_READABLE | UV_DISCONNECT;
  if (ev == 0) { sw_handle_stop(&s->h); return; }
  if (s->h.polling && s->h.events == ev) return;
  sw_handle_start(&s->h, ev);
}

/* Call hs_cb[which](id, ...args); false when the socket got closed meanwhile. */
static bool hs_call(hostsock_t *s, int which, size_t argc, napi_value *argv) {
  napi_env env = s->h.env;
  if (s->h.closed || !hs_cb[which]) return false;
  napi_value recv, fn, result;
  napi_get_reference_value(env, hs_recv, &recv);
  napi_get_reference_value(env, hs_cb[which], &fn);
  napi_status st = napi_make_callback(env, hs_actx, recv, fn, argc, argv, &result);
  sw_handle_callback_status(env, st);
  return !s->h.closed;
}

static void hs_call_state(hostsock_t *s, int status) {
  napi_env env = s->h.env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[2];
  napi_create_uint32(env, s->id, &argv[0]);
  napi_create_int32(env, status, &argv[1]);
  hs_call(s, 0, 2, argv);
  napi_close_handle_scope(env, scope);
}

/* onRead(id, length, status): the bytes are hs_buf[0, length) (the JS side's current read buffer). */
static bool hs_call_read(hostsock_t *s, size_t n, int status) {
  napi_env env = s->h.env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[3];
  napi_create_uint32(env, s->id, &argv[0]);
  napi_create_double(env, (double)n, &argv[1]);
  napi_create_int32(env, status, &argv[2]);
  bool open = hs_call(s, 1, 3, argv);
  napi_close_handle_scope(env, scope);
  return open;
}

static void hs_do_read(hostsock_t *s, int events) {
  for (int round = 0; round < 16 && s->reading && !s->eof && !s->h.closed; round++) {
    if (s->xf) {
      int x = sw_xflow_tx(s->xf, events);
      if (x == 1) return; /* one frame out (or nothing to read): the next one after the guest's ACK */
      if (x < 0 || x == 2) {
        s->eof = true;
        hs_update(s);
        hs_call_read(s, 0, x < 0 ? x : 1);
        return;
      }
    }
    if (hs_buf == NULL) return;
    uint8_t *buf = hs_buf;
    size_t cap = hs_buf_len;
    ssize_t n;
    do n = recv(s->h.fd, buf, cap, MSG_DONTWAIT); while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      int err = errno;
      s->eof = true;
      hs_update(s);
      hs_call_read(s, 0, -err);
      return;
    }
    if (n == 0) {
      s->eof = true;
      hs_update(s);
      hs_call_read(s, 0, 1);
      return;
    }
    sw_busy_poll_bytes += (uint64_t)n;
    /* The poll saw the peer's FIN (EPOLLRDHUP: the kernel takes a FIN only in sequence, after all
     * the data before it) and this read left the queue empty (it did not fill the buffer): this
     * was the last data, so report the EOF with it, without a read that would only return 0. */
    bool last = (size_t)n < cap && (events & UV_DISCONNECT);
    if (last) { s->eof = true; hs_update(s); }
    if (!hs_call_read(s, (size_t)n, last ? 1 : 0)) return;
    if ((size_t)n < cap) return; /* drained (and, with the FIN seen, ended) */
  }
}

static void hs_on_poll(sw_handle *h, int status, int events) {
  hostsock_t *s = (hostsock_t *)h;
  if (s->connecting) {
    int err = 0;
    socklen_t sl = sizeof err;
    if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0) err = errno;
    if (!err && status < 0) err = -status;
    if (!err && !(events & UV_WRITABLE)) return;
    s->connecting = false;
    if (err) {
      sw_handle_stop(h);
      hs_call_state(s, -err);
      return;
    }
    s->reading = true;
    hs_update(s);
    hs_call_state(s, 0);
    return;
  }
  if (status < 0) {
    /* POLLERR: take the socket's own error, report it as a read error */
    int err = 0;
    socklen_t sl = sizeof err;
    if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err == 0) err = -status;
    s->eof = true;
    s->want_write = false;
    hs_update(s);
    hs_call_read(s, 0, -err);
    return;
  }
  if ((events & (UV_READABLE | UV_DISCONNECT)) && s->reading && !s->eof) hs_do_read(s, events);
  if (s->h.closed) return;
  if ((events & UV_WRITABLE) && s->want_write) {
    s->want_write = false;
    hs_update(s);
    hs_call_state(s, 1);
  }
}

static void hs_on_close(sw_handle *h) {
  hostsock_t *s = (hostsock_t *)h;
  if (s->xf) sw_xflow_free(h->env, s->xf);
  s->xf = NULL;
  hs_slot_give(s);
}

static napi_value hs_int(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value hs_setup(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const char *usage = "hostSocketSetup(onState, onRead, out: Int32Array)";
  if (argc < 3) { sw_throw_type(env, usage); return NULL; }
  for (int i = 0; i < 2; i++) {
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (t != napi_function) { sw_throw_type(env, usage); return NULL; }
  }
  int32_t *out;
  size_t n;
  if (!sw_get_int32s(env, argv[2], usage, &out, &n)) return NULL;
  if (n < 2) { sw_throw_range(env, "hostSocketSetup: out needs 2 entries"); return NULL; }
  if (hs_env && hs_env != env) { sw_throw_type(env, "hostSocketSetup: host sockets belong to another thread's environment"); return NULL; }
  if (!hs_actx) {
    napi_value res, name, recv;
    NAPI_OK(env, napi_create_object(env, &res));
    NAPI_OK(env, napi_create_string_utf8(env, "slipway.HostSocket", NAPI_AUTO_LENGTH, &name));
    NAPI_OK(env, napi_async_init(env, res, name, &hs_actx));
    NAPI_OK(env, napi_create_object(env, &recv));
    NAPI_OK(env, napi_create_reference(env, recv, 1, &hs_recv));
  }
  for (int i = 0; i < 2; i++) {
    if (hs_cb[i]) napi_delete_reference(env, hs_cb[i]);
    NAPI_OK(env, napi_create_reference(env, argv[i], 1, &hs_cb[i]));
  }
  if (hs_out_ref) napi_delete_reference(env, hs_out_ref);
  NAPI_OK(env, napi_create_reference(env, argv[2], 1, &hs_out_ref));
  hs_out = out;
  hs_env = env;
  return NULL;
}

static napi_value hs_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) { sw_throw_type(env, "hostSocketOpen(family, address, port, bindAddress)"); return NULL; }
  if (hs_env != env || !hs_out) { sw_throw_type(env, "hostSocketOpen: hostSocketSetup first"); return NULL; }
  int64_t fam, port;
  if (!sw_get_int(env, argv[0], "family", 4, 6, &fam)) return NULL;
  if (!sw_get_int(env, argv[2], "port", 1, 65535, &port)) return NULL;
  char addr[64], bind_addr[64];
  size_t n;
  if (napi_get_value_string_utf8(env, argv[1], addr, sizeof addr, &n) != napi_ok) { sw_throw_type(env, "address must be a string"); return NULL; }
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  bool do_bind = t == napi_string;
  if (do_bind && napi_get_value_string_utf8(env, argv[3], bind_addr, sizeof bind_addr, &n) != napi_ok) return NULL;
  int family = fam == 6 ? AF_INET6 : AF_INET;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { sw_throw_errno(env, "socket", errno); return NULL; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int err = sw_bind_connect(fd, family, do_bind ? bind_addr : NULL, addr, (int)port);
  bool connected_now = err == 0;
  if (err == EINPROGRESS) err = 0;
  if (err) { close(fd); sw_throw_errno(env, do_bind ? "connect/bind" : "connect", err); return NULL; }
  hostsock_t *s = calloc(1, sizeof *s);
  if (!s) { close(fd); sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  if (!sw_handle_init_bare(env, &s->h, fd, true, hs_on_poll)) { close(fd); return NULL; }
  if (!hs_slot_take(s)) {
    s->h.owns_fd = false;
    sw_handle_close(&s->h); /* freed once libuv lets go of the poll */
    close(fd);
    sw_throw_errno(env, "hostSocketOpen (slot table)", ENFILE);
    return NULL;
  }
  s->h.on_close = hs_on_close;
  /* connected already: the caller reports it (out[1]) once its listeners are on */
  s->connecting = !connected_now;
  s->reading = connected_now;
  hs_update(s);
  hs_out[0] = fd;
  hs_out[1] = connected_now ? 1 : 0;
  napi_value v;
  NAPI_OK(env, napi_create_uint32(env, s->id, &v));
  return v;
}

static napi_value hs_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (bad) return NULL;
  if (!s) return hs_int(env, -EBADF);
  uint8_t *p;
  size_t len;
  if (argc < 2 || !sw_get_bytes(env, argv[1], "buf", &p, &len)) return NULL;
  ssize_t r;
  do r = send(s->h.fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  if (r < 0) return hs_int(env, -errno);
  napi_value v;
  napi_create_double(env, (double)r, &v);
  return v;
}

/* argv[1] as a boolean (false when absent). */
static bool hs_flag(napi_env env, size_t argc, napi_value *argv) {
  bool on = false;
  if (argc > 1) napi_get_value_bool(env, argv[1], &on);
  return on;
}

/* (id, on): wantWrite (want_write) or read (reading), then the poll follows. */
static napi_value hs_set_wish(napi_env env, napi_callback_info info, bool write) {
  size_t argc = 2;
  napi_value argv[2];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (!s) return NULL;
  bool on = hs_flag(env, argc, argv);
  if (write) s->want_write = on;
  else s->reading = on;
  hs_update(s);
  return NULL;
}

static napi_value hs_want_write(napi_env env, napi_callback_info info) { return hs_set_wish(env, info, true); }
static napi_value hs_read(napi_env env, napi_callback_info info) { return hs_set_wish(env, info, false); }

static napi_value hs_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (bad) return NULL;
  if (!s) return hs_int(env, -EBADF);
  return hs_int(env, shutdown(s->h.fd, SHUT_WR) < 0 ? -errno : 0);
}

static napi_value hs_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (!s) return NULL;
  if (hs_flag(env, argc, argv)) {
    struct linger l = { 1, 0 };
    setsockopt(s->h.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  sw_handle_close(&s->h);
  return NULL;
}

/* hostSocketExpressAttach(id, tap, state: Int32Array, hdr): put the flow on the tap's express
 * lane (native/express.c); hdr is the Ethernet + IPv4 + TCP (54 bytes) or Ethernet + IPv6 + TCP
 * (74) header of a segment to the guest.
 * hostSocketExpressDetach(id) takes it off; hostSocketExpressUnacked(id) copies the bytes the lane
 * sent and the guest has not acknowledged. */
static napi_value hs_express_attach(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (bad) return NULL;
  if (argc < 4) { sw_throw_type(env, "hostSocketExpressAttach(id, tap, state, hdr)"); return NULL; }
  if (!s || s->connecting) { sw_throw_errno(env, "expressAttach", !s ? EBADF : ENOTCONN); return NULL; }
  if (s->xf) { sw_throw_type(env, "expressAttach: already attached"); return NULL; }
  uint8_t *hdr;
  size_t hl;
  if (!sw_get_bytes(env, argv[3], "hdr", &hdr, &hl)) return NULL;
  bool v4 = hl == 54 && hdr[12] == 0x08 && hdr[13] == 0x00 && hdr[14] == 0x45;
  bool v6 = hl == 74 && hdr[12] == 0x86 && hdr[13] == 0xdd && (hdr[14] >> 4) == 6;
  if (!v4 && !v6) { sw_throw_range(env, "expressAttach: hdr must be Ethernet + IPv4 + TCP (54 bytes) or Ethernet + IPv6 + TCP (74)"); return NULL; }
  sw_xtap *x = sw_tap_xtap(env, argv[1]);
  if (!x) return NULL;
  s->xf = sw_xflow_new(env, x, s->h.fd, argv[2], hdr, hl);
  return NULL;
}

static napi_value hs_express_detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (!s) return NULL;
  if (s->xf) sw_xflow_free(env, s->xf);
  s->xf = NULL;
  return NULL;
}

static napi_value hs_express_unacked(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool bad;
  hostsock_t *s = hs_args(env, info, &argc, argv, &bad);
  if (bad) return NULL;
  if (!s || !s->xf) {
    napi_value b;
    void *d;
    NAPI_OK(env, napi_create_buffer(env, 0, &d, &b));
    return b;
  }
  return sw_xflow_unacked(env, s->xf);
}

/* setHostReadBuffer(buf): where HostSockets read to from now on (kept referenced). */
static napi_value hs_set_read_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *p;
  size_t len;
  if (argc < 1 || !sw_get_bytes(env, argv[0], "buf", &p, &len)) return NULL;
  if (len == 0) { sw_throw_range(env, "setHostReadBuffer: empty buffer"); return NULL; }
  napi_ref r;
  NAPI_OK(env, napi_create_reference(env, argv[0], 1, &r));
  if (hs_buf_ref) napi_delete_reference(env, hs_buf_ref);
  hs_buf_ref = r;
  hs_buf = p;
  hs_buf_len = len;
  return NULL;
}

napi_value sw_init_hostsock(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "setHostReadBuffer", hs_set_read_buffer },
    { "hostSocketSetup", hs_setup },
    { "hostSocketOpen", hs_open },
    { "hostSocketWrite", hs_write },
    { "hostSocketWantWrite", hs_want_write },
    { "hostSocketRead", hs_read },
    { "hostSocketShutdown", hs_shutdown },
    { "hostSocketClose", hs_close },
    { "hostSocketExpressAttach", hs_express_attach },
    { "hostSocketExpressDetach", hs_express_detach },
    { "hostSocketExpressUnacked", hs_express_unacked },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    NAPI_OK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
    NAPI_OK(env, napi_set_named_property(env, exports, fns[i].name, f));
  }
  return exports;
}
