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
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t ol_n = 0;
  void *ol_data = NULL;
  if (napi_is_typedarray(env, argv[2], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[2], &tt, &ol_n, &ol_data, NULL, NULL) != napi_ok || tt != napi_int32_array) {
    sw_throw_type(env, usage);
    return NULL;
  }
  if (!sw_get_int(env, argv[3], "count", 0, (int64_t)(ol_n / 2), &count)) return NULL;
  const int32_t *ol = ol_data;
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
