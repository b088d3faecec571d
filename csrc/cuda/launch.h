// The boundary between the torch-side CUDA glue (device.cpp, compiled by the
// host compiler against PyTorch headers) and the CUDA kernels (kernels.cu,
// compiled by nvcc with CUDA headers and our own only). Plain types only: a
// ListCall (../list_call.h) and the stream as an opaque pointer (a cudaStream_t).
#pragma once
#include <cstdint>

#include "../list_call.h"

namespace nytorch_ext {
namespace cuda_launch {

// Bytes of device memory the kernels need for `call` besides its tensors
// (0 for nearly every call); the caller passes them as call.scratch.
int64_t scratch_bytes(const ListCall& call);

// Launches the kernels of `call` on `stream`, in stream order. Returns nullptr
// on success or a static error string (cudaGetErrorString) when a launch failed.
const char* launch(const ListCall& call, void* stream);

// The CUDA runtime version the kernels were built against (e.g. 13000).
int runtime_version();

}  // namespace cuda_launch
}  // namespace nytorch_ext
