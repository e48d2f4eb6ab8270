// Expert choice (DESIGN R9) on a CUDA device: each expert takes the C tokens with the highest score
// in its column. Kernels and their thread mappings: expert_choice.cu. The CPU oracle is
// cpu::Router::selectExpertChoice; the assignments are equal (float64 comparisons only).
//
// Every pointer is DEVICE memory; the work is enqueued on `stream`. Throws Error(Shape/Argument)
// naming the argument before enqueuing anything, Error(Device) naming the kernel or copy that
// failed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/capacity.h"
#include "cuda_check.h"
#include "device_buffer.h"

namespace moekit::cuda {

// Scratch of selectExpertChoice, grown on demand and kept by the caller as long as it likes.
struct ExpertChoiceScratch {
  DeviceBuffer<capacity::RankKey> threshold;  // [E] key of each expert's last token taken
};

// R9 with C = min(capacity::perExpert(factor, T, topK, E), T), factor 1 when capacityFactor is 0
// (the caller passes C). Expert e takes the C tokens with the highest s[t,e] among those allowed
// (allowed [T,E] u8 R2 mask, null = all), ties → earlier token, or all of them when fewer are
// allowed. s [T,E] R3 scores (not NaN). Assignments are listed expert-major, tokens ascending:
// token/expert [E·min(C,T)] (capacity of the caller's buffers) receive expert e's tokens from
// Σ_{e' < e} counts[e']; counts [E] = tokens taken. Returns the number of assignments (a HOST value:
// synchronises the stream).
int64_t selectExpertChoice(int T, int E, int64_t C, const double* s, const uint8_t* allowed,
                           int32_t* counts, int32_t* token, int32_t* expert,
                           ExpertChoiceScratch& scratch, cudaStream_t stream);

}  // namespace moekit::cuda
