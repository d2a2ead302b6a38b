/* Tap: batch frame reader into a preallocated ring + write/writev.
 *
 * With a virtio-net header (IFF_VNET_HDR, 12 bytes, vnet_len = 12), every frame on the fd is
 * preceded by struct virtio_net_hdr_mrg_rxbuf. Reads put that header in `vnet` (12 bytes per
 * slot) and the frame itself at the start of its ring slot, so frame offsets are the same with
 * and without it. Plain writes get an all-zero header (no offload); writevOffload() writes one
 * that asks the kernel to finish the TCP/UDP checksum and, for super-frames, to treat the frame
 * as GSO (gso_size = the receiver's MSS). */
#include "addon.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define TAP_MAX_ROUNDS 8
#define TAP_MAX_IOV 64

typedef struct {
  sw_handle h;
  uint8_t *ring;       /* memory of the `ring` Buffer (kept alive by the JS object) */
  int32_t *lengths;    /* memory of the `lengths` Int32Array */
  uint8_t *vnet;       /* memory of the `vnet` Buffer: vnet_len bytes per slot (or NULL) */
  size_t slot_size, slots, vnet_len;
  bool paused;
  double rx_frames, rx_bytes, tx_frames, tx_bytes, tx_dropped, rx_errors;
} tap_t;

static void tap_on_poll(sw_handle *h, int status, int events) {
  tap_t *t = (tap_t *)h;
  napi_env env = h->env;
  (void)events;
  if (status < 0) { t->rx_errors++; sw_handle_stop(h); return; } /* poll error: would repeat forever */
  for (int round = 0; round < TAP_MAX_ROUNDS; round++) {
    size_t n = 0;
    bool eof = false;
    while (n < t->slots) {
      ssize_t r;
      if (t->vnet_len) {
        struct iovec iov[2] = {
          { t->vnet + n * t->vnet_len, t->vnet_len },
          { t->ring + n * t->slot_size, t->slot_size },
        };
        r = readv(h->fd, iov, 2);
        if (r > 0 && (size_t)r < t->vnet_len) { t->rx_errors++; continue; } /* header only: drop */
        if (r > 0) r -= (ssize_t)t->vnet_len;
        if (r == 0) continue; /* empty frame after the header: nothing to hand over */
      } else {
        r = read(h->fd, t->ring + n * t->slot_size, t->slot_size);
      }
      if (r > 0) {
        t->lengths[n++] = (int32_t)r;
        t->rx_frames++;
        t->rx_bytes += (double)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (r == 0) { eof = true; break; }      /* not for a tap; a socket/pipe peer went away */
      t->rx_errors++;
      if (errno == EBADF || errno == EBADFD || errno == EINVAL) eof = true; /* tap detached */
      break;
    }
    if (eof) sw_handle_stop(h);
    if (n > 0) {
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      napi_value argv[1];
      napi_create_uint32(env, (uint32_t)n, &argv[0]);
      bool open = sw_handle_call(h, 0, 1, argv);
      napi_close_handle_scope(env, scope);
      if (!open) return;
    }
    /* ring was not filled: drained until EAGAIN (or error) */
    if (n < t->slots || eof || t->paused || !h->polling) return;
  }
  /* still more: uv_poll is level-triggered, we come back on the next loop iteration */
}

static napi_value tap_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self, target;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  NAPI_OK(env, napi_get_new_target(env, info, &target));
  if (!target) { sw_throw_type(env, "Tap must be called with new"); return NULL; }
  if (argc < 4) { sw_throw_type(env, "new Tap(fd, slotSize, slots, onFrames)"); return NULL; }
  int64_t fd, slot_size, slots;
  if (!sw_get_int(env, argv[0], "fd", 0, INT_MAX, &fd)) return NULL;
  if (!sw_get_int(env, argv[1], "slotSize", 64, 1 << 20, &slot_size)) return NULL;
  if (!sw_get_int(env, argv[2], "slots", 1, 1 << 16, &slots)) return NULL;
  int64_t vnet_len = 0;
  if (argc >= 5 && !sw_get_int(env, argv[4], "vnetHdrLen", 0, 12, &vnet_len)) return NULL;
  if (vnet_len != 0 && vnet_len != 10 && vnet_len != 12) { sw_throw_range(env, "vnetHdrLen must be 0, 10 or 12"); return NULL; }
  if ((uint64_t)slot_size * (uint64_t)slots > (1ull << 31)) { sw_throw_range(env, "ring too large (max 2 GiB)"); return NULL; }

  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0) { sw_throw_errno(env, "fcntl(O_NONBLOCK)", errno); return NULL; }

  napi_value ring, ab, lengths;
  void *ring_data, *len_data;
  NAPI_OK(env, napi_create_buffer(env, (size_t)(slot_size * slots), &ring_data, &ring));
  NAPI_OK(env, napi_create_arraybuffer(env, (size_t)slots * 4, &len_data, &ab));
  NAPI_OK(env, napi_create_typedarray(env, napi_int32_array, (size_t)slots, ab, 0, &lengths));
  napi_value vnet;
  void *vnet_data = NULL;
  if (vnet_len) {
    NAPI_OK(env, napi_create_buffer(env, (size_t)(vnet_len * slots), &vnet_data, &vnet));
    memset(vnet_data, 0, (size_t)(vnet_len * slots));
  } else {
    NAPI_OK(env, napi_get_null(env, &vnet));
  }
  napi_property_descriptor props[] = {
    { "ring", NULL, NULL, NULL, NULL, ring, napi_enumerable, NULL },
    { "lengths", NULL, NULL, NULL, NULL, lengths, napi_enumerable, NULL },
    { "vnet", NULL, NULL, NULL, NULL, vnet, napi_enumerable, NULL },
  };
  NAPI_OK(env, napi_define_properties(env, self, 3, props));

  tap_t *t = calloc(1, sizeof *t);
  if (!t) { sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  t->ring = ring_data;
  t->lengths = len_data;
  t->slot_size = (size_t)slot_size;
  t->slots = (size_t)slots;
  t->vnet = vnet_data;
  t->vnet_len = (size_t)vnet_len;
  if (!sw_handle_init(env, &t->h, self, (int)fd, true, "slipway.Tap", argv[3], NULL, tap_on_poll)) return NULL;
  if (!sw_handle_start(&t->h, UV_READABLE)) {
    t->h.owns_fd = false;
    sw_handle_close(&t->h);
    return NULL;
  }
  return self;
}

