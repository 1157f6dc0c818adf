#include "model/config.h"

#include <cmath>

#include "core/error.h"
#include "formats/gguf.h"

namespace jevons {
namespace {

int checked_int(const ModelSource& f, const std::string& key, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi) fail("{}: metadata key {} = {} is out of range [{}, {}]", f.path(), key, v, lo, hi);
  return int(v);
}

// MLA and MoE hyperparameters. llama.cpp writes two layouts: the current one
// (attn_k_b / attn_v_b tensors, head_count_kv 1, key_length = kv_lora + rope,
// key_length_mla = nope + rope) and the older one (attn_kv_b, key_length = nope + rope).
void read_deepseek2(const ModelSource& f, ModelConfig& c) {
  const std::string a = "deepseek2.";
  auto req = [&](const std::string& key, uint64_t lo, uint64_t hi) { return checked_int(f, a + key, f.get_uint(a + key), lo, hi); };
  auto opt = [&](const std::string& key, uint64_t def, uint64_t lo, uint64_t hi) {
    return checked_int(f, a + key, f.get_uint_or(a + key, def), lo, hi);
  };
  MlaConfig& m = c.mla;
  m.q_lora_rank = opt("attention.q_lora_rank", 0, 0, 1 << 16);
  m.kv_lora_rank = req("attention.kv_lora_rank", 1, 1 << 16);
  m.qk_rope_head_dim = c.rope.n_rot;
  const bool new_layout = f.find(a + "attention.key_length_mla") != nullptr;
  const int qk_head_dim = new_layout ? req("attention.key_length_mla", 2, 1 << 16) : c.head_dim_k;
  m.v_head_dim = new_layout ? req("attention.value_length_mla", 1, 1 << 16) : c.head_dim_v;
  if (qk_head_dim <= m.qk_rope_head_dim)
    fail("{}: attention key length {} must exceed rope.dimension_count {}", f.path(), qk_head_dim, m.qk_rope_head_dim);
  m.qk_nope_head_dim = qk_head_dim - m.qk_rope_head_dim;
  m.yarn_log_multiplier = float(f.get_float_or(a + "rope.scaling.yarn_log_multiplier", 0.0));
  // Attention runs over per-head q/k of qk_head_dim and values of v_head_dim.
  c.head_dim_k = qk_head_dim;
  c.head_dim_v = m.v_head_dim;
  c.n_head_kv = c.n_head;
  c.cache_k_dim = m.kv_lora_rank + m.qk_rope_head_dim;  // the latent c_kv and the shared k_pe
  c.cache_v_dim = 0;                                    // values are read from the latent too
  c.cache_heads = 1;                                    // one latent row, shared by every head

  MoeConfig& e = c.moe;
  e.n_expert = opt("expert_count", 0, 0, 1 << 16);
  if (e.n_expert > 0) {
    e.n_expert_used = req("expert_used_count", 1, uint64_t(e.n_expert));
    e.n_shared = opt("expert_shared_count", 0, 0, 1 << 10);
    e.n_ff_expert = req("expert_feed_forward_length", 1, 1 << 22);
    e.first_dense = opt("leading_dense_block_count", 0, 0, uint64_t(c.n_layer));
    e.n_group = opt("expert_group_count", 1, 1, uint64_t(e.n_expert));
    e.topk_group = opt("expert_group_used_count", uint64_t(e.n_group), 1, uint64_t(e.n_group));
    if (e.n_expert % e.n_group != 0) fail("{}: expert_count {} is not a multiple of expert_group_count {}", f.path(), e.n_expert, e.n_group);
    if (e.n_group > 1 && e.n_expert_used > e.topk_group * (e.n_expert / e.n_group))
      fail("{}: expert_used_count {} exceeds the experts in the {} groups kept", f.path(), e.n_expert_used, e.topk_group);
    const int gating = opt("expert_gating_func", 1, 1, 2);
    e.gating = MoeGating(gating);
    e.norm_topk_prob = f.get_bool_or(a + "expert_weights_norm", false);
    e.routed_scaling_factor = float(f.get_float_or(a + "expert_weights_scale", 1.0));
  }
}

}  // namespace

