// What every model architecture offers the runtime: evaluate a run of tokens of
// one sequence, appending to its KV cache, and produce next-token logits.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/repack.h"
#include "model/config.h"
#include "runtime/kv_cache.h"

namespace jevons {

class ModelSource;
class ThreadPool;

// Choices the user makes about how a model's weights are held in memory.
struct LoadOptions {
  // Which F16 matrices run the BF16 kernels (kernels/repack.h): by default those whose
  // values are all BF16 values, where the CPU has a BF16 dot product. Only where this
  // CPU's kernels repack (x86, fast kernels); elsewhere F16 stays as it is.
  F16AsBf16 f16_as_bf16 = F16AsBf16::kWhereExact;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Several sequences' tokens evaluated in one pass, so every weight is read once
  // for the whole batch (continuous batching: decode steps of running sequences and
  // chunks of new prompts together). Each chunk's tokens go at positions
  // cache->n_past() .. +n, and the caches advance. logits receives, in chunk order,
  // the rows of each chunk's last n_logits tokens (1: the next token's; n: every one's,
  // as speculative verification and perplexity need).
  // Throws Error if a chunk does not fit in its cache or an id is out of range.
  struct Chunk {
    KvCache* cache;
    const int32_t* tokens;
    int64_t n;
    int64_t n_logits = 1;  // 1..n
  };
  virtual void forward_batch(const std::vector<Chunk>& chunks, float* logits) = 0;

  // One sequence: logits receives n x n_vocab floats when all_logits, else the last row.
  void forward(KvCache& cache, const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
    forward_batch({Chunk{&cache, tokens, n, all_logits ? n : 1}}, logits);
  }

  // Multi-token prediction (DeepSeek-V3's nextn module, arXiv 2412.19437 section 2.2):
  // at position i, the trunk's final hidden state h_i (before the output norm) and the
  // embedding of the next token t_{i+1} give logits for t_{i+2}, through one more
  // transformer block with a KV cache of its own (new_mtp_cache). A proposer for
  // speculative decoding (engine/speculative.h). config().n_mtp: 0 when absent.
  //
  // With keep_hidden(true), every forward_batch keeps h of all its tokens (chunk order).
  void keep_hidden(bool on) { keep_hidden_ = on; }
  const std::vector<float>& hidden() const { return hidden_; }
  struct MtpChunk {
    KvCache* cache;               // the module's cache (new_mtp_cache); positions cache->n_past() ..
    const int32_t* next_tokens;   // t_{i+1} of each position
    const float* hidden;          // h_i of each position, n x n_embd
    int64_t n;
  };
  // logits receives one row per chunk (its last position). Throws Error without a module.
  virtual void forward_mtp(const std::vector<MtpChunk>& chunks, float* logits);
  KvCache new_mtp_cache(int n_ctx, TensorType kv_type) const {
    const ModelConfig& c = config();
    return KvCache(1, n_ctx, c.cache_k_dim, c.cache_v_dim, c.cache_heads, kv_type);
  }
  // The module's weight bytes per proposed token.
  virtual uint64_t mtp_weight_bytes_per_token() const { return 0; }

  // Weight bytes one decoded token reads (every matrix once, one embedding row):
  // the numerator of the decode roofline.
  virtual uint64_t weight_bytes_per_token() const = 0;
  // Multiply-add FLOPs of the weight matmuls for one token (2 per weight), and of
  // attention at a given context length.
  virtual double matmul_flops_per_token() const = 0;
  virtual double attention_flops(int64_t n_past) const = 0;

  // A standalone cache of n_ctx positions with elements of kv_type (f32, f16, bf16).
  KvCache new_cache(int n_ctx, TensorType kv_type = TensorType::F32) const {
    const ModelConfig& c = config();
    return KvCache(c.n_layer, n_ctx, c.cache_k_dim, c.cache_v_dim, c.cache_heads, kv_type);
  }
  void set_thread_pool(ThreadPool* pool) { pool_ = pool; }

  // Bytes of weights repacked at load for this CPU's kernels (kernels/repack.h), held
  // in addition to the file's map (whose copies of those rows are dropped from memory).
  size_t repacked_bytes() const { return repacked_.bytes(); }
  // Bytes of the other large matrices, copied unchanged into huge pages at load (also
  // in place of the file's pages).
  size_t copied_bytes() const { return repacked_.copied_bytes(); }
  // Bytes of F16 matrices that run the BF16 kernels (LoadOptions::f16_as_bf16), and of
  // those among them whose values rounding changed.
  size_t f16_as_bf16_bytes() const { return repacked_.f16_as_bf16_bytes(); }
  size_t f16_rounded_bytes() const { return repacked_.f16_rounded_bytes(); }

 protected:
  ThreadPool* pool_ = nullptr;
  bool keep_hidden_ = false;
  std::vector<float> hidden_;
  RepackArena repacked_;  // declared in the base: outlives the tensors that point into it
};

// Builds the model a GGUF file describes (architecture from general.architecture),
// checking that every tensor it needs is present and correctly shaped. The file
// must outlive the model: weights are used in place from its map.
std::unique_ptr<Model> load_model(const ModelSource& source, const LoadOptions& options = {});

}  // namespace jevons
