// DeepSeek-V2 / V3 / R1: Multi-head Latent Attention and DeepSeekMoE.
//
// MLA (DeepSeek-V2 paper, section 2.1). Per token the cache holds only
//   c_kv = RMSNorm(W_kv_a x)[:kv_lora_rank]      the compressed latent, and
//   k_pe = RoPE((W_kv_a x)[kv_lora_rank:])        one RoPE key shared by all heads.
// Attention runs in latent space ("absorbed" form): each head's key up-projection
// k_b is folded into its query, q_lat = k_b^T q_nope, so score_j = q_lat.c_j +
// q_pe.k_pe_j; the output o_lat = sum_j p_j c_j is lifted by that head's value
// up-projection v_b. Per-head K and V are never materialized.
//
// DeepSeekMoE: the first `first_dense` layers have a plain SwiGLU MLP; the others
// route each token to top-k of n_expert small experts (softmax gating in V2,
// sigmoid + a selection-only bias and group-limited routing in V3) and add
// n_shared always-on shared experts.
#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/latent.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/architectures.h"
#include "model/weights.h"
#include "model/batch.h"

namespace jevons {
namespace {

struct SwiGlu {
  Tensor gate, up, down;
  explicit operator bool() const { return bool(gate); }
};

struct DeepSeekLayer {
  const float* attn_norm = nullptr;
  Tensor wq;                            // plain query projection (q_lora_rank 0), or:
  Tensor q_a, q_b;                      // low-rank query: x -> q_a -> RMSNorm -> q_b
  const float* q_a_norm = nullptr;
  Tensor kv_a;                          // x -> [c_kv (kv_lora_rank) | k_pe (rope dims)]
  const float* kv_a_norm = nullptr;
  std::vector<Tensor> k_b;              // per head [kv_lora x nope]: q_lat = k_b q_nope
  std::vector<Tensor> k_b_transposed;   // or per head [nope x kv_lora]: q_lat = k_b^T q_nope
  std::vector<Tensor> v_b;              // per head [v_head_dim x kv_lora]
  Tensor wo;