ModelConfig read_config(const ModelSource& f) {
  ModelConfig c;
  c.arch = f.get_string("general.architecture");
  c.name = f.get_string_or("general.name", "");
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3" && c.arch != "deepseek2")
    fail("{}: unknown architecture '{}' (jevons supports llama, qwen2, qwen3, deepseek2)", f.path(), c.arch);
  const std::string a = c.arch + ".";
  auto req = [&](const std::string& key, uint64_t lo, uint64_t hi) { return checked_int(f, a + key, f.get_uint(a + key), lo, hi); };
  auto opt = [&](const std::string& key, uint64_t def, uint64_t lo, uint64_t hi) {
    return checked_int(f, a + key, f.get_uint_or(a + key, def), lo, hi);
  };

  c.n_layer = req("block_count", 1, 4096);
  // Multi-token prediction (nextn) layers: DeepSeek's alone; files of other
  // architectures that carry them are refused rather than run without them silently.
  c.n_mtp = opt("nextn_predict_layers", 0, 0, 16);
  bool nextn_tensors = false;
  for (const GgufTensor* t : f.tensor_list()) nextn_tensors |= t->name.find(".nextn.") != std::string::npos;
  if ((c.n_mtp > 0 || nextn_tensors) && c.arch != "deepseek2")
    fail("{}: the file has multi-token-prediction (nextn) layers, which jevons runs for deepseek2 only", f.path());
  if (nextn_tensors && c.n_mtp == 0)
    fail("{}: the file has nextn tensors but no {}nextn_predict_layers", f.path(), a);
  if (c.n_mtp >= c.n_layer) fail("{}: nextn_predict_layers {} leaves no trunk layers of block_count {}", f.path(), c.n_mtp, c.n_layer);
  c.n_layer -= c.n_mtp;
  c.n_embd = req("embedding_length", 1, 1 << 20);
  c.n_ff = req("feed_forward_length", 1, 1 << 22);
  c.n_head = req("attention.head_count", 1, 1 << 14);
  c.n_head_kv = opt("attention.head_count_kv", uint64_t(c.n_head), 1, uint64_t(c.n_head));
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: attention.head_count {} is not a multiple of head_count_kv {}", f.path(), c.n_head, c.n_head_kv);
  if (c.n_embd % c.n_head != 0 && !f.find(a + "attention.key_length"))
    fail("{}: embedding_length {} is not divisible by head_count {} and attention.key_length is missing", f.path(), c.n_embd, c.n_head);
  c.head_dim_k = opt("attention.key_length", uint64_t(c.n_embd / c.n_head), 1, 1 << 16);
  c.head_dim_v = opt("attention.value_length", uint64_t(c.head_dim_k), 1, 1 << 16);
  c.n_ctx_train = opt("context_length", 2048, 1, uint64_t(1) << 31);
  c.rms_eps = float(f.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f)) fail("{}: layer_norm_rms_epsilon {} is not in (0, 1)", f.path(), c.rms_eps);

  RopeConfig& r = c.rope;
  // GGUF llama q/k are permuted at conversion for adjacent-pair RoPE; DeepSeek
  // rotates interleaved pairs natively; Qwen uses HF's rotate_half.
  r.style = c.arch == "llama" || c.arch == "deepseek2" ? RopeStyle::kAdjacentPairs : RopeStyle::kHalves;
  // A Hugging Face llama keeps q/k rows unpermuted (rotate_half), see formats/hf_model.
  if (f.get_bool_or("jevons.rope_halves", false)) r.style = RopeStyle::kHalves;
  r.n_rot = opt("rope.dimension_count", uint64_t(c.head_dim_k), 2, uint64_t(c.head_dim_k));
  if (r.n_rot % 2 != 0) fail("{}: rope.dimension_count {} is odd", f.path(), r.n_rot);
  r.freq_base = float(f.get_float_or(a + "rope.freq_base", 10000.0));
  if (!(r.freq_base > 1.0f)) fail("{}: rope.freq_base {} must be > 1", f.path(), r.freq_base);

  std::string scaling = f.get_string_or(a + "rope.scaling.type", "none");
  double factor = f.get_float_or(a + "rope.scaling.factor", 0.0);
  if (const double lin = f.get_float_or(a + "rope.scale_linear", 0.0); lin > 0.0 && scaling == "none") {
    scaling = "linear";  // older files
    factor = lin;
  }
  if (scaling == "none" || factor == 0.0 || factor == 1.0) {
    r.scaling = RopeScaling::kNone;
  } else if (!(factor > 0.0 && factor < 1e6)) {
    fail("{}: rope.scaling.factor {} is not a positive number", f.path(), factor);
  } else if (scaling == "linear") {
    r.scaling = RopeScaling::kLinear;
    r.freq_scale = float(1.0 / factor);
  } else if (scaling == "yarn") {
    r.scaling = RopeScaling::kYarn;
    r.freq_scale = float(1.0 / factor);
    r.n_ctx_orig = opt("rope.scaling.original_context_length", uint64_t(c.n_ctx_train), 1, uint64_t(1) << 31);
    r.yarn_beta_fast = float(f.get_float_or(a + "rope.scaling.yarn_beta_fast", 32.0));
    r.yarn_beta_slow = float(f.get_float_or(a + "rope.scaling.yarn_beta_slow", 1.0));
    r.yarn_ext_factor = 1.0f;
  } else {
    fail("{}: unsupported rope.scaling.type '{}' (supported: none, linear, yarn)", f.path(), scaling);
  }

  c.has_qkv_bias = c.arch == "qwen2";
  c.has_qk_norm = c.arch == "qwen3";
  c.cache_k_dim = c.k_dim();
  c.cache_v_dim = c.v_dim();
  c.cache_heads = c.n_head_kv;
  if (c.arch == "deepseek2") read_deepseek2(f, c);
  return c;
}

}  // namespace jevons
