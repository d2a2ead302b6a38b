/* Internet checksum (RFC 1071) partial sum: ones'-complement sum of big-endian 16-bit words,
 * folded to 16 bits, not inverted.
 *
 * The ones'-complement sum is byte-order independent up to a final byte swap, so we sum native
 * 32-bit little-endian loads into a 64-bit accumulator (the compiler vectorizes this loop into
 * widening adds) and swap the folded result once.  2^32 additions of < 2^32 cannot overflow
 * 64 bits, so no carry handling is needed inside the loop. */
#include "addon.h"
#include <string.h>

static inline uint32_t fold64(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  uint32_t x = (uint32_t)s;
  x = (x & 0xffffu) + (x >> 16);
  x = (x & 0xffffu) + (x >> 16);
  return x;
}

__attribute__((optimize("O3")))
uint16_t sw_csum_partial(const uint8_t *p, size_t len, uint32_t initial) {
  uint64_t a0 = 0, a1 = 0;
  size_t i = 0;
  /* main loop: 8 bytes per step as two 32-bit lanes (vectorizable) */
  for (; i + 8 <= len; i += 8) {
    uint32_t w0, w1;
    memcpy(&w0, p + i, 4);
    memcpy(&w1, p + i + 4, 4);
    a0 += w0;
    a1 += w1;
  }
  uint64_t s = a0 + a1;
  if (i + 4 <= len) { uint32_t w; memcpy(&w, p + i, 4); s += w; i += 4; }
  if (i + 2 <= len) { uint16_t w; memcpy(&w, p + i, 2); s += w; i += 2; }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (i < len) s += p[i];                 /* odd byte is the high byte of a BE word: LE low */
  uint32_t f = fold64(s);
  f = ((f & 0xff) << 8) | (f >> 8);       /* back to big-endian word order */
#else
  if (i < len) s += (uint32_t)p[i] << 8;
  uint32_t f = fold64(s);
#endif
  uint64_t t = (uint64_t)f + initial;
  return (uint16_t)fold64(t);
}

napi_value sw_csum(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) { sw_throw_type(env, "csum(buf, offset, length, initial?)"); return NULL; }
  uint8_t *data;
  size_t blen;
  int64_t off, len, init = 0;
  if (!sw_get_bytes(env, argv[0], "buf", &data, &blen)) return NULL;
  if (!sw_get_int(env, argv[1], "offset", 0, (int64_t)blen, &off)) return NULL;
  if (!sw_get_int(env, argv[2], "length", 0, (int64_t)blen - off, &len)) return NULL;
  if (argc > 3) {
    napi_valuetype t;
    napi_typeof(env, argv[3], &t);
    if (t != napi_undefined && !sw_get_int(env, argv[3], "initial", 0, 0xffffffffLL, &init)) return NULL;
  }
  napi_value r;
  NAPI_OK(env, napi_create_uint32(env, sw_csum_partial(data + off, (size_t)len, (uint32_t)init), &r));
  return r;
}
