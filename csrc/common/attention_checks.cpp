#include "common/attention_checks.h"

#include <limits>

#include "common/errors.h"

namespace dlkern {
namespace {

void require_4d(const Dims& a, const char* op, const char* arg, const char* layout) {
  if (a.size() != 4) throw_value_error(op, ": ", arg, " must be 4-D ", layout, ", got shape ", dims_str(a));
}

}  // namespace

AttentionDims attention_dims(const char* op, const Dims& q, const Dims& k, const Dims& v, const char* kname,
                             const char* vname) {
  require_4d(q, op, "q", "(B, Hq, Tq, D)");
  require_4d(k, op, kname, "(B, Hkv, T, D)");
  require_4d(v, op, vname, "(B, Hkv, T, Dv)");
  const AttentionDims s{q[0], q[1], k[1], q[2], k[2], q[3], v[3]};
  if (k[3] != s.D)
    throw_value_error(op, ": head_dim mismatch: q has shape ", dims_str(q), " but ", kname, " has shape ",
                      dims_str(k));
  if (v[0] != k[0] || v[1] != k[1] || v[2] != k[2])
    throw_value_error(op, ": ", kname, " has shape ", dims_str(k), " but ", vname, " has shape ", dims_str(v),
                      "; they must agree on (B, Hkv, T)");
  if (k[0] != s.B)
    throw_value_error(op, ": batch mismatch: q has shape ", dims_str(q), " but ", kname, " has shape ",
                      dims_str(k));
  if (s.Hkv < 1 || s.Hq % s.Hkv != 0)
    throw_value_error(op, ": q has ", s.Hq, " heads (shape ", dims_str(q), "), not a multiple of the ", s.Hkv,
                      " kv heads of ", kname, " (shape ", dims_str(k), ")");
  if (s.D < 1) throw_value_error(op, ": head_dim must be >= 1, got q of shape ", dims_str(q));
  return s;
}

void decode_length(const char* op, int64_t length, AttentionDims& d, const Dims& q, const Dims& k_cache) {
  if (length < 0) throw_value_error(op, ": length must be >= 0, got ", length);
  if (length > d.Tk)
    throw_value_error(op, ": length ", length, " exceeds the cache capacity ", d.Tk, " (k_cache shape ",
                      dims_str(k_cache), ")");
  if (length < d.Tq)
    throw_value_error(op, ": length ", length, " is less than the ", d.Tq, " query positions of q (shape ",
                      dims_str(q), ")");
  d.Tk = length;
}

void kv_cache_bounds(const char* op, const Dims& c, const Dims& n, int64_t offset) {
  require_4d(c, op, "cache", "(B, H, max_seq, D)");
  require_4d(n, op, "new", "(B, H, T, D)");
  if (n[0] != c[0] || n[1] != c[1] || n[3] != c[3])
    throw_value_error(op, ": new has shape ", dims_str(n), " but cache has shape ", dims_str(c),
                      "; they must agree on (B, H, D)");
  if (offset < 0) throw_value_error(op, ": offset must be >= 0, got ", offset);
  // S - T cannot overflow (both are sizes >= 0); offset + T could, near 2^63.
  if (offset > c[2] - n[2])
    throw_value_error(op, ": cache overflow: offset ", offset, " + ", n[2], " new > capacity ", c[2],
                      " (cache shape ", dims_str(c), ")");
}

std::pair<int64_t, int64_t> rope_dims(const char* op, const char* arg, const Dims& x, double base, int64_t offset) {
  if (x.size() < 2)
    throw_value_error(op, ": ", arg, " must be (..., T, D) with at least 2 dims, got shape ", dims_str(x));
  const int64_t T = x[x.size() - 2], D = x[x.size() - 1];
  if (D % 2 != 0) throw_value_error(op, ": the last dim of ", arg, " must be even, got shape ", dims_str(x));
  if (!(base > 0.0)) throw_value_error(op, ": base must be > 0, got ", base);
  if (offset < 0) throw_value_error(op, ": offset must be >= 0, got ", offset);
  // The last position is offset + T - 1, so offset = INT64_MAX with one token is valid.
  if (T > 0 && offset > std::numeric_limits<int64_t>::max() - (T - 1))
    throw_value_error(op, ": offset ", offset, " + ", T, " positions overflows a 64-bit position");
  return {T, D};
}

}  // namespace dlkern
