// The two backends' entry points: each runs a validated ListCall (list_call.h)
// on its device. ops.cpp registers one kernel per op and dispatch key that
// builds the call and hands it to the key's backend.
#pragma once
#include <ATen/core/Tensor.h>

#include "list_call.h"

namespace nytorch_ext {

namespace cpu {
void run(const ListCall& call);  // cpu/dispatch.cpp
// The instruction set the CPU kernels in use were compiled for, e.g. "AVX2".
const char* simd_name();
}  // namespace cpu

#ifdef NYTORCH_EXT_WITH_CUDA
namespace cuda {
// On the device of `first_out` and PyTorch's current stream there, with scratch
// memory, when the kernels need some, from PyTorch's caching allocator.
void run(ListCall& call, const at::Tensor& first_out);  // cuda/device.cpp
int runtime_version();  // the CUDA runtime the kernels were built against
}  // namespace cuda
#endif

}  // namespace nytorch_ext
