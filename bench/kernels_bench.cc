// Kernel microbenchmarks (Google Benchmark). Names:
//   matvec/<type>/<rows>x<cols>/threads:<n>     decode: one token; bytes/s = weight bytes
//                                               streamed; bw_frac = that / probed read
//                                               bandwidth with the same thread count
//   matmul/<type>/<rows>x<cols>/tokens:<t>/threads:<n>   prefill; OP/s counter = 2*rows*cols*t
//   verify/<type>/5632x2048/tokens:<t>/threads:<n>       a few tokens, weights from DRAM (speculative
//                                               verification); bytes/s = weight bytes
//   <matvec|matmul>/<type>-x8/...               the same on weights repacked at load
//                                               (kernels/repack.h), as models run them
//   attention/heads:<h>/kv_heads:<k>/dim:<d>/kv:<n>
//                                               one token's h query heads (h / k per KV
//                                               head) over n cached positions; FLOP/s =
//                                               h * 4 * n * d (scores and values)
//   attention-paged/.../kv:<n>/layers:<l>       the same from DRAM: a real paged KvCache of
//                                               l layers, one layer per iteration; bytes/s =
//                                               keys and values read, bw_frac = that / the
//                                               1-thread probe
//   peak/<int8_dot|f32_fma|bf16_dot>/threads:<n>
//                                               the compute ceilings of kernels/peak.h
//                                               (bf16_dot: 0 without AVX512-BF16)
//   read_bandwidth/threads:<n>                  the probe of kernels/bandwidth.h
//   parallel_for_overhead/threads:<n>           one thread-pool dispatch of an empty job
// e.g.  ./jevons_bench --benchmark_filter='matvec/q4_0'  or  'matvec/.*/threads:1'
// The weights are random valid blocks (random codes, small positive fp16 scales): the
// kernels' speed does not depend on the values. matvec cycles through 256 MiB of copies
// of its matrix so that the weights come from DRAM, as in a real decode.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/float16.h"
#include "core/large_buffer.h"
#include "core/thread_pool.h"
#include "kernels/bandwidth.h"
#include "kernels/matmul.h"
#include "kernels/peak.h"
#include "kernels/repack.h"
#include "quant/blocks.h"
#include "quant/types.h"
#include "runtime/kv_cache.h"

namespace jevons {
namespace {

constexpr size_t kProbeBytes = size_t(1) << 30;

ThreadPool& pool_for(int n) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[n];
  if (!p) p = std::make_unique<ThreadPool>(n);
  return *p;
}

// Probed read bandwidth (GB/s) for n threads, measured once.
double probed_bandwidth(int n) {
  static std::map<int, double> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  const double gbs = measure_read_bandwidth_gbs(n, kProbeBytes, 5);
  cache[n] = gbs;
  return gbs;
}

struct WeightBuffer {
  std::vector<uint8_t> bytes;
  Tensor t;
};

void set_half(uint8_t* p, float v) {
  const uint16_t h = float_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// Random but valid weights of a type: random code bytes, sane scales.
const Tensor& weights(TensorType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::unique_ptr<WeightBuffer>> cache;
  auto& wb = cache[{int(type), rows, cols}];
  if (wb) return wb->t;
  wb = std::make_unique<WeightBuffer>();
  const size_t rb = row_bytes(type, cols);
  wb->bytes.resize(rb * size_t(rows));
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= wb->bytes.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&wb->bytes[i], &v, 8);
  }
  const TypeTraits& tr = type_traits(type);
  const size_t nblocks = wb->bytes.size() / tr.type_size;
  uint8_t* base = wb->bytes.data();
  for (size_t b = 0; b < nblocks; ++b) {
    uint8_t* blk = base + b * tr.type_size;
    switch (type) {
      case TensorType::Q4_0: case TensorType::Q5_0: case TensorType::Q8_0:
        set_half(blk, 0.01f);
        break;
      case TensorType::Q4_1: case TensorType::Q5_1:
        set_half(blk, 0.01f);
        set_half(blk + 2, -0.05f);
        break;
      case TensorType::Q4_K:
        set_half(blk, 0.001f);
        set_half(blk + 2, 0.001f);
        break;
      case TensorType::Q2_K:
        set_half(blk + offsetof(BlockQ2_K, d), 0.001f);
        set_half(blk + offsetof(BlockQ2_K, dmin), 0.001f);
        break;
      case TensorType::Q3_K:
        set_half(blk + offsetof(BlockQ3_K, d), 0.001f);
        break;
      case TensorType::Q6_K:
        set_half(blk + offsetof(BlockQ6_K, d), 0.001f);
        break;
      case TensorType::F32: {
        const float f = float(int(blk[0]) - 128) / 128.0f;
        std::memcpy(blk, &f, 4);
        break;
      }
      // F16 of full precision (11 significant bits): values that are all BF16 values
      // would be repacked as BF16 (kernels/repack.h) and bench the BF16 kernels.
      case TensorType::F16: set_half(blk, float(int(blk[0] | blk[1] << 8) - 32768) / 32768.0f); break;
      case TensorType::BF16: {
        const uint16_t h = float_to_bf16(float(int(blk[0]) - 128) / 128.0f);
        std::memcpy(blk, &h, 2);
        break;
      }
      default: break;
    }
  }
  wb->t = Tensor{"bench", type, cols, rows, wb->bytes.data()};
  return wb->t;
}

