// The CPU kernels of one instruction set.
//
// csrc/cpu/kernels.cpp is compiled once per CPU capability (DEFAULT, and on x86
// AVX2 and AVX512), each copy with its own -m flags and CPU_CAPABILITY, as ATen
// compiles its own kernels; dispatch.cpp picks the best table the running CPU
// supports. The kernels take a plain ListCall so that the capability-specific
// objects contain our loops and at::vec, not copies of PyTorch's tensor code.
#pragma once

#include "../list_call.h"

namespace nytorch_ext {
namespace cpu {

struct KernelTable {
  const char* name;
  void (*run)(const ListCall& call);
};

#define NYT_TABLE_FN_(cap) kernel_table_##cap
#define NYT_TABLE_FN(cap) NYT_TABLE_FN_(cap)

const KernelTable& kernel_table_DEFAULT();
#if defined(__x86_64__) || defined(_M_X64)
#define NYT_CPU_X86 1
const KernelTable& kernel_table_AVX2();
const KernelTable& kernel_table_AVX512();
#endif

}  // namespace cpu
}  // namespace nytorch_ext
