/* Common machinery: errors, argument helpers, uv_poll-backed wrapped handles, and the pieces
 * the classes built on them share (receive rings, fd and socket set-up). */
#include "addon.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>

static void throw_with(napi_env env, const char *msg, const char *code, int err, const char *syscall,
                       napi_status (*ctor)(napi_env, napi_value, napi_value, napi_value *)) {
  napi_value m, c, e;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok) return;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) != napi_ok) return;
  if (ctor(env, c, m, &e) != napi_ok) return;
  if (err) {
    napi_value n, s;
    napi_create_int32(env, -err, &n);
    napi_set_named_property(env, e, "errno", n);
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s);
    napi_set_named_property(env, e, "syscall", s);
  }
  napi_throw(env, e);
}

void sw_throw_errno(napi_env env, const char *syscall, int err) {
  char msg[256];
  const char *code = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  throw_with(env, msg, code ? code : "EIO", err, syscall, napi_create_error);
}

void sw_throw_type(napi_env env, const char *msg) {
  throw_with(env, msg, "ERR_INVALID_ARG_TYPE", 0, NULL, napi_create_type_error);
}

void sw_throw_range(napi_env env, const char *msg) {
  throw_with(env, msg, "ERR_OUT_OF_RANGE", 0, NULL, napi_create_range_error);
}

void sw_handle_callback_status(napi_env env, napi_status st) {
  bool pending = false;
  if (st == napi_ok) return;
  napi_is_exception_pending(env, &pending);
  if (pending) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc);
  }
}

bool sw_get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out) {
  double d;
  char msg[160];
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", name);
    sw_throw_type(env, msg);
    return false;
  }
  if (!(d >= (double)min && d <= (double)max) || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "%s must be an integer in %lld..%lld", name, (long long)min, (long long)max);
    sw_throw_range(env, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

bool sw_get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len) {
  bool is;
  char msg[160];
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type t;
    size_t n;
    void *p;
    napi_get_typedarray_info(env, v, &t, &n, &p, NULL, NULL);
    if (t == napi_uint8_array || t == napi_int8_array || t == napi_uint8_clamped_array) {
      *data = p; *len = n;
      return true;
    }
  }
  snprintf(msg, sizeof msg, "%s must be a Uint8Array or Buffer", name);
  sw_throw_type(env, msg);
  return false;
}

bool sw_get_int32s(napi_env env, napi_value v, const char *usage, int32_t **data, size_t *len) {
  napi_typedarray_type t;
  void *p;
  if (napi_get_typedarray_info(env, v, &t, len, &p, NULL, NULL) != napi_ok || t != napi_int32_array) {
    sw_throw_type(env, usage);
    return false;
  }
  *data = p;
  return true;
}

bool sw_get_array(napi_env env, napi_value v, const char *usage, uint32_t *len) {
  bool is_arr = false;
  if (napi_is_array(env, v, &is_arr) != napi_ok || !is_arr) {
    sw_throw_type(env, usage);
    return false;
  }
  return napi_get_array_length(env, v, len) == napi_ok;
}

napi_value sw_int_pair(napi_env env, int32_t a, int32_t b) {
  napi_value arr, va, vb;
  NAPI_OK(env, napi_create_array_with_length(env, 2, &arr));
  napi_create_int32(env, a, &va);
  napi_create_int32(env, b, &vb);
  napi_set_element(env, arr, 0, va);
  napi_set_element(env, arr, 1, vb);
  return arr;
}

bool sw_get_iov(napi_env env, napi_value arr, uint32_t first, uint32_t n, const char *name,
                struct iovec *iov, size_t *total) {
  size_t sum = 0;
  for (uint32_t k = 0; k < n; k++) {
    napi_value e;
    uint8_t *d;
    size_t len;
    if (napi_get_element(env, arr, first + k, &e) != napi_ok) return false;
    if (!sw_get_bytes(env, e, name, &d, &len)) return false;
    iov[k].iov_base = d;
    iov[k].iov_len = len;
    sum += len;
  }
  if (total) *total = sum;
  return true;
}

void sw_set_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, k, n);
}

napi_value sw_errno_value(napi_env env, int err) {
  napi_value v;
  if (err) {
    const char *name = strerrorname_np(err);
    napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &v);
  } else {
    napi_get_null(env, &v);
  }
  return v;
}

bool sw_is_new(napi_env env, napi_callback_info info, const char *name) {
  napi_value t;
  if (napi_get_new_target(env, info, &t) != napi_ok) return false;
  if (!t) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be called with new", name);
    sw_throw_type(env, msg);
    return false;
  }
  return true;
}

bool sw_def_class(napi_env env, napi_value exports, const char *name, napi_callback ctor, size_t n,
                  const napi_property_descriptor *m) {
  napi_value cls;
  if (napi_define_class(env, name, NAPI_AUTO_LENGTH, ctor, NULL, n, m, &cls) != napi_ok) return false;
  return napi_set_named_property(env, exports, name, cls) == napi_ok;
}

