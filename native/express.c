/* The express lane: established TCP flows (IPv4 and IPv6) in their simplest state, handled without a call
 * into JavaScript.
 *
 * A request/response exchange costs the JS relay (src/flows/tcp.ts) two wake-ups that each cross
 * into JS: the guest's request (tap readable -> parse -> write to the host socket) and the host's
 * reply (socket readable -> read -> build a segment -> write to the tap). Measured on the benchmark
 * VM that crossing, with the JS it runs, is ~17 us of CPU per exchange (bench/PROFILE.md). Here the
 * same two steps are done in C for a flow whose JS side has nothing pending, and JS is called only
 * when something is not simple.
 *
 * Ownership. The flow's state lives in JS (TcpFlow). When JS finds the flow idle (nothing queued
 * either way, nothing unacknowledged by JS, no FIN, window open) it *publishes* the numbers the
 * lane needs into a shared Int32Array (`st`, layout X_* below, mirrored in src/flows/express.ts)
 * and sets X_FLAGS. The lane then moves RCV.NXT, SND.UNA, SND.NXT and the guest's window in that
 * array. Before JS does anything with the flow it *syncs*: it clears X_FLAGS (the lane stops),
 * reads the numbers back and takes over the lane's obligations: an ACK owed for a request, and
 * the bytes sent to the guest and not yet acknowledged (copied out of the lane's buffer into the
 * flow's send queue, so JS retransmits them). JS is single-threaded and the lane runs only inside
 * poll callbacks, so the two never run at once.
 *
 * What the lane takes from the guest (else the frame goes to JS as before, and the flow's
 * X_FLAGS is cleared so later frames of it in the same batch keep their order): a frame for our
 * MAC from the flow's guest MAC, IPv4 without options or fragments, TTL > 1 and a verified header
 * checksum, or IPv6 with TCP right after its header and a hop limit > 1, an L4 checksum the guest kernel vouches for (vnet NEEDS_CSUM or DATA_VALID), no GSO;
 * TCP without options, flags ACK or ACK|PSH, exactly at RCV.NXT, an ACK within [SND.UNA, SND.NXT],
 * and either no payload (an ACK, only while nothing or less than all is acknowledged... see
 * below) or a lone request: PSH, shorter than our MSS, within our window, no ACK owed already.
 * The payload goes to the host socket with one send(); if the kernel takes less, RCV.NXT moves
 * by what it took and the frame goes to JS, which trims that part (ordinary TCP overlap).
 *
 * What the lane sends to the guest: when the host socket is readable, nothing the lane sent is
 * unacknowledged and the guest's window is open, one read of at most XF_TXCAP bytes (and the
 * window) becomes one frame (a GSO super-frame beyond the guest's MSS when the flow allows it),
 * checksum left to the kernel, carrying the owed ACK. The bytes stay in the lane's buffer until
 * the guest acknowledges them. Anything else (a second read while the first is unacknowledged,
 * EOF, errors) is the JS way.
 *
 * Timers stay in JS. The lane restarts one timer per tap, `delay_ms` (the push-ACK delay), on
 * each thing it leaves owed; when it fires, JS syncs the flows that owe an ACK or have bytes in
 * flight, and its own delayed-ACK and retransmission timers take over from there. */
