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
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define TAP_MAX_ROUNDS 8
#define TAP_MAX_IOV 64

typedef struct {
  sw_handle h;
  sw_ring ring;
  uint8_t *vnet;       /* memory of the `vnet` Buffer: vnet_len bytes per slot (or NULL) */
  size_t vnet_len;
  bool paused;
  sw_xtap *x;          /* the express lane's table (expressStart), or NULL */
  double rx_frames, rx_bytes, tx_frames, tx_bytes, tx_dropped, rx_errors;
} tap_t;

static void tap_on_poll(sw_handle *h, int status, int events) {
  tap_t *t = (tap_t *)h;
  (void)events;
  if (status < 0) { t->rx_errors++; sw_handle_stop(h); return; } /* poll error: would repeat forever */
  for (int round = 0; round < TAP_MAX_ROUNDS; round++) {
    size_t n = 0;
    bool eof = false;
    while (n < t->ring.slots) {
      ssize_t r;
      if (t->vnet_len) {
        struct iovec iov[2] = {
          { t->vnet + n * t->vnet_len, t->vnet_len },
          { t->ring.data + n * t->ring.slot_size, t->ring.slot_size },
        };
        r = readv(h->fd, iov, 2);
        if (r > 0 && (size_t)r < t->vnet_len) { t->rx_errors++; continue; } /* header only: drop */
        if (r > 0) r -= (ssize_t)t->vnet_len;
        if (r == 0) continue; /* empty frame after the header: nothing to hand over */
      } else {
        r = read(h->fd, t->ring.data + n * t->ring.slot_size, t->ring.slot_size);
      }
      if (r > 0) {
        t->rx_frames++;
        t->rx_bytes += (double)r;
        sw_busy_poll_bytes += (uint64_t)r;
        /* taken by the express lane: the slot is read into again */
        if (t->x && sw_xtap_rx(t->x, t->ring.data + n * t->ring.slot_size, (size_t)r, t->vnet_len ? t->vnet + n * t->vnet_len : NULL)) continue;
        t->ring.lengths[n++] = (int32_t)r;
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
    if (n > 0 && !sw_ring_deliver(h, n)) return;
    /* ring was not filled: drained until EAGAIN (or error) */
    if (n < t->ring.slots || eof || t->paused || !h->polling) return;
  }
  /* still more: uv_poll is level-triggered, we come back on the next loop iteration */
}

static void tap_on_close(sw_handle *h) {
  tap_t *t = (tap_t *)h;
  if (t->x) sw_xtap_close(t->x);
  t->x = NULL;
}

static napi_value tap_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (!sw_is_new(env, info, "Tap")) return NULL;
  if (argc < 4) { sw_throw_type(env, "new Tap(fd, slotSize, slots, onFrames)"); return NULL; }
  int64_t fd, slot_size, slots;
  if (!sw_get_int(env, argv[0], "fd", 0, INT_MAX, &fd)) return NULL;
  if (!sw_get_int(env, argv[1], "slotSize", 64, 1 << 20, &slot_size)) return NULL;
  if (!sw_get_int(env, argv[2], "slots", 1, 1 << 16, &slots)) return NULL;
  int64_t vnet_len = 0;
  if (argc >= 5 && !sw_get_int(env, argv[4], "vnetHdrLen", 0, 12, &vnet_len)) return NULL;
  if (vnet_len != 0 && vnet_len != 10 && vnet_len != 12) { sw_throw_range(env, "vnetHdrLen must be 0, 10 or 12"); return NULL; }
  if ((uint64_t)slot_size * (uint64_t)slots > (1ull << 31)) { sw_throw_range(env, "ring too large (max 2 GiB)"); return NULL; }

  if (!sw_set_nonblock(env, (int)fd)) return NULL;

  sw_ring ring;
  if (!sw_ring_init(env, self, (size_t)slot_size, (size_t)slots, &ring)) return NULL;
  napi_value vnet;
  void *vnet_data = NULL;
  if (vnet_len) {
    NAPI_OK(env, napi_create_buffer(env, (size_t)(vnet_len * slots), &vnet_data, &vnet));
    memset(vnet_data, 0, (size_t)(vnet_len * slots));
  } else {
    NAPI_OK(env, napi_get_null(env, &vnet));
  }
  napi_property_descriptor props[] = {
    { "vnet", NULL, NULL, NULL, NULL, vnet, napi_enumerable, NULL },
  };
  NAPI_OK(env, napi_define_properties(env, self, 1, props));

  tap_t *t = calloc(1, sizeof *t);
  if (!t) { sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  t->ring = ring;
  t->vnet = vnet_data;
  t->vnet_len = (size_t)vnet_len;
  if (!sw_handle_init(env, &t->h, self, (int)fd, true, "slipway.Tap", argv[3], NULL, tap_on_poll)) return NULL;
  t->h.on_close = tap_on_close;
  if (!sw_handle_start_new(&t->h, UV_READABLE)) return NULL;
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
  uint32_t cnt;
  if (!sw_get_array(env, parts, usage, &cnt)) return NULL;
  if (cnt > TAP_MAX_IOV) { sw_throw_range(env, "writev: at most 64 parts"); return NULL; }
  struct iovec iov[TAP_MAX_IOV + 1];
  int k = 0;
  if (t->vnet_len) {
    iov[k].iov_base = (void *)hdr;
    iov[k++].iov_len = t->vnet_len;
  }
  size_t total;
  if (!sw_get_iov(env, parts, 0, cnt, "parts[i]", iov + k, &total)) return NULL;
  k += (int)cnt;
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

/* The virtio_net_hdr of an offloaded frame: checksum left to the kernel (NEEDS_CSUM) from
 * csum_start, stored at csum_start + csum_offset; gso_type != 0 makes it a GSO super-frame of
 * gso_size-byte segments. Fields in native (little) endian, as tun expects. */
static void offload_header(uint8_t hdr[12], int gso_type, int hdr_len, int gso_size, int csum_start, int csum_offset) {
  uint16_t v;
  memset(hdr, 0, 12);
  hdr[0] = 1; /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
  hdr[1] = (uint8_t)gso_type;
  v = (uint16_t)hdr_len; memcpy(hdr + 2, &v, 2);
  v = (uint16_t)gso_size; memcpy(hdr + 4, &v, 2);
  v = (uint16_t)csum_start; memcpy(hdr + 6, &v, 2);
  v = (uint16_t)csum_offset; memcpy(hdr + 8, &v, 2);
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
  uint8_t hdr[12];
  offload_header(hdr, (int)gso_type, (int)hdr_len, (int)gso_size, (int)csum_start, (int)csum_offset);
  return tap_writev_parts(env, t, argv[0], hdr, usage);
}

/* sendOffload(hdr, hdrLen, payload, off, len, gsoType, gsoSize, csumStart, csumOffset): what
 * writevOffload does for the frame hdr[0, hdrLen) + payload[off, off + len) (payload may be null
 * when len is 0), without an array of views: the per-segment path's one native call. */
static napi_value tap_send_offload(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  static const char usage[] = "sendOffload(hdr, hdrLen, payload, off, len, gsoType, gsoSize, csumStart, csumOffset)";
  tap_t *t = (tap_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!t) return NULL;
  if (!t->vnet_len) { sw_throw_type(env, "sendOffload needs a tap opened with a vnet header"); return NULL; }
  if (argc < 9) { sw_throw_type(env, usage); return NULL; }
  int32_t n[7]; /* hdrLen, off, len, gsoType, gsoSize, csumStart, csumOffset */
  static const int idx[7] = { 1, 3, 4, 5, 6, 7, 8 };
  static const int32_t max[7] = { 65535, INT32_MAX, 65535, 255, 65535, 65535, 65535 };
  for (int i = 0; i < 7; i++) {
    if (napi_get_value_int32(env, argv[idx[i]], &n[i]) != napi_ok || n[i] < 0 || n[i] > max[i]) {
      sw_throw_range(env, usage);
      return NULL;
    }
  }
  uint8_t *h, *p = NULL;
  size_t hn, pn = 0;
  if (!sw_get_bytes(env, argv[0], "hdr", &h, &hn)) return NULL;
  if ((size_t)n[0] > hn) { sw_throw_range(env, "sendOffload: hdrLen is past the end of hdr"); return NULL; }
  if (n[2] > 0) {
    if (!sw_get_bytes(env, argv[2], "payload", &p, &pn)) return NULL;
    if ((size_t)n[1] + (size_t)n[2] > pn) { sw_throw_range(env, "sendOffload: off + len is past the end of payload"); return NULL; }
  }
  uint8_t vh[12];
  offload_header(vh, n[3], n[0], n[4], n[5], n[6]);
  struct iovec iov[3] = { { vh, t->vnet_len }, { h, (size_t)n[0] }, { p ? p + n[1] : NULL, (size_t)n[2] } };
  ssize_t r;
  do r = writev(t->h.fd, iov, n[2] > 0 ? 3 : 2); while (r < 0 && errno == EINTR);
  return tap_result(env, t, r, (size_t)n[0] + (size_t)n[2], "writev");
}

/* expressStart(onTimer, delayMs): start the express lane (native/express.c) on this tap, which
 * must have a vnet header. onTimer() is called delayMs after the lane last left an ACK owed or
 * bytes in flight. */
static napi_value tap_express_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tap_t *t = (tap_t *)sw_unwrap(env, info, &argc, argv, true);
  if (!t) return NULL;
  if (t->vnet_len != 12) { sw_throw_type(env, "expressStart needs a tap opened with a 12-byte vnet header"); return NULL; }
  if (argc < 2) { sw_throw_type(env, "expressStart(onTimer, delayMs)"); return NULL; }
  int64_t delay;
  if (!sw_get_int(env, argv[1], "delayMs", 1, 60000, &delay)) return NULL;
  napi_valuetype ty;
  napi_typeof(env, argv[0], &ty);
  if (ty != napi_function) { sw_throw_type(env, "expressStart: onTimer must be a function"); return NULL; }
  if (t->x) { sw_throw_type(env, "expressStart: already started"); return NULL; }
  NAPI_OK(env, napi_create_reference(env, argv[0], 1, &t->h.cb[1]));
  t->x = sw_xtap_new(&t->h, t->h.fd, t->vnet_len, (uint32_t)delay);
  if (!t->x) { sw_throw_errno(env, "expressStart", ENOMEM); return NULL; }
  return NULL;
}

sw_xtap *sw_tap_xtap(napi_env env, napi_value tap) {
  void *p = NULL;
  napi_valuetype ty;
  if (napi_typeof(env, tap, &ty) != napi_ok || ty != napi_object || napi_unwrap(env, tap, &p) != napi_ok || !p) {
    sw_throw_type(env, "expressAttach: tap must be a Tap");
    return NULL;
  }
  tap_t *t = p;
  if (t->h.on_poll != tap_on_poll) { sw_throw_type(env, "expressAttach: tap must be a Tap"); return NULL; }
  if (!t->x) { sw_throw_type(env, "expressAttach: the tap's express lane is not started"); return NULL; }
  return t->x;
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

static napi_value tap_stats(napi_env env, napi_callback_info info) {
  tap_t *t = (tap_t *)sw_unwrap(env, info, NULL, NULL, false);
  if (!t) return NULL;
  napi_value o;
  NAPI_OK(env, napi_create_object(env, &o));
  sw_set_num(env, o, "rxFrames", t->rx_frames);
  sw_set_num(env, o, "rxBytes", t->rx_bytes);
  double txf = t->tx_frames, txb = t->tx_bytes;
  if (t->x) sw_xtap_tx_totals(t->x, &txf, &txb); /* the lane's frames too */
  sw_set_num(env, o, "txFrames", txf);
  sw_set_num(env, o, "txBytes", txb);
  sw_set_num(env, o, "txDropped", t->tx_dropped);
  sw_set_num(env, o, "rxErrors", t->rx_errors);
  if (t->x) sw_xtap_stats(t->x, env, o);
  return o;
}

napi_value sw_init_tap(napi_env env, napi_value exports) {
  napi_property_descriptor m[] = {
    SW_METHOD("write", tap_write),
    SW_METHOD("writev", tap_writev),
    SW_METHOD("writevOffload", tap_writev_offload),
    SW_METHOD("sendOffload", tap_send_offload),
    SW_METHOD("pause", tap_pause),
    SW_METHOD("resume", tap_resume),
    SW_METHOD("close", sw_close_method),
    SW_METHOD("stats", tap_stats),
    SW_METHOD("expressStart", tap_express_start),
    { "fd", NULL, NULL, sw_fd_getter, NULL, NULL, napi_default_jsproperty, NULL },
  };
  if (!sw_def_class(env, exports, "Tap", tap_new, sizeof m / sizeof m[0], m)) return NULL;
  return exports;
}