/* ---- fds and sockets --------------------------------------------------------------------- */

bool sw_set_nonblock(napi_env env, int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    sw_throw_errno(env, "fcntl(O_NONBLOCK)", errno);
    return false;
  }
  return true;
}

int sw_fill_addr(int family, const char *a, int port, struct sockaddr_storage *ss, socklen_t *sl) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, a, &s4->sin_addr) != 1) return EINVAL;
    *sl = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, a, &s6->sin6_addr) != 1) return EINVAL;
    *sl = sizeof *s6;
  }
  return 0;
}

int sw_bind_connect(int fd, int family, const char *bind_addr, const char *addr, int port) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int err = 0;
  if (bind_addr) {
    err = sw_fill_addr(family, bind_addr, 0, &ss, &sl);
    if (!err && bind(fd, (struct sockaddr *)&ss, sl) < 0) err = errno;
  }
  if (!err) err = sw_fill_addr(family, addr, port, &ss, &sl);
  if (err) return err;
  int c;
  do c = connect(fd, (struct sockaddr *)&ss, sl); while (c < 0 && errno == EINTR);
  if (c == 0 || errno != EINPROGRESS) return c == 0 ? 0 : errno;
  /* On loopback and veth the handshake has often finished inside connect() (the SYN-ACK waits in
   * the socket's backlog, processed at release): a 0-timeout poll settles it now and saves the
   * caller an event-loop turn. */
  struct pollfd p = { .fd = fd, .events = POLLOUT };
  if (poll(&p, 1, 0) != 1) return EINPROGRESS;
  /* writable with neither error nor hang-up: connected (a failed connect sets POLLERR) */
  if (!(p.revents & (POLLERR | POLLHUP))) return 0;
  int soerr = 0;
  socklen_t el = sizeof soerr;
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0 ? errno : soerr;
}

/* ---- handles --------------------------------------------------------------------------- */

static void maybe_free(sw_handle *h) {
  if (h->finalized && (h->uv_closed || !h->poll_inited)) {
    if (h->on_free) h->on_free(h);
    free(h);
  }
}

static void on_uv_closed(uv_handle_t *uh) {
  sw_handle *h = (sw_handle *)uh;
  h->uv_closed = true;
  maybe_free(h);
}

static void on_uv_poll(uv_poll_t *p, int status, int events) {
  sw_handle *h = (sw_handle *)p;
  if (h->closed) return;
  sw_busy_poll_begin(p->loop);
  h->on_poll(h, status, events);
  sw_busy_poll_end(p->loop);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  sw_handle *h = data;
  h->finalized = true;
  if (!h->closed) sw_handle_close(h);
  maybe_free(h);
}

bool sw_handle_init(napi_env env, sw_handle *h, napi_value self, int fd, bool owns_fd,
                    const char *resource_name, napi_value cb0, napi_value cb1,
                    void (*on_poll)(sw_handle *, int, int)) {
  h->env = env;
  h->fd = fd;
  h->owns_fd = owns_fd;
  h->on_poll = on_poll;
  napi_value cbs[2] = { cb0, cb1 };
  for (int i = 0; i < 2; i++) {
    if (!cbs[i]) continue;
    napi_valuetype t;
    napi_typeof(env, cbs[i], &t);
    if (t != napi_function) { sw_throw_type(env, "callback must be a function"); free(h); return false; }
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) { free(h); return false; }
  int r = uv_poll_init(loop, &h->poll, fd);
  if (r < 0) { sw_throw_errno(env, "uv_poll_init", -r); free(h); return false; }
  h->poll_inited = true;
  if (!h->actx_shared) {
    napi_value name;
    napi_create_string_utf8(env, resource_name, NAPI_AUTO_LENGTH, &name);
    if (napi_async_init(env, self, name, &h->actx) != napi_ok) goto fail;
  }
  for (int i = 0; i < 2; i++)
    if (cbs[i] && napi_create_reference(env, cbs[i], 1, &h->cb[i]) != napi_ok) goto fail;
  if (napi_create_reference(env, self, 1, &h->self) != napi_ok) goto fail;
  if (napi_wrap(env, self, h, finalize, NULL, NULL) != napi_ok) goto fail;
  return true;
fail:
  /* not wrapped: h is freed from on_uv_closed; the caller still owns the fd */
  h->owns_fd = false;
  h->on_free = NULL;
  sw_handle_close(h);
  h->finalized = true;
  return false;
}