#include "addon.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Shared state (Int32Array; sequence numbers as their uint32 bit patterns). */
enum {
  X_FLAGS,      /* JS: XF_RX | XF_TX; the lane clears it when it hands a frame of the flow to JS */
  X_RCV_NXT,
  X_SND_UNA,
  X_SND_NXT,
  X_SND_WND,    /* guest's window in bytes (scaled) */
  X_WL1,
  X_WL2,
  X_ADV_EDGE,   /* RCV.NXT + the window we advertised: never moved left */
  X_SND_SHIFT,
  X_RCV_SHIFT,
  X_LIMIT,      /* bufferLimit */
  X_RCV_MSS,
  X_SND_MSS,
  X_GSO,        /* largest payload per frame when > SND_MSS (a GSO super-frame), else 0 */
  X_EVENTS,     /* lane: XE_* since the last sync */
  X_OWED,       /* 1: the lane took a request not yet acknowledged; 2: JS owes an ACK (its own
                 * deadline covers it; the lane may send it on a reply); 0: none */
  X_INFLIGHT,   /* lane: bytes sent and not acknowledged (the tail of the last read) */
  X_TXLEN,      /* lane: length of the last read, in txbuf[0, TXLEN) */
  X_RX_BYTES,   /* lane counters since the last sync */
  X_RX_SEGS,
  X_TX_SEGS,
  X_DUE,        /* lane, for the timer's call: this flow's obligation is X_ACK_DELAY old */
  X_ACK_DELAY,  /* JS: ms a request may wait for its reply before JS sends the ACK (>= 1) */
  X_COUNT = 24
};
#define XF_RX 1
#define XF_TX 2
#define XE_RX 1
#define XE_ACK 2
#define XE_TX 4

#define XF_TXCAP 16384
#define XT_BUCKETS 1024
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define VNET_NEEDS_CSUM 1
#define VNET_DATA_VALID 2
#define GSO_TCPV4 1
#define HDR_LEN 54     /* Ethernet + IPv4 + TCP */
#define HDR6_LEN 74    /* Ethernet + IPv6 + TCP */
#define GSO_TCPV6 4

struct sw_xflow {
  sw_xflow *next;
  sw_xtap *tap;
  int fd;
  int32_t *st;
  napi_ref st_ref;
  /* guest IP, remote IP, guest port, remote port: a guest frame's ip[12, 24) (IPv4) or ip[8, 44) */
  uint8_t key[36];
  uint8_t key_len;    /* 12 or 36 */
  uint8_t hdr_len;    /* HDR_LEN or HDR6_LEN */
  bool v6;
  uint8_t hdr[HDR6_LEN]; /* Ethernet (to the guest MAC, from ours) + IP + TCP, remote -> guest */
  uint8_t *txbuf;     /* what the lane sent and the guest has not acknowledged (X_TXLEN bytes) */
  size_t txcap;
  uint64_t since;     /* loop time (ms) the lane last left an ACK owed or bytes in flight */
};

struct sw_xtap {
  sw_handle *h;
  int fd;
  size_t vnet_len;
  uint32_t delay_ms;   /* for flows whose X_ACK_DELAY is not set */
  uv_timer_t timer;
  uint64_t due;        /* loop time the timer is set for (while active) */
  size_t count;
  uint16_t ip_id;
  double rx_segs, tx_segs, tx_bytes, handed, tx_dropped;
  sw_xflow *buckets[XT_BUCKETS];
};

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static inline int32_t sdiff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }
#define U(i) ((uint32_t)st[i])

static unsigned bucket_of(const uint8_t *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 16777619u;
  return h & (XT_BUCKETS - 1);
}

/* Flows whose obligation is delay_ms old get X_DUE and JS is called; the timer is set again for
 * the oldest of the rest. */
static uint64_t delay_of(sw_xtap *x, const int32_t *st) {
  return st[X_ACK_DELAY] > 0 ? (uint64_t)st[X_ACK_DELAY] : x->delay_ms;
}

static void on_timer(uv_timer_t *t) {
  sw_xtap *x = t->data;
  uint64_t now = uv_now(t->loop), next = UINT64_MAX;
  bool due = false;
  for (int b = 0; b < XT_BUCKETS && x->count > 0; b++) {
    for (sw_xflow *f = x->buckets[b]; f; f = f->next) {
      int32_t *st = f->st;
      if (st[X_FLAGS] == 0 || (st[X_OWED] != 1 && st[X_INFLIGHT] == 0)) continue;
      uint64_t age = now - f->since, d = delay_of(x, st);
      if (age >= d) {
        st[X_DUE] = 1;
        due = true;
      } else if (d - age < next) {
        next = d - age;
      }
    }
  }
  if (next != UINT64_MAX) {
    x->due = now + next;
    uv_timer_start(&x->timer, on_timer, next, 0);
  }
  if (!due) return;
  napi_env env = x->h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  sw_handle_call(x->h, 1, 0, NULL);
  napi_close_handle_scope(env, scope);
}

