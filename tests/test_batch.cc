// The bookkeeping of a batched forward pass (runtime/batch.h) and the KV cache it
// reads (runtime/kv_cache.h).
#include <gtest/gtest.h>

#include <set>
#include <utility>
#include <vector>

#include "core/error.h"
#include "model/batch.h"
#include "runtime/kv_cache.h"

namespace jevons {
namespace {

TEST(Batch, CausalBlocksStayInOneSequenceAtConsecutivePositions) {
  // Two sequences: the first continues at position 10 for 5 tokens, the second starts at 0
  // with 2 tokens; a block ends at max_tokens, at a new sequence, and at a gap in positions
  // (not made by prepare_batch, but the blocks must not assume it away).
  Batch b;
  b.pos = {10, 11, 12, 13, 14, 0, 1, 7};
  b.chunk_of = {0, 0, 0, 0, 0, 1, 1, 1};
  b.token.assign(b.pos.size(), 0);
  using Blocks = std::vector<std::pair<int64_t, int>>;
  EXPECT_EQ(b.causal_blocks(3), (Blocks{{0, 3}, {3, 2}, {5, 2}, {7, 1}}));
  EXPECT_EQ(b.causal_blocks(8), (Blocks{{0, 5}, {5, 2}, {7, 1}}));
  EXPECT_EQ(b.causal_blocks(1).size(), b.pos.size());
}

TEST(KvCache, BlocksAreHeadMajorAndEveryFloatHasOneHome) {
  // 3 layers, 2 KV heads of 4 key floats and 3 value floats, 40 positions (3 blocks, the
  // last partly used). Each (layer, position, head, element) written through store()
  // must read back at k(l, p) + h * k_head_stride() + i, every such address distinct,
  // and one head's rows of a block must lie next to each other (what attention streams).
  constexpr int kLayers = 3, kHeads = 2, kHk = 4, kHv = 3, kPositions = 40;
  KvCache cache(kLayers, kPositions, kHeads * kHk, kHeads * kHv, kHeads);
  EXPECT_EQ(cache.k_head_stride(), KvBlockPool::kBlockTokens * kHk);
  EXPECT_EQ(cache.v_head_stride(), KvBlockPool::kBlockTokens * kHv);
  auto key = [](int l, int p, int h, int i) { return float(((l * 100 + p) * 10 + h) * 10 + i); };
  for (int l = 0; l < kLayers; ++l)
    for (int p = 0; p < kPositions; ++p) {
      std::vector<float> k(kHeads * kHk), v(kHeads * kHv);
      for (int h = 0; h < kHeads; ++h) {
        for (int i = 0; i < kHk; ++i) k[size_t(h * kHk + i)] = key(l, p, h, i);
        for (int i = 0; i < kHv; ++i) v[size_t(h * kHv + i)] = -key(l, p, h, i);
      }
      cache.store(l, p, k.data(), v.data());
    }
  std::set<const float*> seen;
  for (int l = 0; l < kLayers; ++l)
    for (int p = 0; p < kPositions; ++p)
      for (int h = 0; h < kHeads; ++h) {
        const float* k = reinterpret_cast<const float*>(cache.k(l, p)) + h * cache.k_head_stride();
        const float* v = reinterpret_cast<const float*>(cache.v(l, p)) + h * cache.v_head_stride();
        for (int i = 0; i < kHk; ++i) {
          ASSERT_EQ(k[i], key(l, p, h, i)) << "layer " << l << " position " << p << " head " << h;
          ASSERT_TRUE(seen.insert(k + i).second);
        }
        for (int i = 0; i < kHv; ++i) {
          ASSERT_EQ(v[i], -key(l, p, h, i)) << "layer " << l << " position " << p << " head " << h;
          ASSERT_TRUE(seen.insert(v + i).second);
        }
        if (p % KvBlockPool::kBlockTokens > 0) {  // the previous position's row of this head, right before
          EXPECT_EQ(reinterpret_cast<const float*>(cache.k(l, p - 1)) + h * cache.k_head_stride() + kHk, k);
          EXPECT_EQ(reinterpret_cast<const float*>(cache.v(l, p - 1)) + h * cache.v_head_stride() + kHv, v);
        }
      }
  EXPECT_THROW(KvCache(kLayers, kPositions, 10, 6, 4), Error);  // 4 heads do not divide 10 key floats
}

}  // namespace
}  // namespace jevons
