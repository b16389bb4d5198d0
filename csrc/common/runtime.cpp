#include "common/runtime.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#endif
#include <stdexcept>
#include <string>

namespace dlkern {

namespace {
// A process-wide count rather than OpenMP's per-thread ICV, so kernels called from
// any Python thread see the same setting.
std::atomic<int> g_num_threads{0};
std::atomic<int64_t> g_parallel_decisions{0};
std::atomic<double> g_min_work_scale{1.0};
}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  n = omp_get_max_threads();
  if (n < 1) n = 1;
  int expected = 0;
  g_num_threads.compare_exchange_strong(expected, n);
  return g_num_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  if (n < 1) {
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  }
  g_num_threads.store(n, std::memory_order_relaxed);
}

// ---- contention: how much of the CPUs this process may use other processes hold.
// A woken thread whose CPU another process is running may wait a whole scheduler
// time slice (ms) before it starts, and the op's join waits for it. When the CPUs are
// contended, only work of many slices is worth a second thread.
namespace {

constexpr double kContendedScale = 64.0;    // min work per thread x64: ~1.5-3 ms
constexpr int64_t kCheckEveryNs = 100'000'000;  // re-measured at most every 100 ms
constexpr int64_t kStaleNs = 1'000'000'000;     // an older baseline is just replaced

std::atomic<int> g_adaptive{-1};  // -1: not read yet (DLKERN_ADAPTIVE_THREADS=0 turns it off)
std::atomic<bool> g_contended{false};
std::atomic<double> g_others_busy{-1.0};
std::atomic<int64_t> g_next_check_ns{0};
std::atomic<bool> g_checking{false};

#if defined(__linux__)
struct CpuSample {
  int64_t t_ns = 0;
  double busy_s = 0, self_s = 0;  // non-idle time of our CPUs (incl. steal), and ours
  int cpus = 0;
};
CpuSample g_prev;  // guarded by g_checking

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool take_sample(CpuSample& s) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return false;
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return false;
  const double tick = 1.0 / double(sysconf(_SC_CLK_TCK));
  char line[512];
  s = CpuSample{};
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "cpu", 3) != 0) break;  // the cpu lines come first
    int cpu;
    unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
    if (std::sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice, &sys, &idle,
                    &iowait, &irq, &softirq, &steal) != 9 ||
        cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed))
      continue;
    s.busy_s += double(user + nice + sys + irq + softirq + steal) * tick;
    ++s.cpus;
  }
  std::fclose(f);
  rusage ru;
  if (s.cpus == 0 || getrusage(RUSAGE_SELF, &ru) != 0) return false;
  s.self_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  s.t_ns = now_ns();
  return true;
}

// Other processes' CPUs (busy time of our CPUs minus our own, per second) since the
// last sample; contended when fewer CPUs than our threads are left to us.
void update_contention(int nthreads) {
  CpuSample s;
  if (!take_sample(s)) return;
  const int64_t dt = s.t_ns - g_prev.t_ns;
  if (g_prev.t_ns > 0 && dt > 0 && dt < kStaleNs && s.cpus == g_prev.cpus) {
    const double others = std::max(0.0, ((s.busy_s - g_prev.busy_s) - (s.self_s - g_prev.self_s)) / (1e-9 * double(dt)));
    g_others_busy.store(others, std::memory_order_relaxed);
    g_contended.store(double(s.cpus) - others < double(nthreads) - 0.5, std::memory_order_relaxed);
  }
  g_prev = s;
}
#endif

bool adaptive() {
  int a = g_adaptive.load(std::memory_order_relaxed);
  if (a < 0) {
    const char* env = std::getenv("DLKERN_ADAPTIVE_THREADS");
    a = env && (std::strcmp(env, "0") == 0 || std::strcmp(env, "off") == 0) ? 0 : 1;
    g_adaptive.store(a, std::memory_order_relaxed);
  }
  return a == 1;
}

// Whether the CPUs are contended; re-measured when the last measurement is old.
bool contended(int nthreads) {
#if defined(__linux__)
  if (!adaptive()) return false;
  const int64_t now = now_ns();
  if (now >= g_next_check_ns.load(std::memory_order_relaxed) &&
      !g_checking.exchange(true, std::memory_order_acquire)) {
    update_contention(nthreads);
    g_next_check_ns.store(now + kCheckEveryNs, std::memory_order_relaxed);
    g_checking.store(false, std::memory_order_release);
  }
  return g_contended.load(std::memory_order_relaxed);
#else
  (void)nthreads;
  return false;
#endif
}

int useful_threads(int64_t work, int64_t min_per_thread, int64_t max_parts, double scale) {
  const double scaled = std::min(double(min_per_thread) * scale, 9.0e18);
  const int64_t min_work = std::max<int64_t>(1, static_cast<int64_t>(scaled));
  return static_cast<int>(std::min<int64_t>({work / min_work, max_parts, int64_t(1) << 30}));
}

}  // namespace

ContentionInfo contention_info() {
  return {adaptive(), g_contended.load(std::memory_order_relaxed), g_others_busy.load(std::memory_order_relaxed)};
}

int threads_for(int64_t work, int64_t min_per_thread, int64_t max_parts) {
  if (omp_in_parallel()) return 1;
  const int n = get_num_threads();
  if (n < 2) return 1;
  double scale = g_min_work_scale.load(std::memory_order_relaxed);
  int useful = useful_threads(work, min_per_thread, max_parts, scale);
  if (useful < 2) return 1;
  // Only work worth a fork pays for the (rare, ~20 us) contention measurement.
  if (contended(n)) {
    scale *= kContendedScale;
    useful = useful_threads(work, min_per_thread, max_parts, scale);
    if (useful < 2) return 1;
  }
  g_parallel_decisions.fetch_add(1, std::memory_order_relaxed);
  return std::min(n, useful);
}

int64_t dynamic_chunk(int64_t tasks, int nthreads) {
  return std::max<int64_t>(1, tasks / (8 * int64_t(std::max(nthreads, 1))));
}

void set_min_work_scale(double scale) {
  if (!(scale >= 0.0)) throw std::invalid_argument("set_min_work_scale: scale must be >= 0");
  g_min_work_scale.store(scale, std::memory_order_relaxed);
}

double get_min_work_scale() { return g_min_work_scale.load(std::memory_order_relaxed); }

int64_t parallel_decisions() { return g_parallel_decisions.load(std::memory_order_relaxed); }

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

void* AlignedBuffer::reserve(std::size_t bytes) {
  if (bytes > capacity_) {
    std::free(data_);
    data_ = nullptr;
    capacity_ = 0;
    // Big packing buffers are swept over and over: back them with 2 MiB pages where
    // the kernel allows it (THP in "madvise" mode), so the sweeps do not miss the TLB.
    constexpr std::size_t kHuge = std::size_t(2) << 20;
    const std::size_t align = bytes >= kHuge ? kHuge : 64;
    const std::size_t rounded = (bytes + align - 1) / align * align;
    data_ = std::aligned_alloc(align, rounded);
    if (!data_) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHuge) madvise(data_, rounded, MADV_HUGEPAGE);
#endif
    capacity_ = rounded;
  }
  return data_;
}

}  // namespace dlkern
