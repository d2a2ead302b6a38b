/* Shared pieces of the slipway N-API addon. */
#ifndef SLIPWAY_ADDON_H
#define SLIPWAY_ADDON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Throw a JS Error "syscall: strerror" with .code ('EAGAIN'...), .errno (-err), .syscall. */
void sw_throw_errno(napi_env env, const char *syscall, int err);
/* Throw a TypeError/RangeError with a message. */
void sw_throw_type(napi_env env, const char *msg);
void sw_throw_range(napi_env env, const char *msg);

/* Pending JS exception from a callback: route it to 'uncaughtException'. */
void sw_handle_callback_status(napi_env env, napi_status st);

/* A polled fd wrapped in a JS object.  Embed as the first member. */
typedef struct sw_handle sw_handle;
struct sw_handle {
  uv_poll_t poll;
  napi_env env;
  int fd;
  bool owns_fd;
  bool poll_inited, polling, closed, finalized, uv_closed;
  int events; /* UV_READABLE ... */
  napi_ref self;            /* strong while open: an active handle is not collected */
  napi_ref cb[2];           /* JS callbacks */
  napi_async_context actx;
  bool actx_shared;         /* set with actx before sw_handle_init: one context for many handles */
  void (*on_poll)(sw_handle *h, int status, int events);
  void (*on_free)(sw_handle *h); /* extra cleanup before free() */
  void (*on_close)(sw_handle *h); /* first thing sw_handle_close does (the fd and callbacks still there) */
};

/* Initialise h (calloc'ed) for fd, wrap it in `self`.  On failure: JS exception pending, h is
 * freed (do not touch it), the fd is left open. */
bool sw_handle_init(napi_env env, sw_handle *h, napi_value self, int fd, bool owns_fd,
                    const char *resource_name, napi_value cb0, napi_value cb1,
                    void (*on_poll)(sw_handle *, int, int));
/* The same without a JS object (the owner keeps its own handle to it, e.g. a slot id): no
 * callbacks, no wrap; freed after sw_handle_close once libuv is done with the poll. On failure:
 * JS exception pending, h is freed, the fd is left open. */
bool sw_handle_init_bare(napi_env env, sw_handle *h, int fd, bool owns_fd,
                         void (*on_poll)(sw_handle *, int, int));
bool sw_handle_start(sw_handle *h, int events);
void sw_handle_stop(sw_handle *h);
void sw_handle_close(sw_handle *h);
/* Call cb[i] on the JS side with argv; returns false if the handle got closed meanwhile. */
bool sw_handle_call(sw_handle *h, int which, size_t argc, napi_value *argv);
/* `this` -> handle (throws if closed when must_be_open). */
sw_handle *sw_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv,
                     bool must_be_open);

/* A first start from a constructor: on failure the handle is closed and, as when sw_handle_init
 * fails, the fd is left to the caller (whose exception says why). */
bool sw_handle_start_new(sw_handle *h, int events);
/* close() of a class whose objects are sw_handles; idempotent. */
napi_value sw_close_method(napi_env env, napi_callback_info info);
/* `fd` getter of such a class: -1 once closed. */
napi_value sw_fd_getter(napi_env env, napi_callback_info info);

/* A receive ring shared with JS: `ring`, a Buffer of slots x slot_size bytes, and `lengths`, an
 * Int32Array with one entry a slot.  The JS object keeps both alive, so the pointers stay valid
 * as long as the handle that reads into them. */
typedef struct {
  uint8_t *data;
  int32_t *lengths;
  size_t slot_size, slots;
} sw_ring;
/* Allocate both and set them on self as read-only `ring` and `lengths`. */
bool sw_ring_init(napi_env env, napi_value self, size_t slot_size, size_t slots, sw_ring *ring);
/* Hand slots [0, n) to cb[0] as onBatch(n); false if the handle got closed meanwhile. */
bool sw_ring_deliver(sw_handle *h, size_t n);

/* Throws unless called with `new` ("<name> must be called with new"). */
bool sw_is_new(napi_env env, napi_callback_info info, const char *name);
/* exports[name] = a class with methods m[0..n). */
bool sw_def_class(napi_env env, napi_value exports, const char *name, napi_callback ctor, size_t n,
                  const napi_property_descriptor *m);
#define SW_METHOD(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL }

bool sw_get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out);
bool sw_get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len);
/* v must be an Int32Array (else TypeError `usage`): its elements and their count. */
bool sw_get_int32s(napi_env env, napi_value v, const char *usage, int32_t **data, size_t *len);
/* v must be an array (else TypeError `usage`); its length in *len. */
bool sw_get_array(napi_env env, napi_value v, const char *usage, uint32_t *len);
/* iov[k] = the bytes of arr[first + k], k < n (each a Uint8Array or Buffer, else a TypeError that
 * says `name`); *total, when not NULL, gets their sum. */
