/* slipway.node — module entry.  Pieces: tap.c (Tap), misc.c (fd helpers, FdWatch, PingSocket,
 * AgentChannel), csum.c (checksum), handle.c (shared uv_poll handle machinery).
 * splice.c (SpliceRelay, ConnectWatch, DgramBatch: the inbound forward data path).
 * sockio.c (writeSlices: the TCP relay's direct socket writes; HostSocket: a flow's host socket).
 * busypoll.c (setBusyPoll: poll briefly after events instead of sleeping at once). */
#include "addon.h"

static napi_value init(napi_env env, napi_value exports) {
  if (!sw_init_tap(env, exports)) return NULL;
  if (!sw_init_misc(env, exports)) return NULL;
  if (!sw_init_splice(env, exports)) return NULL;
  if (!sw_init_sockio(env, exports)) return NULL;
  if (!sw_init_hostsock(env, exports)) return NULL;
  if (!sw_init_udp(env, exports)) return NULL;
  if (!sw_init_spawn(env, exports)) return NULL;
  if (!sw_init_busy_poll(env, exports)) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
