#include "model/synth.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/output_file.h"
#include "core/float16.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/config.h"

namespace jevons {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// llama.cpp's file_type ids (llama_ftype) for a file whose matrices are all `t`.
uint32_t file_type_id(TensorType t) {
  switch (t) {
    case TensorType::F32: return 0;
    case TensorType::F16: return 1;
    case TensorType::Q4_0: return 2;
    case TensorType::Q4_1: return 3;
    case TensorType::Q8_0: return 7;
    case TensorType::Q5_0: return 8;
    case TensorType::Q5_1: return 9;
    case TensorType::Q2_K: return 10;
    case TensorType::Q3_K: return 11;  // Q3_K_S
    case TensorType::Q4_K: return 14;  // Q4_K_S
    case TensorType::Q5_K: return 16;  // Q5_K_S
    case TensorType::Q6_K: return 18;
    case TensorType::BF16: return 32;
    case TensorType::IQ4_NL: return 25;
    case TensorType::IQ4_XS: return 30;
    case TensorType::TQ1_0: return 36;
    case TensorType::TQ2_0: return 37;
    case TensorType::MXFP4: return 38;  // LLAMA_FTYPE_MOSTLY_MXFP4_MOE (llama.cpp has no pure MXFP4 ftype)
    default: fail("synth: type {} cannot be the weight type of a model file", type_name(t));
  }
}

// Copies the vocabulary, padding it with unused tokens up to the model's n_vocab
// (as converters do for models whose embedding is larger than the tokenizer).
void copy_vocab(GgufWriter& w, const GgufFile& v, int n_vocab) {
  bool has_tokens = false;
  for (const auto& [key, value] : v.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    if (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.scores" || key == "tokenizer.ggml.token_type") continue;
    w.set_value(key, value);
  }
  const GgufValue& tokens = v.get_array("tokenizer.ggml.tokens");
  has_tokens = tokens.size() > 0;
  if (!has_tokens) fail("{}: tokenizer.ggml.tokens is empty", v.path());
  if (int64_t(tokens.size()) > n_vocab)
    fail("{}: the vocabulary has {} tokens, more than the preset's {} embedding rows; choose a smaller vocab", v.path(),
         tokens.size(), n_vocab);
  std::vector<std::string> text;
  std::vector<float> scores;
  std::vector<int32_t> types;
  const GgufValue* sc = v.find("tokenizer.ggml.scores");
  const GgufValue* ty = v.find("tokenizer.ggml.token_type");
  for (size_t k = 0; k < tokens.size(); ++k) {
    text.emplace_back(tokens.string_at(k));
    scores.push_back(sc ? float(sc->number_at(k)) : 0.0f);
    types.push_back(ty ? int32_t(ty->int_at(k)) : 1);
  }
  for (int k = int(tokens.size()); k < n_vocab; ++k) {
    text.push_back("[PAD" + std::to_string(k) + "]");
    scores.push_back(-1e9f);
    types.push_back(5);  // UNUSED
  }
  w.set_strings("tokenizer.ggml.tokens", text);
  w.set_f32s("tokenizer.ggml.scores", scores);
  w.set_i32s("tokenizer.ggml.token_type", types);
}

}  // namespace

TensorType fallback_type(TensorType t) {
  switch (t) {
    case TensorType::Q2_K: case TensorType::Q3_K: return TensorType::Q4_0;
    case TensorType::Q4_K: return TensorType::Q5_0;
    case TensorType::Q5_K: return TensorType::Q5_1;
    case TensorType::Q6_K: return TensorType::Q8_0;
    case TensorType::IQ4_XS: return TensorType::IQ4_NL;  // llama.cpp's choice too
    case TensorType::TQ1_0: case TensorType::TQ2_0: return TensorType::Q4_0;
    default: return t;
  }
}

bool use_more_bits(int layer, int n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

SynthResult synthesize(const SynthOptions& o) {
  if (!o.preset) fail("synth: no preset given");
  const Preset& p = *o.preset;
  const bool experts_mix = o.experts_type != TensorType::Q8_K;
  if (experts_mix && p.n_expert == 0) fail("synth: preset {} has no routed experts for the experts' type", p.name);
  // 15: LLAMA_FTYPE_MOSTLY_Q4_K_M; an experts mix is named after the experts' type (most of the bytes).
  const uint32_t ftype = o.q4_k_m ? 15 : file_type_id(experts_mix ? o.experts_type : o.type);
  // The type a matrix is asked for (before the fallback for short rows).
  auto matrix_type = [&](const std::string& name) {
    if (experts_mix && name.find("_exps.") != std::string::npos) return o.experts_type;
    if (!o.q4_k_m) return o.type;
    if (name == "output.weight" || (p.tied_embeddings && name == "token_embd.weight")) return TensorType::Q6_K;
    int layer = -1;
    if (name.rfind("blk.", 0) == 0) layer = std::atoi(name.c_str() + 4);
    const bool more_bits_kind = name.find(".attn_v.weight") != std::string::npos || name.find(".ffn_down") != std::string::npos;
    return more_bits_kind && layer >= 0 && use_more_bits(layer, p.n_layer) ? TensorType::Q6_K : TensorType::Q4_K;
  };
  auto vocab = GgufFile::open(o.vocab_path);

  GgufWriter w;
  const std::string a = std::string(p.arch) + ".";
  w.set_string("general.architecture", p.arch);
  w.set_string("general.name", std::string(p.name) + " (jevons synth: random weights)");
  w.set_u32("general.file_type", ftype);
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + "vocab_size", uint32_t(p.n_vocab));
  w.set_u32(a + "context_length", uint32_t(p.n_ctx));
  w.set_u32(a + "embedding_length", uint32_t(p.n_embd));
  const bool deepseek = std::string(p.arch) == "deepseek2";
  if (o.mtp_layers < 0 || o.mtp_layers > 4) fail("synth: --mtp takes 0 to 4 layers, got {}", o.mtp_layers);
  if (o.mtp_layers > 0 && !deepseek) fail("synth: multi-token prediction layers are DeepSeek's (preset {} is {})", p.name, p.arch);
  w.set_u32(a + "block_count", uint32_t(p.n_layer + o.mtp_layers));
  if (o.mtp_layers > 0) w.set_u32(a + "nextn_predict_layers", uint32_t(o.mtp_layers));
  w.set_u32(a + "feed_forward_length", uint32_t(p.n_ff));
  w.set_u32(a + "attention.head_count", uint32_t(p.n_head));
  w.set_u32(a + "attention.head_count_kv", uint32_t(p.n_head_kv));
  if (deepseek) {  // llama.cpp's current MLA layout: the cache holds the latent + RoPE key
    w.set_u32(a + "attention.head_count_kv", 1);
    w.set_u32(a + "attention.key_length", uint32_t(p.kv_lora_rank + p.qk_rope));
    w.set_u32(a + "attention.value_length", uint32_t(p.kv_lora_rank));
    w.set_u32(a + "attention.key_length_mla", uint32_t(p.qk_nope + p.qk_rope));
    w.set_u32(a + "attention.value_length_mla", uint32_t(p.v_head));
    w.set_u32(a + "attention.q_lora_rank", uint32_t(p.q_lora_rank));
    w.set_u32(a + "attention.kv_lora_rank", uint32_t(p.kv_lora_rank));
    w.set_u32(a + "expert_count", uint32_t(p.n_expert));
    w.set_u32(a + "expert_used_count", uint32_t(p.n_expert_used));
    w.set_u32(a + "expert_shared_count", uint32_t(p.n_shared));
    w.set_u32(a + "expert_feed_forward_length", uint32_t(p.n_ff_expert));
    w.set_u32(a + "leading_dense_block_count", uint32_t(p.first_dense));
    w.set_u32(a + "expert_group_count", uint32_t(p.n_group));
    w.set_u32(a + "expert_group_used_count", uint32_t(p.topk_group));
    w.set_u32(a + "expert_gating_func", p.sigmoid_gating ? 2 : 1);
    w.set_bool(a + "expert_weights_norm", p.norm_topk);
    w.set_f32(a + "expert_weights_scale", p.routed_scale);
    if (p.yarn_factor > 0) {
      w.set_string(a + "rope.scaling.type", "yarn");
      w.set_f32(a + "rope.scaling.factor", p.yarn_factor);
      w.set_u32(a + "rope.scaling.original_context_length", uint32_t(p.yarn_orig_ctx));
      w.set_f32(a + "rope.scaling.yarn_log_multiplier", 0.1f * p.yarn_mscale_all_dim);
    }
  } else if (p.head_dim * p.n_head != p.n_embd) {
    w.set_u32(a + "attention.key_length", uint32_t(p.head_dim));
    w.set_u32(a + "attention.value_length", uint32_t(p.head_dim));
  }
  w.set_u32(a + "rope.dimension_count", uint32_t(deepseek ? p.qk_rope : p.head_dim));
  w.set_f32(a + "rope.freq_base", p.rope_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", p.rms_eps);
  copy_vocab(w, *vocab, p.n_vocab);

  SynthResult result;
  std::map<std::string, int> fallbacks;
  ThreadPool pool(o.threads);
  size_t n_tensors = 0, done = 0;
  uint64_t written = 0;
  // Each tensor's fill runs once, in file order, just before it is written.
  auto report = [&] {
    if (o.progress) o.progress(++done, n_tensors, written);
  };

  // Every value is a function of (seed, tensor name, row), so files are identical
  // whatever the thread count.
  auto add_weights = [&](const std::string& name, std::vector<int64_t> dims, float stddev,
                         TensorType force_type = TensorType::Q8_K /* = none */) {
    const int64_t cols = dims[0];
    int64_t rows = 1;
    for (size_t k = 1; k < dims.size(); ++k) rows *= dims[k];
    const TensorType wanted = force_type != TensorType::Q8_K ? force_type : matrix_type(name);
    TensorType t = wanted;
    if (cols % type_traits(t).block_size != 0) {
      t = fallback_type(t);
      if (cols % type_traits(t).block_size != 0) t = TensorType::F16;  // nothing block-based fits
      ++fallbacks[fmt::format("{} -> {} (row length {})", type_name(wanted), type_name(t), cols)];
    }
    result.parameters += cols * rows;
    ++n_tensors;
    const uint64_t tensor_seed = splitmix64(o.seed ^ hash_name(name));
    w.add_tensor_generated(name, t, dims, [=, &pool](uint8_t* out, size_t) {
      const TypeTraits& tr = type_traits(t);
      const size_t row_bytes = jevons::row_bytes(t, cols);
      const float scale = stddev * std::sqrt(3.0f);  // uniform(-scale, scale) has this stddev
      const bool round_to_bf16 = o.bf16_values && (t == TensorType::F16 || t == TensorType::F32);
      pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = begin; r < end; ++r) {
          uint64_t s = splitmix64(tensor_seed + uint64_t(r));
          for (float& v : row) {
            s = splitmix64(s);
            v = (float(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
            if (round_to_bf16) v = bf16_to_float(float_to_bf16(v));
          }
          tr.from_float(row.data(), out + size_t(r) * row_bytes, cols);
        }
      });
      report();
    });
  };
  auto add_matrix = [&](const std::string& name, int64_t cols, int64_t rows, float stddev) {
    add_weights(name, {cols, rows}, stddev);
  };
  auto add_vector = [&](const std::string& name, std::vector<float> v) {
    result.parameters += int64_t(v.size());
    ++n_tensors;
    const int64_t n = int64_t(v.size());
    w.add_tensor_generated(name, TensorType::F32, {n}, [v = std::move(v), &report](uint8_t* out, size_t nbytes) {
      std::memcpy(out, v.data(), nbytes);
      report();
    });
  };

  const int64_t E = p.n_embd, q_dim = int64_t(p.n_head) * p.head_dim, kv_dim = int64_t(p.n_head_kv) * p.head_dim;
  const bool qwen2 = std::string(p.arch) == "qwen2";
  add_matrix("token_embd.weight", E, p.n_vocab, 0.02f);
  if (p.llama3_factor > 0)
    add_vector("rope_freqs.weight", llama3_rope_freqs(p.head_dim, p.rope_base, p.llama3_factor, p.llama3_low_freq,
                                                    p.llama3_high_freq, p.llama3_orig_ctx));
  for (int l = 0; l < p.n_layer + o.mtp_layers && deepseek; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const int64_t H = p.n_head, qk = p.qk_nope + p.qk_rope;
    if (l >= p.n_layer) {  // an MTP module: its projection and norms, then a layer like the others
      add_matrix(b + "nextn.eh_proj.weight", 2 * E, E, 0.02f);
      add_vector(b + "nextn.enorm.weight", std::vector<float>(size_t(E), 1.0f));
      add_vector(b + "nextn.hnorm.weight", std::vector<float>(size_t(E), 1.0f));
      add_vector(b + "nextn.shared_head_norm.weight", std::vector<float>(size_t(E), 1.0f));
    }
    add_vector(b + "attn_norm.weight", std::vector<float>(size_t(E), 1.0f));
    if (p.q_lora_rank > 0) {
      add_matrix(b + "attn_q_a.weight", E, p.q_lora_rank, 0.02f);
      add_vector(b + "attn_q_a_norm.weight", std::vector<float>(size_t(p.q_lora_rank), 1.0f));
      add_matrix(b + "attn_q_b.weight", p.q_lora_rank, H * qk, 0.02f);
    } else {
      add_matrix(b + "attn_q.weight", E, H * qk, 0.02f);
    }
    add_matrix(b + "attn_kv_a_mqa.weight", E, p.kv_lora_rank + p.qk_rope, 0.02f);
    add_vector(b + "attn_kv_a_norm.weight", std::vector<float>(size_t(p.kv_lora_rank), 1.0f));
    add_weights(b + "attn_k_b.weight", {p.qk_nope, p.kv_lora_rank, H}, 0.02f);
    add_weights(b + "attn_v_b.weight", {p.kv_lora_rank, p.v_head, H}, 0.02f);
    add_matrix(b + "attn_output.weight", H * p.v_head, E, 0.02f);
    add_vector(b + "ffn_norm.weight", std::vector<float>(size_t(E), 1.0f));
    if (l < p.first_dense) {
      add_matrix(b + "ffn_gate.weight", E, p.n_ff, 0.02f);
      add_matrix(b + "ffn_up.weight", E, p.n_ff, 0.02f);
      add_matrix(b + "ffn_down.weight", p.n_ff, E, 0.02f);
      continue;
    }
    // Router: random (so tokens spread over experts as in a trained model), F32 as llama.cpp keeps it.
    add_weights(b + "ffn_gate_inp.weight", {E, p.n_expert}, 0.02f, TensorType::F32);
    if (p.sigmoid_gating) add_vector(b + "exp_probs_b.bias", std::vector<float>(size_t(p.n_expert), 0.0f));
    add_weights(b + "ffn_gate_exps.weight", {E, p.n_ff_expert, p.n_expert}, 0.02f);
    add_weights(b + "ffn_up_exps.weight", {E, p.n_ff_expert, p.n_expert}, 0.02f);
    add_weights(b + "ffn_down_exps.weight", {p.n_ff_expert, E, p.n_expert}, 0.02f);
    if (p.n_shared > 0) {
      add_matrix(b + "ffn_gate_shexp.weight", E, int64_t(p.n_ff_expert) * p.n_shared, 0.02f);
      add_matrix(b + "ffn_up_shexp.weight", E, int64_t(p.n_ff_expert) * p.n_shared, 0.02f);
      add_matrix(b + "ffn_down_shexp.weight", int64_t(p.n_ff_expert) * p.n_shared, E, 0.02f);
    }
  }
  for (int l = 0; l < p.n_layer && !deepseek; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add_vector(b + "attn_norm.weight", std::vector<float>(size_t(E), 1.0f));
    add_matrix(b + "attn_q.weight", E, q_dim, 0.02f);
    add_matrix(b + "attn_k.weight", E, kv_dim, 0.02f);
    add_matrix(b + "attn_v.weight", E, kv_dim, 0.02f);
    if (qwen2) {
      add_vector(b + "attn_q.bias", std::vector<float>(size_t(q_dim), 0.01f));
      add_vector(b + "attn_k.bias", std::vector<float>(size_t(kv_dim), 0.01f));
      add_vector(b + "attn_v.bias", std::vector<float>(size_t(kv_dim), 0.01f));
    }
    add_matrix(b + "attn_output.weight", q_dim, E, 0.02f);
    add_vector(b + "ffn_norm.weight", std::vector<float>(size_t(E), 1.0f));
    add_matrix(b + "ffn_gate.weight", E, p.n_ff, 0.02f);
    add_matrix(b + "ffn_up.weight", E, p.n_ff, 0.02f);
    add_matrix(b + "ffn_down.weight", p.n_ff, E, 0.02f);
  }
  add_vector("output_norm.weight", std::vector<float>(size_t(E), 1.0f));
  if (!p.tied_embeddings) add_matrix("output.weight", E, p.n_vocab, 0.02f);

  for (const auto& [what, count] : fallbacks) result.notes += fmt::format("{} tensors {}; ", count, what);

  OutputFile file(o.out_path);  // renamed into place when whole
  w.write_to([&](const uint8_t* data, size_t n) {
    file.write(data, n);
    written += n;
  });
  file.commit();
  result.file_bytes = written;
  return result;
}

}  // namespace jevons