bool sw_get_iov(napi_env env, napi_value arr, uint32_t first, uint32_t n, const char *name,
                struct iovec *iov, size_t *total);
/* o[k] = v (a number). */
void sw_set_num(napi_env env, napi_value o, const char *k, double v);
/* The JS array [a, b] (NULL, with an exception pending, on failure). */
napi_value sw_int_pair(napi_env env, int32_t a, int32_t b);
/* null for 0, else the errno's name ("ECONNREFUSED"; "EIO" when it has none): how callbacks
 * report an error. */
napi_value sw_errno_value(napi_env env, int err);

/* O_NONBLOCK on fd; on failure a "fcntl(O_NONBLOCK)" error is thrown. */
bool sw_set_nonblock(napi_env env, int fd);
/* ss/sl = address a (numeric, of `family`) and port; EINVAL when a does not parse. */
int sw_fill_addr(int family, const char *a, int port, struct sockaddr_storage *ss, socklen_t *sl);
/* Bind fd (a non-blocking stream socket of `family`) to bind_addr when it is not NULL and connect
 * it to addr:port.  Returns 0 (connected), EINPROGRESS (wait until writable) or an errno. */
int sw_bind_connect(int fd, int family, const char *bind_addr, const char *addr, int port);

/* ---- express.c: the native lane for established TCP flows (see the file's comment) ---- */
typedef struct sw_xtap sw_xtap;
typedef struct sw_xflow sw_xflow;
/* The express table of a Tap (made by tap.expressStart): fd and vnet header to write frames with. */
sw_xtap *sw_xtap_new(sw_handle *tap, int fd, size_t vnet_len, uint32_t delay_ms);
/* The tap closes: every flow is detached (it falls back to JS) and the table is freed. */
void sw_xtap_close(sw_xtap *x);
/* tap.c's Tap object -> its express table (NULL, with a TypeError pending, when it has none). */
sw_xtap *sw_tap_xtap(napi_env env, napi_value tap);
void sw_xtap_stats(sw_xtap *x, napi_env env, napi_value o);
/* Adds the frames and bytes the lane wrote to the tap. */
void sw_xtap_tx_totals(sw_xtap *x, double *frames, double *bytes);
/* One frame from the guest (vnet = its virtio header): true when the express lane took it whole. */
bool sw_xtap_rx(sw_xtap *x, const uint8_t *frame, size_t len, const uint8_t *vnet);
/* Attach a flow (its host socket fd; st = the shared Int32Array state, hdr = the template: 54
 * bytes, Ethernet + IPv4 + TCP, or 74, Ethernet + IPv6 + TCP). */
sw_xflow *sw_xflow_new(napi_env env, sw_xtap *x, int fd, napi_value st, const uint8_t *hdr, size_t hdr_len);
void sw_xflow_free(napi_env env, sw_xflow *f);
/* The host socket is readable: 1 = handled (a segment went out or nothing to read), 0 = not for
 * the lane (read it the JS way), -errno = read error, 2 = EOF (nothing consumed but the FIN). */
int sw_xflow_tx(sw_xflow *f, int events);
/* Copy of the bytes the lane sent and the guest has not acknowledged (a new Buffer). */
napi_value sw_xflow_unacked(napi_env env, sw_xflow *f);

napi_value sw_csum(napi_env env, napi_callback_info info);
/* memory.cc: V8 low-memory notification (full GCs, young generation shrunk). */
napi_value sw_low_memory(napi_env env, napi_callback_info info);
uint16_t sw_csum_partial(const uint8_t *p, size_t len, uint32_t initial);

napi_value sw_init_tap(napi_env env, napi_value exports);
napi_value sw_init_misc(napi_env env, napi_value exports);
napi_value sw_init_splice(napi_env env, napi_value exports);
napi_value sw_init_sockio(napi_env env, napi_value exports);
napi_value sw_init_hostsock(napi_env env, napi_value exports);
napi_value sw_init_udp(napi_env env, napi_value exports);
napi_value sw_init_spawn(napi_env env, napi_value exports);
napi_value sw_init_busy_poll(napi_env env, napi_value exports);
/* busypoll.c: around each uv_poll event's handling (handle.c), for the adaptive busy-poll window. */
void sw_busy_poll_begin(uv_loop_t *loop);
void sw_busy_poll_end(uv_loop_t *loop);
/* Bytes read from the tap and from host sockets (tap.c, sockio.c, express.c): an event whose
 * handling read SW_BUSY_POLL_BULK or more was bulk transfer, and busypoll.c does not poll after it. */
extern uint64_t sw_busy_poll_bytes;
#define SW_BUSY_POLL_BULK (16 * 1024)

#define NAPI_OK(env, call)                                                                      \
  do {                                                                                          \
    if ((call) != napi_ok) return NULL;                                                         \
  } while (0)

#endif
