#include "common/batch_axes.h"

namespace dlkern {

std::vector<BatchAxis> merge_batch_axes(const std::vector<BatchAxis>& axes) {
  std::vector<BatchAxis> out;
  for (const BatchAxis& ax : axes) {
    if (ax.size == 1) continue;
    if (!out.empty()) {
      BatchAxis& last = out.back();
      if (last.sa == ax.sa * ax.size && last.sb == ax.sb * ax.size && last.sc == ax.sc * ax.size) {
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