// The same weights repacked as a model loads them (see kernels/repack.h).
const Tensor& repacked_weights(TensorType type, int64_t rows, int64_t cols) {
  static RepackArena arena;
  static std::map<std::tuple<int, int64_t, int64_t>, Tensor> cache;
  auto [it, added] = cache.try_emplace({int(type), rows, cols});
  if (added) it->second = arena.repack(weights(type, rows, cols));
  return it->second;
}

std::vector<float> activations(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : x) v = dist(rng);
  return x;
}

// Copies of one weight matrix filling well over the last-level cache (32 MiB on the
// development machine): each iteration reads the next copy, so the weights stream
// from DRAM as in a real decode, not from L3. In huge pages, as the model's repacked
// weights are (LargeBuffer).
struct WeightCopies {
  LargeBuffer bytes;
  std::vector<Tensor> copies;
  WeightCopies(const Tensor& w, size_t total_bytes) {
    const size_t packed = w.packed ? size_t(w.packed_rows) * w.row_bytes() : 0;
    const size_t one = w.nbytes() + packed;
    const size_t n = std::max<size_t>(2, (total_bytes + one - 1) / one);
    bytes = LargeBuffer(n * one, "benchmark weight copies");
    for (size_t i = 0; i < n; ++i) {
      uint8_t* copy = bytes.data() + i * one;
      std::memcpy(copy, w.data, w.nbytes());
      if (packed) std::memcpy(copy + w.nbytes(), w.packed, packed);
      Tensor t = w;
      t.data = copy;
      if (packed) t.packed = copy + w.nbytes();
      copies.push_back(t);
    }
  }
};

