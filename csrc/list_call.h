// One call of an element-wise kernel over a list of tensors, in plain types:
// what the torch-side glue (list_call_builder.h) hands the CPU and CUDA kernels.
// Every op is such a call; a single-tensor op is a list of one.
//
// This header stays free of PyTorch includes: nvcc compiles it on machines whose
// PyTorch is CPU-only.
#pragma once
#include <cstdint>

namespace nytorch_ext {

// The element types the kernels support.
enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// Which per-element functor of functors.h a call applies. Each backend maps an
// entry to its kernel in one switch (cpu/kernels.cpp, cuda/kernels.cu).
enum class ElementOp : int {
  kAxpby = 0,       // outs[t] = a*in0 + b*in1;            scalars = {a, b}
  kBlend = 1,       // outs[t] = lerp(in0, in1, weight(t)); scalars = {}
  kLincomb = 2,     // outs[0] = sum_k c[k]*in_k + bias;   scalars = {c..., bias}
  kBlendNoise = 3,  // lerp(in0, in1, weight(t)) + s*z;    scalars = {s}; seed, streams
  kScale = 4,       // outs[t] = weight(t)*in0;             scalars = {}
};

struct ListCall {
  ElementOp op;
  DType dtype;
  // The list forms thread their tensors as one fused region on the CPU; the
  // single-tensor forms are threaded like torch's own element-wise ops.
  bool list_form;
  int64_t num_tensors;  // >= 1
  int64_t num_inputs;   // inputs per output
  void* const* outs;    // [num_tensors]
  // [num_inputs * num_tensors]: input k of output t at k * num_tensors + t; an
  // input shared by every output is repeated. Outputs may equal their own
  // inputs exactly, never overlap them otherwise (checks.h).
  const void* const* inputs;
  const int64_t* sizes;  // [num_tensors] elements
  const double* scalars;  // shared by every output
  int64_t num_scalars;
  // One per output, or a single one shared (num_weights == 1); may be empty.
  const double* weights;
  int64_t num_weights;
  uint64_t seed;            // noise: the Philox key (philox.h)
  const uint64_t* streams;  // noise: [num_tensors] Philox streams, else nullptr
  // Device memory the CUDA kernels asked for (cuda/launch.h scratch_bytes), else nullptr.
  void* scratch;

  const void* input(int64_t k, int64_t t) const { return inputs[k * num_tensors + t]; }
  double weight(int64_t t) const { return weights[num_weights == 1 ? 0 : t]; }
};

}  // namespace nytorch_ext
