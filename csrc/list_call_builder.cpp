#include "list_call_builder.h"

#include <c10/util/Exception.h>

namespace nytorch_ext {

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type());
  }
}

ListCallBuilder::ListCallBuilder(ElementOp op, at::TensorList outs, bool list_form)
    : first_out_(&outs.at(0)) {
  call_.op = op;
  call_.dtype = dtype_of(*first_out_);
  call_.list_form = list_form;
  call_.num_tensors = static_cast<int64_t>(outs.size());
  for (const auto& t : outs) {
    outs_.push_back(t.data_ptr());
    sizes_.push_back(t.numel());
  }
}

// Inputs are read through const_data_ptr: a mutable pointer would materialize a
// copy-on-write input (a lazy product's snapshot of a particle), copying it.
ListCallBuilder& ListCallBuilder::input(at::TensorList tensors) {
  const bool shared = tensors.size() == 1;
  TORCH_INTERNAL_ASSERT(shared || static_cast<int64_t>(tensors.size()) == call_.num_tensors);
  for (int64_t t = 0; t < call_.num_tensors; ++t) {
    inputs_.push_back(tensors[shared ? 0 : t].const_data_ptr());
  }
  ++call_.num_inputs;
  return *this;
}

ListCallBuilder& ListCallBuilder::scalars(c10::ArrayRef<double> values) {
  call_.scalars = values.data();
  call_.num_scalars = static_cast<int64_t>(values.size());
  return *this;
}

ListCallBuilder& ListCallBuilder::weights(c10::ArrayRef<double> values) {
  TORCH_INTERNAL_ASSERT(values.size() == 1 ||
                        static_cast<int64_t>(values.size()) == call_.num_tensors);
  call_.weights = values.data();
  call_.num_weights = static_cast<int64_t>(values.size());
  return *this;
}

ListCallBuilder& ListCallBuilder::noise(int64_t seed, c10::ArrayRef<int64_t> streams) {
  TORCH_INTERNAL_ASSERT(static_cast<int64_t>(streams.size()) == call_.num_tensors);
  call_.seed = static_cast<uint64_t>(seed);
  call_.streams = reinterpret_cast<const uint64_t*>(streams.data());
  return *this;
}

ListCall& ListCallBuilder::call() {
  call_.outs = outs_.data();
  call_.inputs = inputs_.data();
  call_.sizes = sizes_.data();
  return call_;
}

}  // namespace nytorch_ext
