/* lowMemory(): V8's own "the system is low on memory" notification for this isolate: full
 * garbage collections until nothing more is freed, then the young generation shrunk back to its
 * initial size (a full GC alone keeps it at the size the last burst of traffic grew it to; N-API
 * has no call for this, hence the one use of the V8 API in the addon). */
#include <node_api.h>
#include <v8.h>

extern "C" napi_value sw_low_memory(napi_env env, napi_callback_info info) {
  (void)info;
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate) isolate->LowMemoryNotification();
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}
