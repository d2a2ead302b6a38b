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
  void (*on_poll)(sw_handle *h, int status, int events);
  void (*on_free)(sw_handle *h); /* extra cleanup before free() */
};

/* Initialise h (calloc'ed) for fd, wrap it in `self`.  On failure: JS exception pending, h is
 * freed (do not touch it), the fd is left open. */
bool sw_handle_init(napi_env env, sw_handle *h, napi_value self, int fd, bool owns_fd,
                    const char *resource_name, napi_value cb0, napi_value cb1,
                    void (*on_poll)(sw_handle *, int, int));
bool sw_handle_start(sw_handle *h, int events);
void sw_handle_stop(sw_handle *h);
void sw_handle_close(sw_handle *h);
/* Call cb[i] on the JS side with argv; returns false if the handle got closed meanwhile. */
bool sw_handle_call(sw_handle *h, int which, size_t argc, napi_value *argv);
/* `this` -> handle (throws if closed when must_be_open). */
sw_handle *sw_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv,
                     bool must_be_open);

bool sw_get_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out);
bool sw_get_bytes(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len);

napi_value sw_csum(napi_env env, napi_callback_info info);
uint16_t sw_csum_partial(const uint8_t *p, size_t len, uint32_t initial);

napi_value sw_init_tap(napi_env env, napi_value exports);
napi_value sw_init_misc(napi_env env, napi_value exports);
napi_value sw_init_splice(napi_env env, napi_value exports);
napi_value sw_init_sockio(napi_env env, napi_value exports);
napi_value sw_init_hostsock(napi_env env, napi_value exports);

#define NAPI_OK(env, call)                                                                      \
  do {                                                                                          \
    if ((call) != napi_ok) return NULL;                                                         \
  } while (0)

#endif