/* The lane left something owed by `f` now. */
static void arm(sw_xtap *x, sw_xflow *f) {
  uint64_t now = uv_now(x->timer.loop), at = now + delay_of(x, f->st);
  f->since = now;
  if (uv_is_active((uv_handle_t *)&x->timer) && x->due <= at) return;
  x->due = at;
  uv_timer_start(&x->timer, on_timer, at - now, 0);
}

sw_xtap *sw_xtap_new(sw_handle *tap, int fd, size_t vnet_len, uint32_t delay_ms) {
  sw_xtap *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(tap->env, &loop) != napi_ok || uv_timer_init(loop, &x->timer) != 0) { free(x); return NULL; }
  x->timer.data = x;
  uv_unref((uv_handle_t *)&x->timer); /* the tap keeps the loop alive, not this */
  x->h = tap;
  x->fd = fd;
  x->vnet_len = vnet_len;
  x->delay_ms = delay_ms;
  return x;
}

static void free_timer(uv_handle_t *t) { free(t->data); }

void sw_xtap_close(sw_xtap *x) {
  for (int b = 0; b < XT_BUCKETS; b++) {
    for (sw_xflow *f = x->buckets[b], *n; f; f = n) {
      n = f->next;
      f->tap = NULL;
      f->next = NULL;
      f->st[X_FLAGS] = 0;
    }
    x->buckets[b] = NULL;
  }
  uv_close((uv_handle_t *)&x->timer, free_timer);
}

void sw_xtap_tx_totals(sw_xtap *x, double *frames, double *bytes) {
  *frames += x->tx_segs - x->tx_dropped;
  *bytes += x->tx_bytes;
}

void sw_xtap_stats(sw_xtap *x, napi_env env, napi_value o) {
  sw_set_num(env, o, "expressFlows", (double)x->count);
  sw_set_num(env, o, "expressRx", x->rx_segs);
  sw_set_num(env, o, "expressTx", x->tx_segs);
  sw_set_num(env, o, "expressHanded", x->handed);
  sw_set_num(env, o, "expressTxDropped", x->tx_dropped);
}

/* ---- guest -> host ------------------------------------------------------------------------- */

static bool hand_to_js(sw_xtap *x, int32_t *st) {
  st[X_FLAGS] = 0;
  x->handed++;
  return false;
}

