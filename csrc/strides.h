// Row-major (contiguous) strides of a shape, shared by the view makers.
#pragma once
#include <cstdint>

#include <c10/util/ArrayRef.h>

namespace nytorch_ext {

// Fills `strides` (resized to the rank) and returns the number of elements.
template <typename Vector>
int64_t contiguous_strides(c10::IntArrayRef shape, Vector& strides) {
  strides.assign(shape.size(), 1);
  int64_t numel = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = numel;
    numel *= shape[d];
  }
  return numel;
}

}  // namespace nytorch_ext
