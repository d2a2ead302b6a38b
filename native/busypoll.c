/*
 * Busy polling: after an event, keep the loop polling (epoll_wait with a zero timeout) for a
 * short, adaptive window before it goes to sleep.
 *
 * THEORY OF OPERATION
 * ===================
 * On a request/response exchange or a short connection, slipway wakes several times per round
 * trip, and on a virtual machine each sleep and wake-up is expensive: the vCPU halts, the waker
 * sends an IPI through the hypervisor, and finish_task_switch carries the cost (measured: 28 % of
 * the main thread's samples in the connection-rate row, ~1.5 sleeps per 1-byte transaction).
 * When the next event is due within tens of µs, polling for it costs less CPU than sleeping.
 *
 * The window adapts like the kernel's cpuidle-haltpoll governor: `wait` is the time from the end
 * of one event's handling to the next event.
 *   - wait <= window: polling caught it (a hit); the window stays.
 *   - window < wait <= max: a longer window would have caught it; the window doubles (from
 *     max / 4, up to max).
 *   - wait > max: the traffic is too sparse to poll for; the window halves (below max / 4 it
 *     drops to 0).
 * So an idle or trickling stack polls at most one window after its last event and soon not at
 * all, and a steady exchange whose replies come within `max` polls between them.
 *
 * Bulk transfer does not poll: an event whose handling read SW_BUSY_POLL_BULK bytes or more (from
 * the tap or from host sockets) stops the poll instead of starting one.  Polling shortens the
 * wait for a reply someone is waiting on; behind a bulk read a queue is building anyway, and a
 * poll would only spend CPU (measured on the upload: see bench/PROFILE.md).  UDP sockets'
 * recvmmsg batches (udp.c, splice.c) are not counted: feeding them in, stopping once 64 KiB
 * were read since the last sleep, or not polling for 1 ms after a millisecond that read 64 KiB
 * made no difference ab-rr could see on the UDP rows beyond their round-to-round spread
 * (PROFILE.md, 2026-12-07 20:29-20:37 and 23:02-23:08 UTC); polling off (--busy-poll 0) took
 * 17-38 % off the UDP download's CPU per GB, with its throughput inside the same spread.
 *
 * Mechanism: an unreferenced uv_idle handle (an active idle handle makes libuv poll without
 * blocking; unreferenced, it does not keep the process alive).  Every uv_poll-backed handle's
 * event (handle.c: tap, host sockets, UDP, agent channel...) calls sw_busy_poll_begin/end; the
 * idle callback stops the handle once `window` has passed since the last event.  The splice
 * relays (forwards) are not hooked: their traffic is bulk, and on two cores a poll there would
 * take CPU from the applications at both ends (not measured).
 */
#include "addon.h"

static struct {
  uv_idle_t idle;
  uv_loop_t *loop;          /* where setBusyPoll set `idle` up (NULL: not yet); other loops are ignored */
  bool spinning;
  uint64_t max_ns, window_ns;
  uint64_t idle_since;      /* end of the last event's handling (uv_hrtime), 0 = none yet */
  uint64_t bytes_before;    /* sw_busy_poll_bytes when this event's handling began */
  double hits, grows, shrinks, polls, bulk;
} bp;

static void bp_stop(void) {
  uv_idle_stop(&bp.idle);
  bp.spinning = false;
}

static void bp_on_idle(uv_idle_t *i) {
  (void)i;
  bp.polls++;
  if (uv_hrtime() - bp.idle_since > bp.window_ns) bp_stop();
}

static void bp_adjust(uint64_t wait) {
  uint64_t start = bp.max_ns / 4;
  if (wait <= bp.window_ns) {
    bp.hits++;
  } else if (wait <= bp.max_ns) {
    uint64_t w = bp.window_ns * 2;
    bp.window_ns = w < start ? start : w > bp.max_ns ? bp.max_ns : w;
    bp.grows++;
  } else if (bp.window_ns > 0) {
    bp.window_ns /= 2;
    if (bp.window_ns < start) bp.window_ns = 0;
    bp.shrinks++;
  }
}

uint64_t sw_busy_poll_bytes;

void sw_busy_poll_begin(uv_loop_t *loop) {
  if (bp.max_ns == 0 || loop != bp.loop) return;
  bp.bytes_before = sw_busy_poll_bytes;
  if (bp.idle_since != 0) bp_adjust(uv_hrtime() - bp.idle_since);
}

void sw_busy_poll_end(uv_loop_t *loop) {
  if (bp.max_ns == 0 || loop != bp.loop) return;
  bp.idle_since = uv_hrtime();
  if (sw_busy_poll_bytes - bp.bytes_before >= SW_BUSY_POLL_BULK) {
    bp.bulk++;
    if (bp.spinning) bp_stop();
    return;
  }
  if (bp.window_ns == 0 || bp.spinning) return;
  if (uv_idle_start(&bp.idle, bp_on_idle) == 0) bp.spinning = true;
}

/* setBusyPoll(maxUs): 0 turns polling off (and stops it at once). */
static napi_value js_set_busy_poll(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t us;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !sw_get_int(env, argv[0], "maxUs", 0, 1000000, &us)) return NULL;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  if (bp.loop != NULL && loop != bp.loop) { sw_throw_type(env, "setBusyPoll: already set up on another thread's loop"); return NULL; }
  if (bp.loop == NULL) {
    int rc = uv_idle_init(loop, &bp.idle);
    if (rc != 0) { sw_throw_errno(env, "uv_idle_init", -rc); return NULL; }
    uv_unref((uv_handle_t *)&bp.idle);
    bp.loop = loop;
  }
  bp.max_ns = (uint64_t)us * 1000;
  bp.window_ns = bp.max_ns; /* start polling at once; sparse traffic shrinks it */
  bp.idle_since = 0;
  if (bp.spinning && us == 0) bp_stop();
  return NULL;
}

/* busyPollStats() -> { maxUs, windowUs, polling, hits, grows, shrinks, polls, bulk } */
static napi_value js_busy_poll_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, b;
  napi_create_object(env, &o);
  sw_set_num(env, o, "maxUs", (double)bp.max_ns / 1000);
  sw_set_num(env, o, "windowUs", (double)bp.window_ns / 1000);
  napi_get_boolean(env, bp.spinning, &b);
  napi_set_named_property(env, o, "polling", b);
  sw_set_num(env, o, "hits", bp.hits);
  sw_set_num(env, o, "grows", bp.grows);
  sw_set_num(env, o, "shrinks", bp.shrinks);
  sw_set_num(env, o, "polls", bp.polls);
  sw_set_num(env, o, "bulk", bp.bulk);
  return o;
}

napi_value sw_init_busy_poll(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
    { "setBusyPoll", NULL, js_set_busy_poll, NULL, NULL, NULL, napi_enumerable, NULL },
    { "busyPollStats", NULL, js_busy_poll_stats, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) return NULL;
  return exports;
}