  const float* ffn_norm = nullptr;
  SwiGlu dense;                         // first_dense layers
  Tensor router;                        // MoE layers: x -> expert logits
  const float* score_bias = nullptr;    // V3 e_score_correction_bias (selection only)
  std::vector<SwiGlu> experts;
  SwiGlu shared;
};

// DeepSeek-V3's multi-token prediction module (section 2.2 of the V3 report): the
// trunk's h_i and the next token's embedding, each RMS-normed, concatenated and
// projected (M_k), one transformer block, and the shared output head.
struct MtpModule {
  DeepSeekLayer block;
  Tensor eh_proj;  // [2E -> E] over [enorm(emb(t_{i+1})) ; hnorm(h_i)]
  const float* enorm = nullptr;
  const float* hnorm = nullptr;
  const float* head_norm = nullptr;
  Tensor embed, head;
};

class DeepSeek : public Model {
 public:
  DeepSeek(const ModelSource& src, const LoadOptions& options) : cfg_(read_config(src)) {
    repacked_.set_f16_as_bf16(options.f16_as_bf16);
    const WeightLoader w(src, &repacked_);
    const MlaConfig& m = cfg_.mla;
    const GgufTensor* emb = src.find_tensor("token_embd.weight");
    if (!emb) fail("{}: tensor token_embd.weight is missing", src.path());
    if (emb->dims.size() != 2 || emb->dims[0] != cfg_.n_embd)
      fail("{}: tensor token_embd.weight: expected {}x<n_vocab>, file has {}", src.path(), cfg_.n_embd, emb->shape_string());
    cfg_.n_vocab = int(emb->dims[1]);
    const int64_t E = cfg_.n_embd, V = cfg_.n_vocab;
    const int64_t qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
    tok_embd_ = w.table("token_embd.weight", E, V);
    output_norm_ = w.vector("output_norm.weight", E, owned_);
    output_ = w.optional_matrix("output.weight", E, V);
    cfg_.tied_output = !output_;
    if (cfg_.tied_output) output_ = w.for_matmul(tok_embd_);

    for (int l = 0; l < cfg_.n_layer; ++l) layers_.push_back(load_layer(w, l));
    // Multi-token prediction modules: a layer like the trunk's (dense or MoE by its
    // index), the projection of [enorm(embedding) ; hnorm(hidden)] into it, and a head
    // (its own embedding table and output matrix when the file has them, else the trunk's).
    for (int k = 0; k < cfg_.n_mtp; ++k) {
      const int l = cfg_.n_layer + k;
      const std::string p = "blk." + std::to_string(l) + ".nextn.";
      MtpModule M;
      M.block = load_layer(w, l);
      M.eh_proj = w.matrix(p + "eh_proj.weight", 2 * E, E);
      M.enorm = w.vector(p + "enorm.weight", E, owned_);
      M.hnorm = w.vector(p + "hnorm.weight", E, owned_);
      M.head_norm = w.vector(p + "shared_head_norm.weight", E, owned_);
      M.embed = src.find_tensor(p + "embed_tokens.weight") ? w.table(p + "embed_tokens.weight", E, V) : tok_embd_;
      M.head = w.optional_matrix(p + "shared_head_head.weight", E, V);
      if (!M.head) M.head = output_;
      mtp_.push_back(std::move(M));
    }

    // YaRN (as DeepSeek and llama.cpp apply it): RoPE itself is not magnitude-scaled,
    // and the softmax scale gets mscale^2 with mscale = 1 + 0.1 * mscale_all_dim * ln(factor).
    rope_ = cfg_.rope;
    float mscale = 1.0f;
    if (rope_.scaling == RopeScaling::kYarn) {
      rope_.attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / rope_.freq_scale));
      mscale = 1.0f + m.yarn_log_multiplier * std::log(1.0f / rope_.freq_scale);
    }
    kq_scale_ = mscale * mscale / std::sqrt(float(qk));
  }

  const ModelConfig& config() const override { return cfg_; }

  void forward_batch(const std::vector<Chunk>& chunks, float* logits) override {
    const ModelConfig& c = cfg_;
    const int64_t E = c.n_embd;
    const Batch b = prepare_batch(chunks, c.n_vocab);
    const int64_t n = b.n_tokens();

    std::vector<float> x(size_t(n * E));
    for (int64_t t = 0; t < n; ++t) dequantize_row(tok_embd_, b.token[size_t(t)], &x[size_t(t * E)]);
    for (int l = 0; l < c.n_layer; ++l) block(layers_[size_t(l)], l, x.data(), b);
    if (keep_hidden_) hidden_ = x;
    head(output_norm_, output_, x.data(), b, logits);
    b.advance();
  }

  void forward_mtp(const std::vector<MtpChunk>& chunks, float* logits) override {
    if (mtp_.empty()) Model::forward_mtp(chunks, logits);
    const MtpModule& M = mtp_[0];
    const int64_t E = cfg_.n_embd;
    std::vector<Chunk> as_chunks;
    for (const MtpChunk& c : chunks) as_chunks.push_back(Chunk{c.cache, c.next_tokens, c.n, 1});
    const Batch b = prepare_batch(as_chunks, cfg_.n_vocab);
    const int64_t n = b.n_tokens();
    std::vector<float> cat(static_cast<size_t>(n * 2 * E)), emb(static_cast<size_t>(E)), x(static_cast<size_t>(n * E));
    int64_t t = 0;
    for (const MtpChunk& c : chunks)
      for (int64_t i = 0; i < c.n; ++i, ++t) {
        dequantize_row(M.embed, c.next_tokens[i], emb.data());
        rms_norm(emb.data(), M.enorm, E, cfg_.rms_eps, &cat[size_t(t * 2 * E)]);
        rms_norm(c.hidden + i * E, M.hnorm, E, cfg_.rms_eps, &cat[size_t(t * 2 * E + E)]);
      }
    matmul(M.eh_proj, cat.data(), n, x.data(), pool_);
    block(M.block, 0, x.data(), b);  // its cache has this one layer
    head(M.head_norm, M.head, x.data(), b, logits);
    b.advance();
  }

