// Argument validation shared by the CPU and CUDA registrations. Every check runs
// before any write, so a rejected call leaves all of its inputs untouched, and
// every message names the offending argument.
#pragma once
#include <ostream>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace nytorch_ext {

// An argument's name for error messages, "xs" or "xs[3]", formatted only when a
// check fails: the list checks run once per tensor on the hot path.
struct ArgName {
  const char* name;
  int64_t index = -1;
  ArgName(const char* n) : name(n) {}  // NOLINT: implicit from a plain name
  ArgName(const char* n, int64_t i) : name(n), index(i) {}
};
std::ostream& operator<<(std::ostream& os, const ArgName& arg);

// A float32/float64/float16/bfloat16 tensor; rejects integer, bool and complex.
void check_floating(const at::Tensor& t, const ArgName& name);

// `t` matches `ref` in dtype, device and shape (no broadcasting, no promotion).
void check_same(const at::Tensor& t, const ArgName& name, const at::Tensor& ref,
                const ArgName& ref_name);

// A scalar argument that must be finite (not NaN, not +-Inf).
void check_finite(double value, const ArgName& name);

// A scalar argument (it arrives as double) must be representable in the opmath
// type of `dtype`'s tensors: a finite value beyond float32's range is rejected for
// float32/float16/bfloat16 tensors (torch.lerp and friends reject it too) rather
// than silently becoming +-Inf. Inf and NaN themselves pass: IEEE arithmetic.
void check_scalar_range(double value, const ArgName& name, at::ScalarType dtype);

// Writable outputs and every input of the in-place/out/multi forms must be contiguous.
void check_contiguous(const at::Tensor& t, const ArgName& name);

// `out` may be exactly `in` (same memory) or disjoint from it; a partial overlap
// cannot be honoured by an element-wise kernel. `out_name` is the caller's name
// for the output (an in-place form's target: "x", "tensors[0]").
void check_out_alias(const at::Tensor& out, const ArgName& out_name, const at::Tensor& in,
                     const ArgName& in_name);

// Whether two tensors are exactly the same memory (same first byte, same size).
bool same_memory(const at::Tensor& a, const at::Tensor& b);

// Validates the list forms: equal lengths, per-index dtype/device/shape agreement,
// one dtype and one device across the lists (the Python layer groups mixed lists),
// contiguity, and aliasing: outs pairwise disjoint; outs[i] may equal
// inputs[j][i] exactly but overlap no other input. An input list of length 1 is
// shared by every index when there are several outputs, or when `shared` says so
// (a shared source with a single target); a shared input may not overlap any output.
struct NamedList {
  c10::ArrayRef<at::Tensor> tensors;
  const char* name;
  bool shared = false;
};
void check_multi(NamedList outs, c10::ArrayRef<NamedList> inputs);

}  // namespace nytorch_ext