bool sw_xtap_rx(sw_xtap *x, const uint8_t *f, size_t len, const uint8_t *vnet) {
  if (x == NULL || x->count == 0 || len < HDR_LEN) return false;
  const uint8_t *ip = f + 14, *key;
  size_t klen;
  bool v6;
  if (f[12] == 0x08 && f[13] == 0x00) {
    if (ip[0] != 0x45 || ip[9] != 6) return false;
    key = ip + 12;
    klen = 12;
    v6 = false;
  } else if (f[12] == 0x86 && f[13] == 0xdd) {
    if (len < HDR6_LEN || (ip[0] >> 4) != 6 || ip[6] != 6) return false; /* TCP right after the header */
    key = ip + 8;
    klen = 36;
    v6 = true;
  } else {
    return false;
  }
  sw_xflow *xf = x->buckets[bucket_of(key, klen)];
  while (xf && (xf->key_len != klen || memcmp(xf->key, key, klen) != 0)) xf = xf->next;
  if (!xf) return false;
  int32_t *st = xf->st;
  if (!(st[X_FLAGS] & XF_RX)) return false;

  /* From here on a refusal hands the flow to JS (X_FLAGS = 0): its later frames keep their order. */
  if (vnet == NULL || !(vnet[0] & (VNET_NEEDS_CSUM | VNET_DATA_VALID)) || vnet[1] != 0) return hand_to_js(x, st);
  if (memcmp(f, xf->hdr + 6, 6) != 0 || memcmp(f + 6, xf->hdr, 6) != 0) return hand_to_js(x, st);
  uint32_t plen;
  const uint8_t *tcp;
  if (!v6) {
    uint32_t tot = get16(ip + 2);
    if (tot < 40 || tot > len - 14 || (get16(ip + 6) & 0x3fff) != 0 || ip[8] <= 1) return hand_to_js(x, st);
    if (sw_csum_partial(ip, 20, 0) != 0xffff) return hand_to_js(x, st);
    tcp = ip + 20;
    plen = tot - 40;
  } else {
    uint32_t pl = get16(ip + 4);
    if (pl < 20 || pl > len - HDR6_LEN + 20 || ip[7] <= 1) return hand_to_js(x, st);
    tcp = ip + 40;
    plen = pl - 20;
  }
  uint8_t flags = tcp[13];
  if ((tcp[12] >> 4) != 5 || (flags & 0x3f & ~(TH_ACK | TH_PSH)) != 0 || !(flags & TH_ACK)) return hand_to_js(x, st);
  uint32_t seq = get32(tcp + 4), ack = get32(tcp + 8);
  if (seq != U(X_RCV_NXT)) return hand_to_js(x, st);
  int32_t acked = sdiff(ack, U(X_SND_UNA));
  if (acked < 0 || sdiff(ack, U(X_SND_NXT)) > 0) return hand_to_js(x, st);
  if (plen > 0) {
    /* a lone request: PSH, below our MSS, in the window, no ACK owed yet */
    int32_t wnd = sdiff(U(X_ADV_EDGE), U(X_RCV_NXT));
    if (!(flags & TH_PSH) || st[X_OWED] || (int32_t)plen >= st[X_RCV_MSS] || (int32_t)plen > wnd) return hand_to_js(x, st);
  } else if (acked == 0 && st[X_INFLIGHT] != 0) {
    return hand_to_js(x, st); /* a duplicate ACK: JS counts them (fast retransmit) */
  }
  if (plen > 0) {
    ssize_t r;
    do r = send(xf->fd, tcp + 20, plen, MSG_DONTWAIT | MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
    if (r < (ssize_t)plen) {
      if (r > 0) {
        st[X_RCV_NXT] = (int32_t)(U(X_RCV_NXT) + (uint32_t)r);
        st[X_RX_BYTES] += (int32_t)r;
        st[X_OWED] = 1;
        st[X_EVENTS] |= XE_RX;
      }
      return hand_to_js(x, st);
    }
    st[X_RCV_NXT] = (int32_t)(seq + plen);
    st[X_OWED] = 1;
    st[X_EVENTS] |= XE_RX;
    st[X_RX_BYTES] += (int32_t)plen;
    st[X_RX_SEGS]++;
  }
  if (acked > 0) {
    st[X_SND_UNA] = (int32_t)ack;
    st[X_INFLIGHT] = sdiff(U(X_SND_NXT), ack);
    st[X_EVENTS] |= XE_ACK;
  }
  if (sdiff(seq, U(X_WL1)) > 0 || (seq == U(X_WL1) && sdiff(ack, U(X_WL2)) >= 0)) {
    st[X_SND_WND] = (int32_t)((uint32_t)get16(tcp + 14) << st[X_SND_SHIFT]);
    st[X_WL1] = (int32_t)seq;
    st[X_WL2] = (int32_t)ack;
  }
  x->rx_segs++;
  if (plen > 0) arm(x, xf);
  return true;
}

/* ---- host -> guest ------------------------------------------------------------------------- */

/* The window field for a segment now (src/flows/tcp.ts advertise(), with nothing buffered). */
static uint32_t advertise(int32_t *st) {
  uint32_t rcv = U(X_RCV_NXT);
  int32_t limit = st[X_LIMIT];
  int32_t wnd = sdiff(U(X_ADV_EDGE), rcv);
  if (wnd < 0) wnd = 0;
  int32_t step = st[X_RCV_MSS] < (limit >> 1) ? st[X_RCV_MSS] : (limit >> 1);
  if (limit - wnd >= step) wnd = limit;
  uint32_t unit = 1u << st[X_RCV_SHIFT];
  uint32_t field = ((uint32_t)wnd + unit - 1) / unit;
  if (field > 0xffff) field = 0xffff;
  st[X_ADV_EDGE] = (int32_t)(rcv + field * unit);
  return field;
}

int sw_xflow_tx(sw_xflow *xf, int events) {
  int32_t *st = xf->st;
  sw_xtap *x = xf->tap;
  if (x == NULL || !(st[X_FLAGS] & XF_TX) || st[X_INFLIGHT] != 0 || (events & UV_DISCONNECT)) return 0;
  int32_t wnd = st[X_SND_WND];
  int32_t mss = st[X_SND_MSS];
  if (wnd <= 0 || mss <= 0) return 0;
  size_t cap = XF_TXCAP;
  if ((size_t)wnd < cap) cap = (size_t)wnd;
  if (st[X_GSO] <= mss && (size_t)mss < cap) cap = (size_t)mss;
  /* read into one buffer for all flows, keep a copy the size of the read (memory per flow: its
   * largest reply, not XF_TXCAP) */
  static uint8_t rbuf[XF_TXCAP];
  ssize_t n;
  do n = recv(xf->fd, rbuf, cap, MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
    st[X_FLAGS] = 0;
    return -errno;
  }
  if (n == 0) {
    st[X_FLAGS] = 0;
    return 2;
  }
  if ((size_t)n > xf->txcap) {
    size_t c = (size_t)n < 256 ? 256 : (size_t)n;
    uint8_t *b = realloc(xf->txbuf, c);
    if (b == NULL) { /* the bytes read are lost: report it as a read error (the flow is reset) */
      st[X_FLAGS] = 0;
      return -ENOMEM;
    }
    xf->txbuf = b;
    xf->txcap = c;
  }
  memcpy(xf->txbuf, rbuf, (size_t)n);
  sw_busy_poll_bytes += (uint64_t)n;
  uint8_t h[HDR6_LEN];
  size_t hl = xf->hdr_len;
  memcpy(h, xf->hdr, hl);
  uint8_t *ip = h + 14, *tcp = h + hl - 20;
  uint32_t ps = 6 + 20 + (uint32_t)n; /* the pseudo-header: protocol, TCP length, addresses */
  if (!xf->v6) {
    put16(ip + 2, 40 + (uint32_t)n);
    put16(ip + 4, ++x->ip_id);
    ip[10] = ip[11] = 0;
    put16(ip + 10, (uint16_t)~sw_csum_partial(ip, 20, 0));
    for (int i = 12; i < 20; i += 2) ps += get16(ip + i);
  } else {
    put16(ip + 4, 20 + (uint32_t)n);
    for (int i = 8; i < 40; i += 2) ps += get16(ip + i);
  }
  uint32_t snd = U(X_SND_NXT);
  put32(tcp + 4, snd);
  put32(tcp + 8, U(X_RCV_NXT));
  tcp[13] = TH_ACK | TH_PSH;
  put16(tcp + 14, advertise(st));
  /* the pseudo-header sum; the kernel adds the rest (VIRTIO_NET_HDR_F_NEEDS_CSUM) */
  ps = (ps & 0xffff) + (ps >> 16);
  ps = (ps & 0xffff) + (ps >> 16);
  put16(tcp + 16, ps);
  tcp[18] = tcp[19] = 0;
  uint8_t vh[12] = { VNET_NEEDS_CSUM, 0 };
  uint16_t v;
  if (n > mss) {
    vh[1] = xf->v6 ? GSO_TCPV6 : GSO_TCPV4;
    v = (uint16_t)hl; memcpy(vh + 2, &v, 2);
    v = (uint16_t)mss; memcpy(vh + 4, &v, 2);
  }
  v = (uint16_t)(hl - 20); memcpy(vh + 6, &v, 2);
  v = 16; memcpy(vh + 8, &v, 2);
  struct iovec iov[3] = { { vh, x->vnet_len }, { h, hl }, { xf->txbuf, (size_t)n } };
  ssize_t r;
  do r = writev(x->fd, iov, 3); while (r < 0 && errno == EINTR);
  if (r < 0) x->tx_dropped++; /* the bytes stay in flight: JS retransmits them after the timer */
  else x->tx_bytes += (double)(hl + (size_t)n);
  st[X_SND_NXT] = (int32_t)(snd + (uint32_t)n);
  st[X_INFLIGHT] = (int32_t)n;
  st[X_TXLEN] = (int32_t)n;
  st[X_OWED] = 0;
  st[X_EVENTS] |= XE_TX;
  st[X_TX_SEGS]++;
  x->tx_segs++;
  arm(x, xf);
  return 1;
}

/* ---- attach / detach ----------------------------------------------------------------------- */

sw_xflow *sw_xflow_new(napi_env env, sw_xtap *x, int fd, napi_value stv, const uint8_t *hdr, size_t hdr_len) {
  int32_t *st;
  size_t n;
  if (!sw_get_int32s(env, stv, "expressAttach: state must be an Int32Array", &st, &n)) return NULL;
  if (n < X_COUNT) { sw_throw_range(env, "expressAttach: state has too few entries"); return NULL; }
  sw_xflow *f = calloc(1, sizeof *f);
  if (!f) { sw_throw_errno(env, "calloc", ENOMEM); return NULL; }
  if (napi_create_reference(env, stv, 1, &f->st_ref) != napi_ok) { free(f); return NULL; }
  f->st = st;
  f->fd = fd;
  f->tap = x;
  f->v6 = hdr_len == HDR6_LEN;
  f->hdr_len = (uint8_t)hdr_len;
  memcpy(f->hdr, hdr, hdr_len);
  /* key = the addresses and ports of the guest's frames, as they lie in them: source (guest),
   * destination (remote), source port, destination port */
  size_t al = f->v6 ? 16 : 4, ip = 14, src = f->v6 ? ip + 8 : ip + 12, tcp = hdr_len - 20;
  memcpy(f->key, hdr + src + al, al);
  memcpy(f->key + al, hdr + src, al);
  memcpy(f->key + 2 * al, hdr + tcp + 2, 2);
  memcpy(f->key + 2 * al + 2, hdr + tcp, 2);
  f->key_len = (uint8_t)(2 * al + 4);
  unsigned b = bucket_of(f->key, f->key_len);
  f->next = x->buckets[b];
  x->buckets[b] = f;
  x->count++;
  return f;
}

void sw_xflow_free(napi_env env, sw_xflow *f) {
  sw_xtap *x = f->tap;
  if (x) {
    sw_xflow **pp = &x->buckets[bucket_of(f->key, f->key_len)];
    while (*pp && *pp != f) pp = &(*pp)->next;
    if (*pp) { *pp = f->next; x->count--; }
  }
  f->st[X_FLAGS] = 0;
  if (f->st_ref) napi_delete_reference(env, f->st_ref);
  free(f->txbuf);
  free(f);
}

napi_value sw_xflow_unacked(napi_env env, sw_xflow *f) {
  int32_t *st = f->st;
  int32_t len = st[X_TXLEN], in = st[X_INFLIGHT];
  if (in < 0 || in > len || f->txbuf == NULL) in = 0;
  napi_value b;
  void *d;
  NAPI_OK(env, napi_create_buffer_copy(env, (size_t)in, in ? (const void *)(f->txbuf + (len - in)) : (const void *)"", &d, &b));
  return b;
}