  uint64_t mtp_weight_bytes_per_token() const override {
    if (mtp_.empty()) return 0;
    const MtpModule& M = mtp_[0];
    return layer_bytes_per_token(M.block) + M.eh_proj.nbytes() + M.embed.row_bytes() + M.head.nbytes();
  }

  uint64_t weight_bytes_per_token() const override {
    // What one decoded token reads: attention and dense/shared weights, the router,
    // and only n_expert_used of the routed experts per MoE layer.
    uint64_t b = tok_embd_.row_bytes() + output_.nbytes();
    for (const DeepSeekLayer& L : layers_) b += layer_bytes_per_token(L);
    return b;
  }

  double matmul_flops_per_token() const override {
    auto elems = [](const Tensor& t) { return double(t.rows) * double(t.cols); };
    double w = elems(output_);
    for (const DeepSeekLayer& L : layers_) {
      for (const Tensor* t : {&L.wq, &L.q_a, &L.q_b, &L.kv_a, &L.wo, &L.router}) w += elems(*t);
      for (const auto* v : {&L.k_b, &L.k_b_transposed, &L.v_b})
        for (const Tensor& t : *v) w += elems(t);
      for (const SwiGlu* s : {&L.dense, &L.shared}) w += elems(s->gate) + elems(s->up) + elems(s->down);
      if (!L.experts.empty()) {
        const SwiGlu& x = L.experts[0];
        w += cfg_.moe.n_expert_used * (elems(x.gate) + elems(x.up) + elems(x.down));
      }
    }
    return 2.0 * w;
  }

  double attention_flops(int64_t n_past) const override {
    // Latent-space scores (kv_lora + rope) and latent outputs (kv_lora) per head.
    const MlaConfig& m = cfg_.mla;
    return 2.0 * cfg_.n_layer * cfg_.n_head * double(2 * m.kv_lora_rank + m.qk_rope_head_dim) * double(n_past + 1);
  }

 private:
  uint64_t layer_bytes_per_token(const DeepSeekLayer& L) const {
    uint64_t b = 0;
    for (const Tensor* t : {&L.wq, &L.q_a, &L.q_b, &L.kv_a, &L.wo, &L.router}) b += t->nbytes();
    for (const auto* v : {&L.k_b, &L.k_b_transposed, &L.v_b})
      for (const Tensor& t : *v) b += t.nbytes();
    for (const SwiGlu* s : {&L.dense, &L.shared}) b += s->gate.nbytes() + s->up.nbytes() + s->down.nbytes();
    if (!L.experts.empty()) {
      const SwiGlu& x = L.experts[0];
      b += uint64_t(cfg_.moe.n_expert_used) * (x.gate.nbytes() + x.up.nbytes() + x.down.nbytes());
    }
    return b;
  }

  // One transformer block over the batch's residual stream x (n x E), in place; its
  // keys and values go to layer l of the batch's caches.
  void block(const DeepSeekLayer& L, int l, float* x, const Batch& b) {
    const ModelConfig& c = cfg_;
    const int64_t E = c.n_embd, n = b.n_tokens();
    std::vector<float>& xn = block_xn_;  // reused: a prefill's are megabytes
    std::vector<float>& out = block_out_;
    xn.resize(size_t(n * E));
    out.resize(size_t(n * E));
    for (int64_t t = 0; t < n; ++t) rms_norm(&x[size_t(t * E)], L.attn_norm, E, c.rms_eps, &xn[size_t(t * E)]);
    attention(L, l, xn.data(), b, out.data());
    for (size_t i = 0; i < size_t(n * E); ++i) x[i] += out[i];
    for (int64_t t = 0; t < n; ++t) rms_norm(&x[size_t(t * E)], L.ffn_norm, E, c.rms_eps, &xn[size_t(t * E)]);
    if (L.dense) swiglu(L.dense, xn.data(), n, out.data());
    else moe(L, xn.data(), n, out.data());
    for (size_t i = 0; i < size_t(n * E); ++i) x[i] += out[i];
  }

