#include "model/batch.h"

#include "core/error.h"

namespace jevons {

Batch prepare_batch(const std::vector<Model::Chunk>& chunks, int n_vocab) {
  Batch b;
  b.chunks = &chunks;
  if (chunks.empty()) fail("forward: no tokens to evaluate");
  for (size_t c = 0; c < chunks.size(); ++c) {
    const Model::Chunk& ch = chunks[c];
    if (ch.n <= 0) fail("forward: no tokens to evaluate");
    if (ch.n_logits < 1 || ch.n_logits > ch.n) fail("forward: {} rows of logits asked of a chunk of {} tokens", ch.n_logits, ch.n);
    const int64_t end = ch.cache->n_past() + ch.n;
    if (end > ch.cache->n_ctx())
      fail("the sequence needs {} positions but the context holds {} (use a larger -c)", end, ch.cache->n_ctx());
    if (!ch.cache->reserve(int(end))) fail("the KV cache pool is full: no free block for {} more positions", ch.n);
    // The positions written now must lie in blocks this sequence alone holds.
    for (int64_t blk = ch.cache->n_past() / KvBlockPool::kBlockTokens; blk < (end + KvBlockPool::kBlockTokens - 1) / KvBlockPool::kBlockTokens; ++blk)
      if (!ch.cache->pool().writable(ch.cache->block_table()[size_t(blk)]))
        fail("internal: position {} would be written into a shared KV block", blk * KvBlockPool::kBlockTokens);
    for (int64_t t = 0; t < ch.n; ++t) {
      if (ch.tokens[t] < 0 || ch.tokens[t] >= n_vocab) fail("token id {} is outside the vocabulary (0..{})", ch.tokens[t], n_vocab - 1);
      b.token.push_back(ch.tokens[t]);
      b.pos.push_back(int(ch.cache->n_past() + t));
      b.chunk_of.push_back(c);
    }
  }
  return b;
}

KvRows Batch::kv_rows(int layer) const {
  KvRows r;
  for (const Model::Chunk& ch : *chunks) {
    const int end = ch.cache->n_past() + int(ch.n);
    std::vector<const void*> k(static_cast<size_t>(end)), v(static_cast<size_t>(end));
    for (int p = 0; p < end; ++p) {
      k[size_t(p)] = ch.cache->k(layer, p);
      v[size_t(p)] = ch.cache->v_dim() > 0 ? ch.cache->v(layer, p) : nullptr;
    }
    r.k.push_back(std::move(k));
    r.v.push_back(std::move(v));
    r.type.push_back(ch.cache->type());
    r.k_head_stride.push_back(ch.cache->k_head_stride());
    r.v_head_stride.push_back(ch.cache->v_head_stride());
  }
  return r;
}

std::vector<std::pair<int64_t, int>> Batch::causal_blocks(int max_tokens) const {
  std::vector<std::pair<int64_t, int>> blocks;
  for (int64_t t = 0; t < n_tokens(); ++t) {
    if (!blocks.empty()) {
      auto& [t0, len] = blocks.back();
      if (len < max_tokens && chunk_of[size_t(t)] == chunk_of[size_t(t0)] && pos[size_t(t)] == pos[size_t(t0)] + len) {
        ++len;
        continue;
      }
    }
    blocks.emplace_back(t, 1);
  }
  return blocks;
}

std::vector<int64_t> Batch::logit_rows() const {
  std::vector<int64_t> rows;
  int64_t first = 0;
  for (const Model::Chunk& ch : *chunks) {
    for (int64_t t = ch.n - ch.n_logits; t < ch.n; ++t) rows.push_back(first + t);
    first += ch.n;
  }
  return rows;
}

void Batch::advance() const {
  for (const Model::Chunk& ch : *chunks) ch.cache->set_n_past(int(ch.cache->n_past() + ch.n));
}

}  // namespace jevons