bool sw_handle_init_bare(napi_env env, sw_handle *h, int fd, bool owns_fd,
                         void (*on_poll)(sw_handle *, int, int)) {
  h->env = env;
  h->fd = fd;
  h->owns_fd = owns_fd;
  h->on_poll = on_poll;
  h->finalized = true; /* no JS object to wait for: freed once closed and libuv let go of the poll */
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) { free(h); return false; }
  int r = uv_poll_init(loop, &h->poll, fd);
  if (r < 0) { sw_throw_errno(env, "uv_poll_init", -r); free(h); return false; }
  h->poll_inited = true;
  return true;
}

bool sw_handle_start(sw_handle *h, int events) {
  if (h->closed) return false;
  int r = uv_poll_start(&h->poll, events, on_uv_poll);
  if (r < 0) { sw_throw_errno(h->env, "uv_poll_start", -r); return false; }
  h->events = events;
  h->polling = true;
  return true;
}

void sw_handle_stop(sw_handle *h) {
  if (h->closed || !h->polling) return;
  uv_poll_stop(&h->poll);
  h->polling = false;
}

void sw_handle_close(sw_handle *h) {
  if (h->closed) return;
  if (h->on_close) h->on_close(h);
  h->closed = true;
  napi_env env = h->env;
  /* no uv_poll_stop first: uv_close stops the poll itself, and each stop is an epoll_ctl(DEL) */
  if (h->poll_inited) uv_close((uv_handle_t *)&h->poll, on_uv_closed);
  h->polling = false;
  if (h->owns_fd && h->fd >= 0) close(h->fd);
  h->fd = -1;
  for (int i = 0; i < 2; i++)
    if (h->cb[i]) { napi_delete_reference(env, h->cb[i]); h->cb[i] = NULL; }
  if (h->self) { napi_delete_reference(env, h->self); h->self = NULL; }
  if (h->actx && !h->actx_shared) napi_async_destroy(env, h->actx);
  h->actx = NULL;
}

bool sw_handle_call(sw_handle *h, int which, size_t argc, napi_value *argv) {
  napi_env env = h->env;
  if (h->closed || !h->cb[which]) return false;
  napi_value recv, fn, result;
  napi_get_reference_value(env, h->self, &recv);
  napi_get_reference_value(env, h->cb[which], &fn);
  napi_status st = napi_make_callback(env, h->actx, recv, fn, argc, argv, &result);
  sw_handle_callback_status(env, st);
  return !h->closed;
}

sw_handle *sw_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv,
                     bool must_be_open) {
  napi_value self;
  size_t zero = 0;
  if (napi_get_cb_info(env, info, argc ? argc : &zero, argv, &self, NULL) != napi_ok) return NULL;
  void *p = NULL;
  if (napi_unwrap(env, self, &p) != napi_ok || !p) {
    sw_throw_type(env, "method called on a wrong object");
    return NULL;
  }
  sw_handle *h = p;
  if (must_be_open && h->closed) {
    sw_throw_errno(env, "closed handle", EBADF);
    return NULL;
  }
  return h;
}

bool sw_handle_start_new(sw_handle *h, int events) {
  if (sw_handle_start(h, events)) return true;
  h->owns_fd = false;
  sw_handle_close(h);
  return false;
}

napi_value sw_close_method(napi_env env, napi_callback_info info) {
  sw_handle *h = sw_unwrap(env, info, NULL, NULL, false);
  if (h) sw_handle_close(h);
  return NULL;
}

napi_value sw_fd_getter(napi_env env, napi_callback_info info) {
  sw_handle *h = sw_unwrap(env, info, NULL, NULL, false);
  if (!h) return NULL;
  napi_value v;
  napi_create_int32(env, h->fd, &v);
  return v;
}

/* ---- receive rings ------------------------------------------------------------------------- */

bool sw_ring_init(napi_env env, napi_value self, size_t slot_size, size_t slots, sw_ring *ring) {
  napi_value buf, ab, lengths;
  void *data, *len_data;
  if (napi_create_buffer(env, slot_size * slots, &data, &buf) != napi_ok) return false;
  if (napi_create_arraybuffer(env, slots * 4, &len_data, &ab) != napi_ok) return false;
  if (napi_create_typedarray(env, napi_int32_array, slots, ab, 0, &lengths) != napi_ok) return false;
  napi_property_descriptor props[] = {
    { "ring", NULL, NULL, NULL, NULL, buf, napi_enumerable, NULL },
    { "lengths", NULL, NULL, NULL, NULL, lengths, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, self, 2, props) != napi_ok) return false;
  ring->data = data;
  ring->lengths = len_data;
  ring->slot_size = slot_size;
  ring->slots = slots;
  return true;
}

bool sw_ring_deliver(sw_handle *h, size_t n) {
  napi_env env = h->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[1];
  napi_create_uint32(env, (uint32_t)n, &argv[0]);
  bool open = sw_handle_call(h, 0, 1, argv);
  napi_close_handle_scope(env, scope);
  return open;
}