  // Logits of the rows the batch wants them for: the output head over the normed states.
  void head(const float* norm, const Tensor& output, const float* x, const Batch& b, float* logits) {
    const int64_t E = cfg_.n_embd;
    const std::vector<int64_t> out_rows = b.logit_rows();
    std::vector<float> xo(out_rows.size() * size_t(E));
    for (size_t i = 0; i < out_rows.size(); ++i) rms_norm(&x[size_t(out_rows[i] * E)], norm, E, cfg_.rms_eps, &xo[i * size_t(E)]);
    matmul(output, xo.data(), int64_t(out_rows.size()), logits, pool_);
  }

  DeepSeekLayer load_layer(const WeightLoader& w, int l) {
    const ModelSource& src = w.source();
    const MlaConfig& m = cfg_.mla;
    const MoeConfig& e = cfg_.moe;
    const int64_t E = cfg_.n_embd, H = cfg_.n_head;
    const int64_t qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
    const std::string p = "blk." + std::to_string(l) + ".";
    DeepSeekLayer L;
    L.attn_norm = w.vector(p + "attn_norm.weight", E, owned_);
    if (m.q_lora_rank > 0) {
      L.q_a = w.matrix(p + "attn_q_a.weight", E, m.q_lora_rank);
      L.q_a_norm = w.vector(p + "attn_q_a_norm.weight", m.q_lora_rank, owned_);
      L.q_b = w.matrix(p + "attn_q_b.weight", m.q_lora_rank, H * qk);
    } else {
      L.wq = w.matrix(p + "attn_q.weight", E, H * qk);
    }
    L.kv_a = w.matrix(p + "attn_kv_a_mqa.weight", E, m.kv_lora_rank + m.qk_rope_head_dim);
    L.kv_a_norm = w.vector(p + "attn_kv_a_norm.weight", m.kv_lora_rank, owned_);
    if (src.find_tensor(p + "attn_k_b.weight")) {
      L.k_b = w.stacked(p + "attn_k_b.weight", m.qk_nope_head_dim, m.kv_lora_rank, H);
      L.v_b = w.stacked(p + "attn_v_b.weight", m.kv_lora_rank, m.v_head_dim, H);
    } else {
      // kv_b stacks, per head, nope key rows then v_head_dim value rows, each kv_lora wide.
      const Tensor kv_b = w.matrix(p + "attn_kv_b.weight", m.kv_lora_rank, H * (m.qk_nope_head_dim + m.v_head_dim));
      for (int64_t h = 0; h < H; ++h) {
        const int64_t first = h * (m.qk_nope_head_dim + m.v_head_dim);
        L.k_b_transposed.push_back(kv_b.row_slice(first, m.qk_nope_head_dim));
        L.v_b.push_back(kv_b.row_slice(first + m.qk_nope_head_dim, m.v_head_dim));
      }
    }
    L.wo = w.matrix(p + "attn_output.weight", H * m.v_head_dim, E);
    L.ffn_norm = w.vector(p + "ffn_norm.weight", E, owned_);
    if (e.n_expert == 0 || l < e.first_dense) {
      L.dense = {w.matrix(p + "ffn_gate.weight", E, cfg_.n_ff), w.matrix(p + "ffn_up.weight", E, cfg_.n_ff),
                 w.matrix(p + "ffn_down.weight", cfg_.n_ff, E)};
    } else {
      L.router = w.matrix(p + "ffn_gate_inp.weight", E, e.n_expert);
      L.score_bias = w.optional_vector(p + "exp_probs_b.bias", e.n_expert, owned_);
      // GGUF stacks the experts in one tensor; a safetensors checkpoint has one per expert.
      auto experts = [&](const std::string& kind, int64_t cols, int64_t rows) {
        const std::string stacked = p + "ffn_" + kind + "_exps.weight";
        if (src.find_tensor(stacked)) return w.stacked(stacked, cols, rows, e.n_expert);
        std::vector<Tensor> each;
        for (int k = 0; k < e.n_expert; ++k)
          each.push_back(w.matrix(p + "ffn_" + kind + "_exps." + std::to_string(k) + ".weight", cols, rows));
        return each;
      };
      const auto gate = experts("gate", E, e.n_ff_expert);
      const auto up = experts("up", E, e.n_ff_expert);
      const auto down = experts("down", e.n_ff_expert, E);
      for (int k = 0; k < e.n_expert; ++k) L.experts.push_back({gate[size_t(k)], up[size_t(k)], down[size_t(k)]});
      if (e.n_shared > 0) {
        const int64_t ff = int64_t(e.n_ff_expert) * e.n_shared;
        L.shared = {w.matrix(p + "ffn_gate_shexp.weight", E, ff), w.matrix(p + "ffn_up_shexp.weight", E, ff),
                    w.matrix(p + "ffn_down_shexp.weight", ff, E)};
      }
    }
    return L;
  }

