// The stateless ops of DESIGN §2 (ops.*, losses.*, the AdamW step) as native functions. Each
// binding validates every argument (dtype, rank, matching dimensions, index ranges) before it
// touches memory, returns fresh tensors, and leaves its inputs unchanged (adamwStep excepted: it
// updates param, m and v in place). The results are on the device of the inputs (ops.cc says
// where the math runs). lib/native.ts declares the same surface.
#pragma once

#include <napi.h>

namespace moekit::addon {

void registerOps(Napi::Env env, Napi::Object exports);

}  // namespace moekit::addon