// stream_bytes: the copies' total (256 MiB streams from DRAM; 0: two copies, which a
// small matrix keeps in L2 / L3, to show the kernel's own speed apart from DRAM's).
void BM_Matvec(benchmark::State& state, TensorType type, int64_t rows, int64_t cols, int threads, bool repacked,
               size_t stream_bytes, int64_t tokens) {
  const WeightCopies w(repacked ? repacked_weights(type, rows, cols) : weights(type, rows, cols), stream_bytes);
  const std::vector<float> x = activations(cols * tokens);
  std::vector<float> y(static_cast<size_t>(rows * tokens));
  ThreadPool& pool = pool_for(threads);
  size_t i = 0;
  for (auto _ : state) {
    matmul(w.copies[i++ % w.copies.size()], x.data(), tokens, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const size_t nbytes = w.copies[0].nbytes();
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(nbytes));
  state.counters["bw_frac"] = benchmark::Counter(double(nbytes) / 1e9 / probed_bandwidth(threads),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kernel_target_name());
}

void BM_Matmul(benchmark::State& state, TensorType type, int64_t rows, int64_t cols, int64_t tokens, int threads,
               bool repacked) {
  const Tensor& w = repacked ? repacked_weights(type, rows, cols) : weights(type, rows, cols);
  const std::vector<float> x = activations(cols * tokens);
  std::vector<float> y(static_cast<size_t>(rows * tokens));
  ThreadPool& pool = pool_for(threads);
  for (auto _ : state) {
    matmul(w, x.data(), tokens, y.data(), &pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["OP/s"] = benchmark::Counter(2.0 * double(rows) * double(cols) * double(tokens),
                                              benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(kernel_target_name());
}

// One decode step's attention at depth n_kv: every query head over the cache rows of its
// KV head, the rows scattered as the paged cache has them.
void BM_Attention(benchmark::State& state, int heads, int kv_heads, int dim, int64_t n_kv) {
  const int group = heads / kv_heads;
  const int64_t row = int64_t(kv_heads) * dim;
  const std::vector<float> cache = activations(2 * n_kv * row + 1);
  std::vector<const void*> k_rows(static_cast<size_t>(n_kv)), v_rows(static_cast<size_t>(n_kv));
  std::mt19937 rng(3);
  std::vector<int64_t> slot(static_cast<size_t>(n_kv));
  for (int64_t i = 0; i < n_kv; ++i) slot[size_t(i)] = i;
  std::shuffle(slot.begin(), slot.end(), rng);
  for (int64_t i = 0; i < n_kv; ++i) {
    k_rows[size_t(i)] = cache.data() + 2 * slot[size_t(i)] * row;
    v_rows[size_t(i)] = cache.data() + 2 * slot[size_t(i)] * row + row;
  }
  const std::vector<float> q = activations(int64_t(heads) * dim);
  std::vector<float> out(size_t(heads) * size_t(dim));
  const float scale = 1.0f / std::sqrt(float(dim));
  for (auto _ : state) {
    for (int g = 0; g < kv_heads; ++g) {
      attention_heads(&q[size_t(g * group * dim)], group, TensorType::F32, k_rows.data(), int64_t(g) * dim, v_rows.data(),
                      int64_t(g) * dim, n_kv, dim, dim, scale, &out[size_t(g * group * dim)]);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * heads * double(n_kv) * dim, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
  state.SetLabel(kernel_target_name());
}

// The same from DRAM, as a decode deep into a long context reads it: a real paged
// KvCache of `layers` layers (16-position blocks, head-major), one layer per iteration
// in turn, so that the rows come from memory (layers x n_kv x the KV bytes per position
// dwarf the LLC). bytes/s counts the keys and values read; bw_frac compares it with the
// 1-thread probe.
void BM_AttentionPaged(benchmark::State& state, int heads, int kv_heads, int dim, int64_t n_kv, int layers, TensorType kv_type) {
  const int group = heads / kv_heads;
  KvCache cache(layers, int(n_kv), kv_heads * dim, kv_heads * dim, kv_heads, kv_type);
  if (!cache.reserve(int(n_kv))) {
    state.SkipWithError("KV cache reservation failed");
    return;
  }
  // 61 random positions' keys and values, cycled (the scores vary, as in a real cache).
  const int64_t kv_floats = 2 * int64_t(kv_heads) * dim;
  const std::vector<float> kv = activations(61 * kv_floats);
  for (int l = 0; l < layers; ++l)
    for (int pos = 0; pos < int(n_kv); ++pos) {
      const float* row = kv.data() + (pos + 7 * l) % 61 * kv_floats;
      cache.store(l, pos, row, row + kv_heads * dim);
    }
  std::vector<std::vector<const void*>> k_rows(static_cast<size_t>(layers)), v_rows(static_cast<size_t>(layers));
  for (int l = 0; l < layers; ++l)
    for (int pos = 0; pos < int(n_kv); ++pos) {
      k_rows[size_t(l)].push_back(cache.k(l, pos));
      v_rows[size_t(l)].push_back(cache.v(l, pos));
    }
  const std::vector<float> q = activations(int64_t(heads) * dim);
  std::vector<float> out(size_t(heads) * size_t(dim));
  const float scale = 1.0f / std::sqrt(float(dim));
  int layer = 0;
  for (auto _ : state) {
    for (int g = 0; g < kv_heads; ++g)
      attention_heads(&q[size_t(g * group * dim)], group, kv_type, k_rows[size_t(layer)].data(), g * cache.k_head_stride(),
                      v_rows[size_t(layer)].data(), g * cache.v_head_stride(), n_kv, dim, dim, scale,
                      &out[size_t(g * group * dim)]);
    benchmark::DoNotOptimize(out.data());
    layer = (layer + 1) % layers;
  }
  const double bytes = 2.0 * double(n_kv) * kv_heads * double(row_bytes(kv_type, dim));
  state.SetBytesProcessed(int64_t(double(state.iterations()) * bytes));
  state.counters["bw_frac"] =
      benchmark::Counter(bytes / (probed_bandwidth(1) * 1e9), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * heads * double(n_kv) * dim, benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
  state.SetLabel(kernel_target_name());
}

void BM_ReadBandwidth(benchmark::State& state, int threads) {
  ThreadPool& pool = pool_for(threads);
  static std::map<int, std::unique_ptr<ReadBandwidthProbe>> probes;
  auto& probe = probes[threads];
  if (!probe) probe = std::make_unique<ReadBandwidthProbe>(kProbeBytes, &pool);
  for (auto _ : state) benchmark::DoNotOptimize(probe->pass(&pool));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(probe->bytes()));
}

// The compute ceilings of kernels/peak.h (what `jevons bench` compares prefill with).
void BM_ComputePeak(benchmark::State& state, PeakKind kind, int threads) {
  double gops = 0;
  for (auto _ : state) gops = measure_compute_peak_gops(kind, threads);
  state.counters["OP/s"] = benchmark::Counter(gops * 1e9, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
  state.SetLabel(peak_kind_name(kind));
}

// Cost of one parallel_for dispatch with an (almost) empty job: what every matmul
// pays on top of its work (~7 per layer per token).
void BM_ParallelForOverhead(benchmark::State& state, int threads) {
  ThreadPool& pool = pool_for(threads);
  std::atomic<int64_t> sink{0};
  for (auto _ : state) pool.parallel_for(threads * 4, [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  benchmark::DoNotOptimize(sink.load());
}

// With --benchmark_repetitions=N: the fastest repetition is the least disturbed by
// other processes on a shared machine ("min" of times, "max" of rates).
benchmark::internal::Benchmark* with_extremes(benchmark::internal::Benchmark* b) {
  return b
      ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
      ->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

void register_all() {
  const std::pair<const char*, TensorType> types[] = {
      {"q4_0", TensorType::Q4_0}, {"q4_1", TensorType::Q4_1}, {"q5_0", TensorType::Q5_0},
      {"q8_0", TensorType::Q8_0}, {"q2_K", TensorType::Q2_K}, {"q3_K", TensorType::Q3_K}, {"q4_K", TensorType::Q4_K}, {"q5_K", TensorType::Q5_K}, {"q6_K", TensorType::Q6_K},
      {"bf16", TensorType::BF16}, {"f16", TensorType::F16},   {"f32", TensorType::F32}};
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 4096}, {5632, 2048}, {2048, 5632}};
  const int hw = std::max(1, physical_core_count());
  std::vector<int> thread_counts = {1};
  if (hw >= 2) thread_counts.push_back(2);
  if (hw > 2) thread_counts.push_back(hw);
  for (int th : thread_counts) {
    with_extremes(benchmark::RegisterBenchmark(("read_bandwidth/threads:" + std::to_string(th)).c_str(), BM_ReadBandwidth, th))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (int th : thread_counts)
    with_extremes(benchmark::RegisterBenchmark(("parallel_for_overhead/threads:" + std::to_string(th)).c_str(),
                                               BM_ParallelForOverhead, th))
        ->UseRealTime();
  // Each type as stored, and as repacked at load where this CPU's kernels read a repacked layout.
  auto variants = [](TensorType type) {
    std::vector<bool> v = {false};
    if (has_x8_layout(type) && matmul_reads_x8(type) && repacking_enabled()) v.push_back(true);
    return v;
  };
  for (auto [name, type] : types)
    for (bool repacked : variants(type))
      for (auto [rows, cols] : shapes)
        for (int th : thread_counts) {
          const std::string n = std::string("matvec/") + name + (repacked ? "-x8/" : "/") + std::to_string(rows) + "x" +
                                std::to_string(cols) + "/threads:" + std::to_string(th);
          with_extremes(benchmark::RegisterBenchmark(n.c_str(), BM_Matvec, type, rows, cols, th, repacked, size_t(256) << 20, int64_t(1)))
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
  // A few tokens with the weights from DRAM, as speculative verification (k + 1 tokens)
  // and a handful of streams run them: time over tokens:1 is the cost of the pass in
  // decode steps (memory-bound kernels stay near 1).
  for (auto [name, type] : types)
    for (bool repacked : variants(type))
      for (int64_t tokens : {1, 2, 3, 5, 9})
        for (int th : thread_counts) {
          const std::string n = std::string("verify/") + name + (repacked ? "-x8/" : "/") + "5632x2048/tokens:" +
                                std::to_string(tokens) + "/threads:" + std::to_string(th);
          with_extremes(benchmark::RegisterBenchmark(n.c_str(), BM_Matvec, type, int64_t(5632), int64_t(2048), th, repacked,
                                                     size_t(256) << 20, tokens))
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
  // The same kernels on a 512x2048 matrix that stays in the caches: where this runs far
  // above the DRAM bandwidth (bw_frac >> 1), decode is bound by memory, not by the kernel.
  for (auto [name, type] : types)
    for (bool repacked : variants(type))
      for (int th : thread_counts) {
        const std::string n = std::string("matvec-cached/") + name + (repacked ? "-x8/" : "/") + "512x2048/threads:" + std::to_string(th);
        with_extremes(benchmark::RegisterBenchmark(n.c_str(), BM_Matvec, type, int64_t(512), int64_t(2048), th, repacked, size_t(0), int64_t(1)))
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
  // 4096x512: one token's activations fit L1, which isolates the arithmetic of a tile
  // from the cache traffic of wide rows.
  const std::tuple<int64_t, int64_t, int64_t> matmul_shapes[] = {{4096, 4096, 64}, {4096, 4096, 512}, {4096, 512, 64}};
  for (auto [name, type] : types)
    for (bool repacked : variants(type))
      for (auto [rows, cols, tokens] : matmul_shapes)
        for (int th : thread_counts) {
          const std::string n = std::string("matmul/") + name + (repacked ? "-x8/" : "/") + std::to_string(rows) + "x" +
                                std::to_string(cols) + "/tokens:" + std::to_string(tokens) + "/threads:" + std::to_string(th);
          with_extremes(benchmark::RegisterBenchmark(n.c_str(), BM_Matmul, type, rows, cols, tokens, th, repacked))
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }
  // GQA shapes: tinyllama-1.1b (groups of 8, dim 64), qwen2.5-1.5b (6, dim 128),
  // llama-3.2-1b (4, dim 64); the 32/4/128 shape as earlier benchmarks ran it.
  const std::tuple<int, int, int> attention_shapes[] = {{32, 4, 64}, {32, 4, 128}, {12, 2, 128}, {32, 8, 64}};
  for (auto [heads, kv_heads, dim] : attention_shapes)
    for (int64_t n_kv : {64, 512, 2048})
      with_extremes(benchmark::RegisterBenchmark(("attention/heads:" + std::to_string(heads) + "/kv_heads:" +
                                                  std::to_string(kv_heads) + "/dim:" + std::to_string(dim) +
                                                  "/kv:" + std::to_string(n_kv)).c_str(),
                                                 BM_Attention, heads, kv_heads, dim, n_kv))
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  // From DRAM through the paged cache: tinyllama-1.1b (22 layers) and qwen2.5-1.5b (28);
  // layers:1 keeps tinyllama's cache in the LLC, which leaves the kernel's arithmetic.
  const std::tuple<int, int, int, int64_t, int> paged_shapes[] = {
      {32, 4, 64, 2048, 22}, {32, 4, 64, 2048, 1}, {12, 2, 128, 2048, 28}, {12, 2, 128, 8192, 28}};
  for (TensorType kv_type : {TensorType::F32, TensorType::F16, TensorType::BF16})
    for (auto [heads, kv_heads, dim, n_kv, layers] : paged_shapes)
      with_extremes(benchmark::RegisterBenchmark(("attention-paged/" + std::string(type_name(kv_type)) + "/heads:" +
                                                  std::to_string(heads) + "/kv_heads:" + std::to_string(kv_heads) +
                                                  "/dim:" + std::to_string(dim) + "/kv:" + std::to_string(n_kv) +
                                                  "/layers:" + std::to_string(layers)).c_str(),
                                                 BM_AttentionPaged, heads, kv_heads, dim, n_kv, layers, kv_type))
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  for (auto [name, kind] : {std::pair{"int8_dot", PeakKind::kInt8Dot}, std::pair{"f32_fma", PeakKind::kF32Fma},
                            std::pair{"bf16_dot", PeakKind::kBf16Dot}})
    for (int th : thread_counts)
      with_extremes(benchmark::RegisterBenchmark((std::string("peak/") + name + "/threads:" + std::to_string(th)).c_str(),
                                                 BM_ComputePeak, kind, th))
          ->UseRealTime()
          ->Iterations(1);
}

}  // namespace
}  // namespace jevons

int main(int argc, char** argv) {
  jevons::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("jevons kernels: %s\n", jevons::kernel_target_name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