  void attention(const DeepSeekLayer& L, int l, const float* xn, const Batch& b, float* out) {
    const int64_t n = b.n_tokens();
    const MlaConfig& m = cfg_.mla;
    const int H = cfg_.n_head, nope = m.qk_nope_head_dim, rope_dims = m.qk_rope_head_dim, qk = nope + rope_dims;
    const int lora = m.kv_lora_rank, latent = lora + rope_dims, vd = m.v_head_dim;

    std::vector<float> q(size_t(n) * H * qk), kv(size_t(n) * latent);
    if (L.q_a) {
      std::vector<float> qa(size_t(n) * m.q_lora_rank);
      matmul(L.q_a, xn, n, qa.data(), pool_);
      for (int64_t t = 0; t < n; ++t) {
        float* r = &qa[size_t(t) * m.q_lora_rank];
        rms_norm(r, L.q_a_norm, m.q_lora_rank, cfg_.rms_eps, r);
      }
      matmul(L.q_b, qa.data(), n, q.data(), pool_);
    } else {
      matmul(L.wq, xn, n, q.data(), pool_);
    }
    matmul(L.kv_a, xn, n, kv.data(), pool_);

    std::vector<float> cached(static_cast<size_t>(latent));  // [c_kv | k_pe], stored in the cache's type
    for (int64_t t = 0; t < n; ++t) {
      const int pos = b.pos[size_t(t)];
      rms_norm(&kv[size_t(t) * latent], L.kv_a_norm, lora, cfg_.rms_eps, cached.data());
      std::copy_n(&kv[size_t(t) * latent + lora], rope_dims, cached.data() + lora);
      rope(cached.data() + lora, 1, rope_dims, pos, rope_, nullptr);
      b.cache_of(t)->store(l, pos, cached.data(), nullptr);
      rope(&q[size_t(t) * H * qk] + nope, H, qk, pos, rope_, nullptr);  // each head's q_pe
    }

    // Per head: absorb k_b into the queries (q_lat[t][h] = [k_b^T q_nope | q_pe]).
    std::vector<float> q_lat(size_t(n) * H * latent), o_lat(size_t(n) * H * lora);
    auto absorb = [&](int64_t h0, int64_t h1) {
      std::vector<float> q_nope(size_t(n) * nope), q_abs(size_t(n) * lora);
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t t = 0; t < n; ++t) {
          const float* qh = &q[size_t((t * H + h) * qk)];
          float* ql = &q_lat[size_t((t * H + h) * latent)];
          std::copy_n(qh, nope, &q_nope[size_t(t * nope)]);
          std::copy_n(qh + nope, rope_dims, ql + lora);
        }
        if (!L.k_b.empty()) {
          matmul(L.k_b[size_t(h)], q_nope.data(), n, q_abs.data(), nullptr);
          for (int64_t t = 0; t < n; ++t) std::copy_n(&q_abs[size_t(t * lora)], lora, &q_lat[size_t((t * H + h) * latent)]);
        } else {
          for (int64_t t = 0; t < n; ++t)
            matvec_transposed(L.k_b_transposed[size_t(h)], &q_nope[size_t(t * nope)], &q_lat[size_t((t * H + h) * latent)]);
        }
      }
    };
    if (pool_) pool_->parallel_for(H, absorb);
    else absorb(0, H);

    // Attend over the latent cache (its rows serve as keys and, their first kv_lora_rank
    // values, as values): every head reads the same rows, so the heads go together and
    // each chunk of rows is read once for all of them, and once for a causal block of
    // tokens. Work items are (block, part of the heads), blocks first, last, second, ...
    // (equal causal work per thread); the parts keep every thread busy in decode. Each
    // (token, head) sums as it would alone (see attention_causal_block).
    const KvRows rows = b.kv_rows(l);
    const int parts = pool_ ? std::clamp(pool_->size(), 1, std::max(1, H / 2)) : 1;  // >= 2 heads a part
    const int64_t block = std::clamp<int64_t>((int64_t(64) << 10) / (int64_t(H) * lora), 1, 8);  // sums in 256 KiB
    const std::vector<std::pair<int64_t, int>> blocks = b.causal_blocks(int(block));
    const int64_t n_blocks = int64_t(blocks.size());
    auto attend = [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t bi = ends_inward(item / parts, n_blocks);
        const int part = int(item % parts), h0 = H * part / parts, h1 = H * (part + 1) / parts;
        const auto [t0, n_queries] = blocks[size_t(bi)];
        const size_t s = b.chunk_of[size_t(t0)];
        const std::vector<const void*>& kv = rows.k[s];
        attention_causal_block(&q_lat[size_t((t0 * H + h0) * latent)], int64_t(H) * latent, n_queries, h1 - h0, rows.type[s], kv.data(), 0,
                               kv.data(), 0, b.pos[size_t(t0)] + 1, latent, lora, kq_scale_,
                               &o_lat[size_t((t0 * H + h0) * lora)], int64_t(H) * lora);
      }
    };
    if (pool_) pool_->parallel_for(n_blocks * parts, attend);
    else attend(0, n_blocks * parts);

    // Per head: lift the latent outputs by v_b.
    std::vector<float> heads_out(size_t(n) * H * vd);
    auto lift = [&](int64_t h0, int64_t h1) {
      std::vector<float> o(size_t(n) * lora), v(size_t(n) * vd);
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t t = 0; t < n; ++t) std::copy_n(&o_lat[size_t((t * H + h) * lora)], lora, &o[size_t(t * lora)]);
        matmul(L.v_b[size_t(h)], o.data(), n, v.data(), nullptr);
        for (int64_t t = 0; t < n; ++t) std::copy_n(&v[size_t(t * vd)], vd, &heads_out[size_t((t * H + h) * vd)]);
      }
    };
    if (pool_) pool_->parallel_for(H, lift);
    else lift(0, H);
    matmul(L.wo, heads_out.data(), n, out, pool_);
  }

  void swiglu(const SwiGlu& s, const float* xn, int64_t n, float* out) {
    std::vector<float> g(size_t(n * s.gate.rows)), u(size_t(n * s.up.rows));
    matmul(s.gate, xn, n, g.data(), pool_);
    matmul(s.up, xn, n, u.data(), pool_);
    silu_mul(g.data(), u.data(), int64_t(g.size()));
    matmul(s.down, g.data(), n, out, pool_);
  }

  // Routes each token to its experts; tokens are grouped by expert so each
  // expert's weights are read once per batch, and unselected experts not at all.
  void moe(const DeepSeekLayer& L, const float* xn, int64_t n, float* out) {
    const MoeConfig& e = cfg_.moe;
    const int64_t E = cfg_.n_embd;
    std::vector<float> router_logits(size_t(n) * e.n_expert);
    matmul(L.router, xn, n, router_logits.data(), pool_);

    std::vector<std::vector<std::pair<int64_t, float>>> assigned(size_t(e.n_expert));  // expert -> (token, weight)
    for (int64_t t = 0; t < n; ++t)
      for (auto [expert, weight] : route(L, &router_logits[size_t(t * e.n_expert)])) assigned[size_t(expert)].push_back({t, weight});

    if (L.shared) swiglu(L.shared, xn, n, out);
    else std::fill(out, out + n * E, 0.0f);
    std::vector<float> xs, ys;
    for (int k = 0; k < e.n_expert; ++k) {
      const auto& rows = assigned[size_t(k)];
      if (rows.empty()) continue;
      const int64_t m = int64_t(rows.size());
      xs.resize(size_t(m * E));
      ys.resize(size_t(m * E));
      for (int64_t i = 0; i < m; ++i) std::copy_n(xn + rows[size_t(i)].first * E, E, &xs[size_t(i * E)]);
      swiglu(L.experts[size_t(k)], xs.data(), m, ys.data());
      for (int64_t i = 0; i < m; ++i) {
        float* o = out + rows[size_t(i)].first * E;
        const float wgt = rows[size_t(i)].second;
        for (int64_t d = 0; d < E; ++d) o[d] += wgt * ys[size_t(i * E + d)];
      }
    }
  }

  // The experts one token goes to, with their weights.
  std::vector<std::pair<int, float>> route(const DeepSeekLayer& L, const float* logits) const {
    const MoeConfig& e = cfg_.moe;
    const int N = e.n_expert;
    std::vector<float> prob(logits, logits + N);
    if (e.gating == MoeGating::kSoftmax) {
      softmax(prob.data(), N);
    } else {
      for (float& p : prob) p = 1.0f / (1.0f + std::exp(-p));
    }
    // Selection scores: V3 adds a load-balancing bias that only affects which experts win.
    std::vector<float> score = prob;
    if (L.score_bias)
      for (int k = 0; k < N; ++k) score[size_t(k)] += L.score_bias[k];
    if (e.n_group > 1) {
      // Keep the topk_group best groups: a group scores its top-2 sum (V3, sigmoid) or its max (V2, softmax).
      const int per = N / e.n_group;
      std::vector<std::pair<float, int>> group_score;
      for (int g = 0; g < e.n_group; ++g) {
        std::vector<float> s(score.begin() + g * per, score.begin() + (g + 1) * per);
        std::sort(s.begin(), s.end(), std::greater<>());
        const float gs = e.gating == MoeGating::kSigmoid ? s[0] + (per > 1 ? s[1] : 0.0f) : s[0];
        group_score.push_back({gs, g});
      }
      std::stable_sort(group_score.begin(), group_score.end(), [](auto& a, auto& b) { return a.first > b.first; });
      std::vector<bool> keep(size_t(e.n_group), false);
      for (int g = 0; g < e.topk_group; ++g) keep[size_t(group_score[size_t(g)].second)] = true;
      for (int k = 0; k < N; ++k)
        if (!keep[size_t(k / per)]) score[size_t(k)] = -INFINITY;
    }
    std::vector<int> order(static_cast<size_t>(N));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });

    std::vector<std::pair<int, float>> chosen;
    float sum = 0.0f;
    for (int k = 0; k < e.n_expert_used; ++k) {
      chosen.push_back({order[size_t(k)], prob[size_t(order[size_t(k)])]});
      sum += chosen.back().second;
    }
    for (auto& [expert, weight] : chosen) {
      if (e.norm_topk_prob) weight /= sum;
      weight *= e.routed_scaling_factor;
    }
    return chosen;
  }

  ModelConfig cfg_;
  RopeConfig rope_;
  float kq_scale_ = 1.0f;
  std::deque<std::vector<float>> owned_;
  Tensor tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<DeepSeekLayer> layers_;
  std::vector<MtpModule> mtp_;
  std::vector<float> block_xn_, block_out_;
};

}  // namespace

std::unique_ptr<Model> make_deepseek(const ModelSource& source, const LoadOptions& options) {
  return std::make_unique<DeepSeek>(source, options);
}

}  // namespace jevons
