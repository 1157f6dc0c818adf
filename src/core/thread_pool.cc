#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace jevons {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t spin_budget_ns() {
  if (const char* env = std::getenv("JEVONS_SPIN_US"); env && *env) return std::atoll(env) * 1000;
  return 200 * 1000;
}

// Waits for pred() by polling: pure spinning (pause) for the first few microseconds,
// where a busy pool's next job or completion arrives, then polling with a yield of the
// core between polls (if the machine is oversubscribed the thread we wait for gets to
// run), until the budget runs out; true if pred() held.
template <class Pred>
bool spin_until(const Pred& pred, int64_t budget_ns) {
  if (pred()) return true;
  if (budget_ns <= 0) return false;
  const int64_t start = now_ns(), spin_end = start + std::min<int64_t>(budget_ns, 20000), deadline = start + budget_ns;
  for (uint32_t i = 1;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 31) == 0 && now_ns() > spin_end) break;
  }
  while (now_ns() < deadline) {
    if (pred()) return true;
    std::this_thread::yield();
  }
  return pred();
}

std::pair<int64_t, int64_t> chunk(int64_t n, int parts, int k) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t begin = k * base + (k < extra ? k : extra);
  return {begin, begin + base + (k < extra ? 1 : 0)};
}

uint64_t pack_range(int64_t begin, int64_t end) { return uint64_t(begin) << 32 | uint64_t(end); }
int64_t range_begin(uint64_t r) { return int64_t(r >> 32); }
int64_t range_end(uint64_t r) { return int64_t(r & 0xFFFFFFFFu); }

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads), spin_ns_(spin_budget_ns()), shares_(new Share[size_t(n_threads_)]) {
  for (int k = 1; k < n_threads_; ++k) workers_.emplace_back([this, k] { worker(k); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) { run_job(n, 0, fn); }

void ThreadPool::parallel_for_stealing(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  run_job(n, std::max<int64_t>(1, grain), fn);
}

void ThreadPool::run_share(int index) {
  const std::function<void(int64_t, int64_t)>& fn = *job_;
  if (job_grain_ == 0) {
    auto [b, e] = chunk(job_n_, n_threads_, index);
    if (b < e) fn(b, e);
    return;
  }
  const int64_t grain = job_grain_;
  // Own chunk from the front, in pieces.
  std::atomic<uint64_t>& own = shares_[size_t(index)].range;
  for (uint64_t r = own.load(std::memory_order_acquire);;) {
    const int64_t b = range_begin(r), e = range_end(r);
    if (b >= e) break;
    const int64_t piece_end = std::min(e, b + grain);
    if (own.compare_exchange_weak(r, pack_range(piece_end, e), std::memory_order_acq_rel)) {
      fn(b, piece_end);
      r = own.load(std::memory_order_acquire);
    }
  }
  // Then the others' chunks from the back, the next thread's first.
  for (int k = 1; k < n_threads_; ++k) {
    std::atomic<uint64_t>& other = shares_[size_t((index + k) % n_threads_)].range;
    for (uint64_t r = other.load(std::memory_order_acquire);;) {
      const int64_t b = range_begin(r), e = range_end(r);
      if (b >= e) break;
      const int64_t piece_begin = std::max(b, e - grain);
      if (other.compare_exchange_weak(r, pack_range(b, piece_begin), std::memory_order_acq_rel)) {
        fn(piece_begin, e);
        r = other.load(std::memory_order_acquire);
      }
    }
  }
}

void ThreadPool::run_job(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  if (grain > 0 && n >= (int64_t(1) << 31)) grain = 0;  // the packed ranges hold 31 bits
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  if (grain > 0)
    for (int k = 0; k < n_threads_; ++k) {
      auto [b, e] = chunk(n, n_threads_, k);
      shares_[size_t(k)].range.store(pack_range(b, e), std::memory_order_relaxed);
    }
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // Under the lock so that a worker between its last check and its wait cannot miss it.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();  // no system call when nobody sleeps
  run_share(0);
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; }, spin_ns_)) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_.store(true);
    done_cv_.wait(lock, [&] { return pending_.load() == 0; });  // seq_cst: pairs with the worker's flag check
    caller_sleeping_.store(false);
  }
  job_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(fresh, spin_ns_)) {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, fresh);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    run_share(index);
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

int physical_core_count() {
  // Count distinct (physical id, core id) pairs; fall back to hardware_concurrency.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(cpuinfo, line)) {
    auto value = [&] { auto p = line.find(':'); return p == std::string::npos ? std::string() : line.substr(p + 2); };
    if (line.rfind("physical id", 0) == 0) phys = value();
    if (line.rfind("core id", 0) == 0) cores.emplace(phys, value());
  }
  if (!cores.empty()) return int(cores.size());
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

}  // namespace jevons
