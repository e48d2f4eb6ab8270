// The seam between kernels and their launch: the same source launches through nvcc or through the
// SIMT emulator. Kernel host code writes
//
//   cudaError_t err = moekit::launch<myKernel>(grid, block, dynamicSmemBytes, stream, args...);
//   T* smem = moekit::dynamicShared<T>();   // in device code, instead of `extern __shared__`
//
// Under nvcc (__CUDACC__) launch<K> is K<<<grid, block, smem, stream>>>(args...) followed by
// cudaGetLastError(), and dynamicShared<T>() is the block's extern __shared__ array (16-byte
// aligned). Under the emulator (g++ with -include emu/emu.h) launch<K> runs the whole grid before
// returning, the kernel named in error messages as K is spelled in the template argument, and a
// kernel bug it detects is thrown as moekit::emu::KernelFault. Both count a successful launch in
// cuda::DeviceCounters (cuda.stats()).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "../cuda/device_counters.h"  // cuda.stats(): every launch is counted

#if defined(__CUDACC__)

namespace moekit {

template <auto Kernel, class... Args>
cudaError_t launch(dim3 grid, dim3 block, size_t dynamicSmemBytes, cudaStream_t stream, Args&&... args) {
  Kernel<<<grid, block, dynamicSmemBytes, stream>>>(std::forward<Args>(args)...);
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) cuda::DeviceCounters::instance().launched();
  return err;
}

template <class T>
__device__ __forceinline__ T* dynamicShared() {
  extern __shared__ __align__(16) unsigned char moekitDynamicShared[];
  return reinterpret_cast<T*>(moekitDynamicShared);
}

}  // namespace moekit

#elif defined(MOEKIT_EMU)

#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>

namespace moekit {
namespace emu {

template <class F>
struct KernelParams;
template <class... P>
struct KernelParams<void (*)(P...)> {
  using type = std::tuple<std::decay_t<P>...>;
};
template <class... P>
struct KernelParams<void (*)(P...) noexcept> : KernelParams<void (*)(P...)> {};

// Each fiber calls the kernel with its own copies of the launch arguments, as every CUDA thread
// reads its own view of the parameter space.
template <auto Kernel, class Params>
void runKernel(const void* params) {
  std::apply(Kernel, *static_cast<const Params*>(params));
}

// checkPointerArgument for every pointer among the launch arguments.
template <class Params>
void checkPointers(const void* params, const char* kernel, int device) {
  std::apply(
      [&](const auto&... value) {
        size_t index = 0;
        (([&] {
           if constexpr (std::is_pointer_v<std::decay_t<decltype(value)>>) {
             checkPointerArgument(kernel, index, static_cast<const void*>(value), device);
           }
           ++index;
         }()),
         ...);
      },
      *static_cast<const Params*>(params));
}

// "myKernel<float, 4>" out of g++'s "... [with auto Kernel = myKernel<float, 4>]".
template <auto Kernel>
const char* kernelName() {
  static const std::string name = [](const std::string& pretty) {
    const std::string key = "Kernel = ";
    const size_t start = pretty.find(key);
    if (start == std::string::npos) return pretty;
    const size_t end = pretty.find_first_of(";]", start);
    return pretty.substr(start + key.size(), end - start - key.size());
  }(__PRETTY_FUNCTION__);
  return name.c_str();
}

}  // namespace emu

template <auto Kernel, class... Args>
cudaError_t launch(dim3 grid, dim3 block, size_t dynamicSmemBytes, cudaStream_t stream, Args&&... args) {
  using Params = typename emu::KernelParams<decltype(Kernel)>::type;
  static_assert(std::tuple_size_v<Params> == sizeof...(Args),
                "moekit::launch: the argument count differs from the kernel's parameter count");
  const Params params(std::forward<Args>(args)...);
  const emu::LaunchSpec spec{emu::kernelName<Kernel>(), reinterpret_cast<const void*>(Kernel), grid, block,
                             dynamicSmemBytes, stream, &emu::runKernel<Kernel, Params>, &emu::checkPointers<Params>,
                             &params};
  const cudaError_t err = emu::launchGrid(spec);
  if (err == cudaSuccess) cuda::DeviceCounters::instance().launched();
  return err;
}

template <class T>
inline T* dynamicShared() {
  return static_cast<T*>(emu::dynamicSharedBase());
}

}  // namespace moekit

#else
#error "emu/launch.h: compile with nvcc, or with g++ and -include emu/emu.h (the SIMT emulator)"
#endif
