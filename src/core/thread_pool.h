// A persistent pool of worker threads (created once, not per token) that splits
// a range of rows into contiguous chunks, one per thread (with parallel_for_stealing,
// threads that finish early take pieces from the end of the others' chunks).
//
// Dispatch is cheap: a forward pass calls parallel_for ~7 times per layer per token,
// so workers wait for the next job by polling an atomic generation counter for a
// short while (JEVONS_SPIN_US microseconds, default 200: pure spinning for the first
// 20, then yielding the core between polls) before falling back to a condition
// variable, and the caller waits the same way for the workers to finish.
// A job therefore starts and ends in well under a microsecond when the pool is busy,
// while an idle pool still sleeps.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace jevons {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Calls fn(begin, end) on disjoint chunks covering [0, n), the calling thread
  // taking the first chunk; returns when all are done. Not reentrant.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // Like parallel_for, but each thread walks its contiguous chunk in pieces of at most
  // `grain` and, once done, takes pieces from the far end of chunks still in progress.
  // On a shared VM one core is often slowed for a while; with fixed chunks the other
  // then waits at every join. Each thread still reads mostly one contiguous range (a
  // matmul's rows: one stream for the prefetchers). From n = 2^31 on (beyond the packed
  // ranges), it runs fixed chunks as parallel_for does.
  void parallel_for_stealing(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int index);
  // Both parallel_for's: grain 0 gives fixed chunks, else stealing in pieces of grain.
  void run_job(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
  void run_share(int index);  // this thread's part of the current job

  // The unclaimed part [begin, end) of one thread's chunk in a stealing job, packed in
  // one word so that its owner (from the front) and thieves (from the back) claim
  // pieces with one compare-and-swap.
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };

  int n_threads_;
  int64_t spin_ns_;
  std::vector<std::thread> workers_;
  std::mutex mu_;  // guards sleeping: start_cv_ waits on generation_, done_cv_ on pending_
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;  // written before generation_
  int64_t job_n_ = 0;
  int64_t job_grain_ = 0;  // 0: fixed chunks; else a stealing job's piece size
  std::unique_ptr<Share[]> shares_;
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> caller_sleeping_{false};
};

// Physical cores of this machine (hyperthread siblings counted once), at least 1.
int physical_core_count();

}  // namespace jevons
