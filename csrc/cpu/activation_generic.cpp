// Activation kernels (activation_kernels.h), portable path: GCC/Clang vector extensions.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/activation_isa.h"

namespace dlkern::cpu::generic {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/activation_kernels.h"
}  // namespace
DLKERN_ACTIVATION_ENTRIES
#undef DLKERN_ACTIVATION_ENTRIES
}  // namespace dlkern::cpu::generic
