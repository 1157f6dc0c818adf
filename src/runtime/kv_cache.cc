#include "runtime/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace jevons {

KvBlockPool::KvBlockPool(int n_layer, int k_dim, int v_dim, size_t n_blocks, int n_heads)
    : n_layer_(n_layer), k_dim_(k_dim), v_dim_(v_dim), n_heads_(n_heads), n_blocks_(n_blocks),
      block_floats_(block_bytes(n_layer, k_dim, v_dim) / sizeof(float)),
      buffer_(n_blocks * block_floats_ * sizeof(float), "KV cache"),
      storage_(reinterpret_cast<float*>(buffer_.data())) {
  if (n_heads <= 0 || k_dim % n_heads != 0 || v_dim % n_heads != 0)
    fail("KV cache: {} heads do not divide the key width {} and value width {}", n_heads, k_dim, v_dim);
  free_.reserve(n_blocks);
  for (size_t b = n_blocks; b-- > 0;) free_.push_back(int(b));  // hand out low blocks first
}

int KvBlockPool::allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return -1;
  const int b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockPool::release(int block) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(block);
}

size_t KvBlockPool::free_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size();
}

static size_t blocks_for(int n_positions) {
  return size_t((n_positions + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens);
}

KvCache::KvCache(int n_layer, int n_ctx, int k_dim, int v_dim, int n_heads)
    : pool_(std::make_shared<KvBlockPool>(n_layer, k_dim, v_dim, blocks_for(n_ctx), n_heads)), n_ctx_(n_ctx),
      standalone_(true) {
  if (n_ctx <= 0) fail("context length must be positive, got {}", n_ctx);
  if (!reserve(n_ctx)) fail("internal: a standalone KV cache could not reserve its own blocks");
}

KvCache::KvCache(std::shared_ptr<KvBlockPool> pool, int n_ctx) : pool_(std::move(pool)), n_ctx_(n_ctx), standalone_(false) {}

KvCache::KvCache(KvCache&& o) noexcept
    : pool_(std::move(o.pool_)), n_ctx_(o.n_ctx_), n_past_(o.n_past_), standalone_(o.standalone_), table_(std::move(o.table_)) {
  o.table_.clear();
}

KvCache::~KvCache() { release_all(); }

void KvCache::release_all() {
  if (!pool_) return;
  for (int b : table_) pool_->release(b);
  table_.clear();
}

void KvCache::clear() {
  n_past_ = 0;
  if (!standalone_) release_all();  // a standalone cache keeps its private blocks
}

bool KvCache::reserve(int n_positions) {
  if (n_positions > n_ctx_) return false;
  const size_t need = blocks_for(n_positions);
  std::vector<int> got;
  while (table_.size() + got.size() < need) {
    const int b = pool_->allocate();
    if (b < 0) {
      for (int x : got) pool_->release(x);
      return false;
    }
    got.push_back(b);
  }
  table_.insert(table_.end(), got.begin(), got.end());
  return true;
}

void KvCache::store(int layer, int pos, const float* keys, const float* values) {
  const int h_k = k_dim() / n_heads(), h_v = v_dim() / n_heads();
  float* k0 = k(layer, pos);
  float* v0 = v(layer, pos);
  for (int h = 0; h < n_heads(); ++h) {
    std::copy_n(keys + h * h_k, h_k, k0 + h * k_head_stride());
    std::copy_n(values + h * h_v, h_v, v0 + h * v_head_stride());
  }
}

}  // namespace jevons