static napi_value ret_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

static napi_value tap_result(napi_env env, tap_t *t, ssize_t r, size_t len, const char *sys) {
  if (r >= 0) {
    t->tx_frames++;
    t->tx_bytes += (double)len;
    return ret_bool(env, true);
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
    t->tx_dropped++;
    return ret_bool(env, false);
  }
  sw_throw_errno(env, sys, errno);
  return NULL;
}

static napi_value tap_write(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = (tap_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!t) return NULL;
  if (argc < 1) { sw_throw_type(env, "write(frame)"); return NULL; }
  uint8_t *d;
  size_t n;
  if (!sw_get_bytes(env, argv[0], "frame", &d, &n)) return NULL;
  ssize_t r;
  if (t->vnet_len) {
    static const uint8_t zero_hdr[12];
    struct iovec iov[2] = { { (void *)zero_hdr, t->vnet_len }, { d, n } };
    do r = writev(t->h.fd, iov, 2); while (r < 0 && errno == EINTR);
  } else {
    do r = write(t->h.fd, d, n); while (r < 0 && errno == EINTR);
  }
  return tap_result(env, t, r, n, "write");
}

/* Write one frame from parts[], preceded by `hdr` (vnet_len bytes) when the tap has a vnet header. */
static napi_value tap_writev_parts(napi_env env, tap_t *t, napi_value parts, const uint8_t *hdr, const char *usage) {
  bool is_arr = false;
  if (napi_is_array(env, parts, &is_arr) != napi_ok || !is_arr) {
    sw_throw_type(env, usage);
    return NULL;
  }
  uint32_t cnt;
  NAPI_OK(env, napi_get_array_length(env, parts, &cnt));
  if (cnt > TAP_MAX_IOV) { sw_throw_range(env, "writev: at most 64 parts"); return NULL; }
  struct iovec iov[TAP_MAX_IOV + 1];
  int k = 0;
  if (t->vnet_len) {
    iov[k].iov_base = (void *)hdr;
    iov[k++].iov_len = t->vnet_len;
  }
  size_t total = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    napi_value e;
    NAPI_OK(env, napi_get_element(env, parts, i, &e));
    uint8_t *d;
    size_t n;
    if (!sw_get_bytes(env, e, "parts[i]", &d, &n)) return NULL;
    iov[k].iov_base = d;
    iov[k++].iov_len = n;
    total += n;
  }
  ssize_t r;
  do r = writev(t->h.fd, iov, k); while (r < 0 && errno == EINTR);
  return tap_result(env, t, r, total, "writev");
}

static napi_value tap_writev(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = (tap_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!t) return NULL;
  static const uint8_t zero_hdr[12];
  if (argc < 1) { sw_throw_type(env, "writev(parts: Uint8Array[])"); return NULL; }
  return tap_writev_parts(env, t, argv[0], zero_hdr, "writev(parts: Uint8Array[])");
}

/* writevOffload(parts, gsoType, gsoSize, csumStart, csumOffset, hdrLen): one frame whose L4
 * checksum field holds the pseudo-header sum; the kernel completes it (VIRTIO_NET_HDR_F_NEEDS_CSUM)
 * and, when gsoType != 0, treats the frame as a GSO super-frame of gsoSize-byte segments. */
