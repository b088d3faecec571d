#include "checks.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <c10/util/Exception.h>

namespace nytorch_ext {
namespace {

// Byte range [begin, end) of a contiguous tensor's data.
struct Span {
  uintptr_t begin, end;
  int64_t index;
};

// const_data_ptr: checking must not materialize a copy-on-write tensor.
Span span_of(const at::Tensor& t, int64_t index) {
  auto begin = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  return {begin, begin + static_cast<uintptr_t>(t.numel()) * t.element_size(), index};
}

bool overlaps(const Span& a, const Span& b) { return a.begin < b.end && b.begin < a.end; }

}  // namespace

std::ostream& operator<<(std::ostream& os, const ArgName& arg) {
  os << arg.name;
  if (arg.index >= 0) os << '[' << arg.index << ']';
  return os;
}

void check_floating(const at::Tensor& t, const ArgName& name) {
  TORCH_CHECK_TYPE(t.defined(), name, " must be a tensor, got an undefined tensor");
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf ||
                       st == at::kBFloat16,
                   name, " must be float32, float64, float16 or bfloat16, got ", st);
}

void check_same(const at::Tensor& t, const ArgName& name, const at::Tensor& ref,
                const ArgName& ref_name) {
  check_floating(t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " has dtype ",
                   t.scalar_type(), " but ", ref_name, " has dtype ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device());
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), name, " has shape ", t.sizes(), " but ",
                    ref_name, " has shape ", ref.sizes());
}

void check_finite(double value, const ArgName& name) {
  TORCH_CHECK_VALUE(std::isfinite(value), name, " must be finite, got ", value);
}

void check_scalar_range(double value, const ArgName& name, at::ScalarType dtype) {
  if (dtype == at::kDouble || !std::isfinite(value)) return;
  constexpr double kMax = std::numeric_limits<float>::max();
  TORCH_CHECK_VALUE(value >= -kMax && value <= kMax, name, " is out of range for ", dtype,
                    " tensors: ", value, " is finite but beyond float32's range (they compute "
                    "in float32; |", name, "| must be at most ", kMax, ", or Inf)");
}

void check_contiguous(const at::Tensor& t, const ArgName& name) {
  TORCH_CHECK(t.is_contiguous(), name,
              " must be contiguous (call .contiguous() first); in-place, out= and list "
              "forms never copy");
}

bool same_memory(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return false;
  const Span s = span_of(a, 0), t = span_of(b, 0);
  return s.begin == t.begin && s.end == t.end;
}

void check_out_alias(const at::Tensor& out, const ArgName& out_name, const at::Tensor& in,
                     const ArgName& in_name) {
  if (out.numel() == 0 || in.numel() == 0) return;
  const Span o = span_of(out, 0), i = span_of(in, 0);
  TORCH_CHECK(!overlaps(o, i) || (o.begin == i.begin && o.end == i.end), out_name,
              " partially overlaps ", in_name,
              ": an output may be the very same memory as an input, or disjoint from it");
}

void check_multi(NamedList outs, c10::ArrayRef<NamedList> inputs) {
  const int64_t n = static_cast<int64_t>(outs.tensors.size());
  for (const auto& in : inputs) {
    const int64_t m = static_cast<int64_t>(in.tensors.size());
    TORCH_CHECK_VALUE(m == n || (m == 1 && n > 0), in.name, " has ", m, " tensors but ",
                      outs.name, " has ", n, " (they must have equal lengths, or ",
                      in.name, " must hold a single tensor shared by all)");
  }
  if (n == 0) return;

  const at::Tensor& first = outs.tensors[0];
  check_floating(first, ArgName(outs.name, 0));
  for (int64_t i = 0; i < n; ++i) {
    const ArgName out_name(outs.name, i);
    const at::Tensor& out = outs.tensors[i];
    check_floating(out, out_name);
    TORCH_CHECK_TYPE(out.scalar_type() == first.scalar_type(), out_name, " has dtype ",
                     out.scalar_type(), " but ", outs.name, "[0] has dtype ",
                     first.scalar_type(),
                     " (one dtype per call; nytorch_ext.ops groups mixed lists)");
    TORCH_CHECK(out.device() == first.device(), out_name, " is on ", out.device(),
                " but ", outs.name, "[0] is on ", first.device(),
                " (one device per call; nytorch_ext.ops groups mixed lists)");
    check_contiguous(out, out_name);
    for (const auto& in : inputs) {
      const bool shared = in.tensors.size() == 1 && (n > 1 || in.shared);
      const ArgName in_name(in.name, shared ? 0 : i);
      const at::Tensor& t = in.tensors[shared ? 0 : i];
      check_floating(t, in_name);
      check_contiguous(t, in_name);
      TORCH_CHECK_TYPE(t.scalar_type() == out.scalar_type(), in_name, " has dtype ",
                       t.scalar_type(), " but ", out_name, " has dtype ", out.scalar_type());
      TORCH_CHECK(t.device() == out.device(), in_name, " is on ", t.device(), " but ",
                  out_name, " is on ", out.device());
      TORCH_CHECK_VALUE(t.sizes() == out.sizes(), in_name, " has shape ", t.sizes(),
                        " but ", out_name, " has shape ", out.sizes());
    }
  }

  // Aliasing, in O(n log n): sort the outputs by address and require them to be
  // pairwise disjoint; then every input may overlap at most its own output, and
  // only by being exactly the same memory.
  std::vector<Span> out_spans;
  out_spans.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (outs.tensors[i].numel() > 0) out_spans.push_back(span_of(outs.tensors[i], i));
  }
  std::sort(out_spans.begin(), out_spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t k = 1; k < out_spans.size(); ++k) {
    TORCH_CHECK(!overlaps(out_spans[k - 1], out_spans[k]),
                ArgName(outs.name, out_spans[k - 1].index), " and ",
                ArgName(outs.name, out_spans[k].index),
                " overlap: every output must be written exactly once");
  }
  for (const auto& in : inputs) {
    const bool shared = in.tensors.size() == 1 && (n > 1 || in.shared);
    for (int64_t j = 0; j < static_cast<int64_t>(in.tensors.size()); ++j) {
      const at::Tensor& t = in.tensors[j];
      if (t.numel() == 0) continue;
      const Span s = span_of(t, j);
      // Outputs are disjoint and sorted, so their ends are sorted too: the ones
      // overlapping s form the contiguous run [lo, hi).
      auto lo = std::partition_point(out_spans.begin(), out_spans.end(),
                                     [&](const Span& o) { return o.end <= s.begin; });
      auto hi = std::partition_point(lo, out_spans.end(),
                                     [&](const Span& o) { return o.begin < s.end; });
      for (auto it = lo; it != hi; ++it) {
        const bool same_index_exact =
            !shared && it->index == j && it->begin == s.begin && it->end == s.end;
        TORCH_CHECK(same_index_exact, ArgName(in.name, j), " overlaps ",
                    ArgName(outs.name, it->index),
                    shared ? ": a shared input may not be written by the same call"
                           : ": an input may alias only its own output, exactly");
      }
    }
  }
}

}  // namespace nytorch_ext
