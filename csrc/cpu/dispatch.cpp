// The CPU backend: run a call with the kernel table of the best instruction set
// this CPU supports (the same choice, and the same ATEN_CPU_CAPABILITY override,
// as PyTorch's own kernels).
#include <string>

#include <ATen/Version.h>

#include "../backends.h"
#include "kernel_table.h"

namespace nytorch_ext {
namespace cpu {
namespace {

const KernelTable& table() {
  static const KernelTable& chosen = []() -> const KernelTable& {
#ifdef NYT_CPU_X86
    // "AVX512", "AVX2" or "DEFAULT": what PyTorch runs its own kernels with.
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") return kernel_table_AVX512();
    if (capability == "AVX2") return kernel_table_AVX2();
#endif
    return kernel_table_DEFAULT();
  }();
  return chosen;
}

}  // namespace

void run(const ListCall& call) { table().run(call); }

const char* simd_name() { return table().name; }

}  // namespace cpu
}  // namespace nytorch_ext