static napi_value tap_writev_offload(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  const char *usage = "writevOffload(parts, gsoType, gsoSize, csumStart, csumOffset, hdrLen)";
  tap_t *t = (tap_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!t) return NULL;
  if (!t->vnet_len) { sw_throw_type(env, "writevOffload needs a tap opened with a vnet header"); return NULL; }
  if (argc < 6) { sw_throw_type(env, usage); return NULL; }
  int64_t gso_type, gso_size, csum_start, csum_offset, hdr_len;
  if (!sw_get_int(env, argv[1], "gsoType", 0, 255, &gso_type)) return NULL;
  if (!sw_get_int(env, argv[2], "gsoSize", 0, 65535, &gso_size)) return NULL;
  if (!sw_get_int(env, argv[3], "csumStart", 0, 65535, &csum_start)) return NULL;
  if (!sw_get_int(env, argv[4], "csumOffset", 0, 65535, &csum_offset)) return NULL;
  if (!sw_get_int(env, argv[5], "hdrLen", 0, 65535, &hdr_len)) return NULL;
  uint8_t hdr[12] = { 0 };
  hdr[0] = 1; /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
  hdr[1] = (uint8_t)gso_type;
  uint16_t v;
  v = (uint16_t)hdr_len; memcpy(hdr + 2, &v, 2);      /* native (little) endian, as tun expects */
  v = (uint16_t)gso_size; memcpy(hdr + 4, &v, 2);
  v = (uint16_t)csum_start; memcpy(hdr + 6, &v, 2);
  v = (uint16_t)csum_offset; memcpy(hdr + 8, &v, 2);
  return tap_writev_parts(env, t, argv[0], hdr, usage);
}

static napi_value tap_pause(napi_env env, napi_callback_info info) {
  tap_t *t = (tap_t *)sw_unwrap(env, info, NULL, NULL, false);
  if (!t) return NULL;
  t->paused = true;
  sw_handle_stop(&t->h);
  return NULL;
}

static napi_value tap_resume(napi_env env, napi_callback_info info) {
  tap_t *t = (tap_t *)sw_unwrap(env, info, NULL, NULL, true);
  if (!t) return NULL;
  t->paused = false;
  if (!t->h.polling) sw_handle_start(&t->h, UV_READABLE);
  return NULL;
}

static napi_value tap_close(napi_env env, napi_callback_info info) {
  sw_handle *h = sw_unwrap(env, info, NULL, NULL, false);
  if (h) sw_handle_close(h);
  return NULL;
}

static void set_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, k, n);
}

static napi_value tap_stats(napi_env env, napi_callback_info info) {
  tap_t *t = (tap_t *)sw_unwrap(env, info, NULL, NULL, false);
  if (!t) return NULL;
  napi_value o;
  NAPI_OK(env, napi_create_object(env, &o));
  set_num(env, o, "rxFrames", t->rx_frames);
  set_num(env, o, "rxBytes", t->rx_bytes);
  set_num(env, o, "txFrames", t->tx_frames);
  set_num(env, o, "txBytes", t->tx_bytes);
  set_num(env, o, "txDropped", t->tx_dropped);
  set_num(env, o, "rxErrors", t->rx_errors);
  return o;
}

static napi_value tap_fd(napi_env env, napi_callback_info info) {
  sw_handle *h = sw_unwrap(env, info, NULL, NULL, false);
  if (!h) return NULL;
  napi_value v;
  napi_create_int32(env, h->fd, &v);
  return v;
}

napi_value sw_init_tap(napi_env env, napi_value exports) {
  napi_property_descriptor m[] = {
    { "write", NULL, tap_write, NULL, NULL, NULL, napi_default_method, NULL },
    { "writev", NULL, tap_writev, NULL, NULL, NULL, napi_default_method, NULL },
    { "writevOffload", NULL, tap_writev_offload, NULL, NULL, NULL, napi_default_method, NULL },
    { "pause", NULL, tap_pause, NULL, NULL, NULL, napi_default_method, NULL },
    { "resume", NULL, tap_resume, NULL, NULL, NULL, napi_default_method, NULL },
    { "close", NULL, tap_close, NULL, NULL, NULL, napi_default_method, NULL },
    { "stats", NULL, tap_stats, NULL, NULL, NULL, napi_default_method, NULL },
    { "fd", NULL, NULL, tap_fd, NULL, NULL, napi_default_jsproperty, NULL },
  };
  napi_value cls;
  NAPI_OK(env, napi_define_class(env, "Tap", NAPI_AUTO_LENGTH, tap_new, NULL, sizeof m / sizeof m[0], m, &cls));
  NAPI_OK(env, napi_set_named_property(env, exports, "Tap", cls));
  return exports;
}
