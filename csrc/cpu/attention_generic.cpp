// Attention kernels, portable path: GCC/Clang vector extensions (SSE2 on any x86-64);
// vector types and exp from softmax_simd.h.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "common/runtime.h"
#include "cpu/attention_isa.h"

namespace dlkern::cpu::generic {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/attention_kernels.h"
}  // namespace

DLKERN_DEFINE_ATTENTION_ISA(VecF32)
DLKERN_DEFINE_ATTENTION_ISA(VecF64)

}  // namespace dlkern::cpu::generic
