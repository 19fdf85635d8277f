// glibc's malloc_trim(0) for the agent (agent/malloc-trim.ts): after the streams it held are collected,
// the freed memory in the middle of malloc's heap goes back to the system, which free() alone never
// does (issue 16). Built and embedded per target by scripts/binary/build.mjs, beside node-pty's addon.
#include <malloc.h>
#include <node_api.h>

static napi_value Trim(napi_env env, napi_callback_info) {
  napi_value released;
  napi_get_boolean(env, malloc_trim(0) == 1, &released);
  return released;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, Trim, nullptr, &fn);
  napi_set_named_property(env, exports, "trim", fn);
  return exports;
}
