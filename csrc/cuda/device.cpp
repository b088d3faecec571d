// The CUDA backend's torch-side glue: make the tensors' device current, take
// scratch memory from PyTorch's caching allocator, fetch PyTorch's current
// stream and launch (kernels.cu). Only device-generic c10/ATen APIs are used
// here, so this file compiles against a CPU-only PyTorch and the whole
// CUDA-enabled extension links anywhere.
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

#include "../backends.h"
#include "launch.h"

namespace nytorch_ext {
namespace cuda {
namespace {

// PyTorch's current CUDA stream on `device`, as an opaque cudaStream_t.
void* current_stream(const c10::Device& device) {
  const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  return impl->getStream(device).native_handle();
}

}  // namespace

void run(ListCall& call, const at::Tensor& first_out) {
  c10::DeviceGuard guard(first_out.device());
  // at::empty on the device allocates through the caching allocator on the
  // current stream, the one the kernels run on: the memory is not reused before
  // they are done with it, and CUDA graph capture sees an ordinary allocation.
  at::Tensor scratch;
  if (const int64_t bytes = cuda_launch::scratch_bytes(call)) {
    scratch = at::empty({bytes}, first_out.options().dtype(at::kByte));
    call.scratch = scratch.data_ptr();
  }
  const char* error = cuda_launch::launch(call, current_stream(first_out.device()));
  TORCH_CHECK(error == nullptr, "nytorch_ext: CUDA launch failed: ", error);
}

int runtime_version() { return cuda_launch::runtime_version(); }

}  // namespace cuda
}  // namespace nytorch_ext
