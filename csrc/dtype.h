// The element types the kernels support, as a plain enum shared by the CPU
// kernel tables and the CUDA launchers (neither boundary passes PyTorch types).
#pragma once

namespace nytorch_ext {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

}  // namespace nytorch_ext
