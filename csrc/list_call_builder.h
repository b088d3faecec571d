// Builds a ListCall (list_call.h) from tensors: the raw pointer and size tables
// the kernels read, on the stack for short lists. The one place that turns a
// PyTorch dtype into the kernels' DType, for the CPU and CUDA backends alike.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/SmallVector.h>

#include "list_call.h"

namespace nytorch_ext {

// The kernels' element type of a (validated) floating tensor.
DType dtype_of(const at::Tensor& t);

class ListCallBuilder {
 public:
  // `outs` are written, one result each (non-empty); the call has their dtype.
  ListCallBuilder(ElementOp op, at::TensorList outs, bool list_form);
  // The next input: one tensor per output, or a single one shared by all.
  ListCallBuilder& input(at::TensorList tensors);
  ListCallBuilder& scalars(c10::ArrayRef<double> values);
  ListCallBuilder& weights(c10::ArrayRef<double> values);
  // Philox key and one stream per output (int64 values carrying uint64 bits).
  ListCallBuilder& noise(int64_t seed, c10::ArrayRef<int64_t> streams);
  const at::Tensor& first_out() const { return *first_out_; }
  // Valid while the builder and the arrays passed to it live.
  ListCall& call();

 private:
  const at::Tensor* first_out_;  // the caller's: no reference count traffic per call
  ListCall call_{};
  c10::SmallVector<void*, 16> outs_;
  c10::SmallVector<const void*, 32> inputs_;
  c10::SmallVector<int64_t, 16> sizes_;
};

}  // namespace nytorch_ext
