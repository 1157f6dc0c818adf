// What every model architecture offers the runtime: evaluate a run of tokens of
// one sequence, appending to its KV cache, and produce next-token logits.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "model/config.h"
#include "runtime/kv_cache.h"

namespace jevons {

class ModelSource;
class ThreadPool;

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Evaluates tokens[0..n) at positions cache.n_past() .. +n and advances the cache.
  // logits receives n x n_vocab floats when all_logits, else the last row only.
  // Throws Error if the tokens do not fit in the cache or an id is out of range.
  virtual void forward(KvCache& cache, const int32_t* tokens, int64_t n, float* logits, bool all_logits) = 0;

  // Weight bytes one decoded token reads (every matrix once, one embedding row):
  // the numerator of the decode roofline.
  virtual uint64_t weight_bytes_per_token() const = 0;
  // Multiply-add FLOPs of the weight matmuls for one token (2 per weight), and of
  // attention at a given context length.
  virtual double matmul_flops_per_token() const = 0;
  virtual double attention_flops(int64_t n_past) const = 0;

  KvCache new_cache(int n_ctx) const {
    const ModelConfig& c = config();
    return KvCache(c.n_layer, n_ctx, c.cache_k_dim, c.cache_v_dim);
  }
  void set_thread_pool(ThreadPool* pool) { pool_ = pool; }

 protected:
  ThreadPool* pool_ = nullptr;
};

// Builds the model a GGUF file describes (architecture from general.architecture),
// checking that every tensor it needs is present and correctly shaped. The file
// must outlive the model: weights are used in place from its map.
std::unique_ptr<Model> load_model(const ModelSource& source);

}  // namespace jevons
