#include "common/batch_axes.h"

namespace dlkern {

std::vector<BatchAxis> merge_batch_axes(const std::vector<BatchAxis>& axes) {
  std::vector<BatchAxis> out;
  for (const BatchAxis& ax : axes) {
    if (ax.size == 1) continue;
    if (!out.empty()) {
      BatchAxis& last = out.back();
      // Strides times sizes from arbitrary (as_strided) views may overflow: no merge then.
      int64_t sa, sb, sc;
      const bool overflow = __builtin_mul_overflow(ax.sa, ax.size, &sa) ||
                            __builtin_mul_overflow(ax.sb, ax.size, &sb) ||
                            __builtin_mul_overflow(ax.sc, ax.size, &sc);
      if (!overflow && last.sa == sa && last.sb == sb && last.sc == sc) {
        last.size *= ax.size;
        last.sa = ax.sa, last.sb = ax.sb, last.sc = ax.sc;
        continue;
      }
    }
    out.push_back(ax);
  }
  return out;
}

}  // namespace dlkern
