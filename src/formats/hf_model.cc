#include "formats/hf_model.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "kernels/ops.h"
#include "kernels/rope.h"

namespace jevons {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p, bool required) {
  if (!fs::exists(p)) {
    if (required) fail("{} is missing", p.string());
    return json();
  }
  try {
    std::ifstream in(p);
    return json::parse(in);
  } catch (const std::exception& e) {
    fail("{}: not valid JSON ({})", p.string(), e.what());
  }
}

// config.json getters that say which key is wrong.
struct Config {
  const json& j;
  std::string path;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  uint64_t uint(const char* k) const {
    if (!has(k)) fail("{}: \"{}\" is missing", path, k);
    if (!j[k].is_number_unsigned()) fail("{}: \"{}\" must be a non-negative integer, got {}", path, k, j[k].dump());
    return j[k].get<uint64_t>();
  }
  uint64_t uint_or(const char* k, uint64_t d) const { return has(k) ? uint(k) : d; }
  double num(const char* k) const {
    if (!has(k) || !j[k].is_number()) fail("{}: \"{}\" must be a number", path, k);
    return j[k].get<double>();
  }
  double num_or(const char* k, double d) const { return has(k) ? num(k) : d; }
  bool flag_or(const char* k, bool d) const {
    if (!has(k)) return d;
    if (!j[k].is_boolean()) fail("{}: \"{}\" must be true or false", path, k);
    return j[k].get<bool>();
  }
  std::string str_or(const char* k, const std::string& d) const {
    if (!has(k)) return d;
    if (!j[k].is_string()) fail("{}: \"{}\" must be a string", path, k);
    return j[k].get<std::string>();
  }
};

// HF parameter names -> GGUF tensor names (the suffix after "model.layers.N.").
const std::pair<const char*, const char*> kLayerNames[] = {
    // DeepSeek-V3's multi-token prediction layer (model.layers.<num_hidden_layers>.*)
    {"eh_proj.weight", "nextn.eh_proj.weight"},
    {"enorm.weight", "nextn.enorm.weight"},
    {"hnorm.weight", "nextn.hnorm.weight"},
    {"embed_tokens.weight", "nextn.embed_tokens.weight"},
    {"shared_head.norm.weight", "nextn.shared_head_norm.weight"},
    {"shared_head.head.weight", "nextn.shared_head_head.weight"},
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
    {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
    {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
};

// The GGUF name of an HF tensor, or "" for tensors jevons does not use (rotary buffers...).
std::string gguf_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+))");
  static const std::regex expert(R"(mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight)");
  std::smatch m;
  if (!std::regex_match(hf, m, layer)) return "";
  const std::string blk = "blk." + m[1].str() + ".", rest = m[2].str();
  for (auto [from, to] : kLayerNames)
    if (rest == from) return blk + to;
  if (std::regex_match(rest, m, expert)) return blk + "ffn_" + m[2].str() + "_exps." + m[1].str() + ".weight";
  return "";
}

TensorType tensor_type_of(const SafetensorsTensor& t) {
  switch (t.dtype) {
    case SafetensorsDtype::F32: return TensorType::F32;
    case SafetensorsDtype::F16: return TensorType::F16;
    case SafetensorsDtype::BF16: return TensorType::BF16;
    case SafetensorsDtype::F8_E4M3: return TensorType::F8_E4M3;
    default: fail("tensor {}: dtype {} cannot hold weights (F32, F16, BF16 or F8_E4M3 expected)", t.name, t.dtype_name);
  }
}

// Names llama.cpp gives the pre-tokenizer regexes of tokenizer.json files.
std::string detect_pre_tokenizer(const json& pre, const std::string& path) {
  std::vector<const json*> parts;
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
    for (const json& p : pre["pretokenizers"]) parts.push_back(&p);
  else if (pre.is_object())
    parts.push_back(&pre);
  bool digits = false, byte_level_regex = false;
  std::string splits;
  for (const json* p : parts) {
    const std::string type = p->value("type", "");
    if (type == "Digits" && p->value("individual_digits", false)) digits = true;
    else if (type == "ByteLevel") byte_level_regex = byte_level_regex || p->value("use_regex", true);
    else if (type == "Split" && p->contains("pattern") && (*p)["pattern"].contains("Regex"))
      splits += (*p)["pattern"]["Regex"].get<std::string>() + "\n";
  }
  if (splits.empty() && byte_level_regex) return digits ? "smollm" : "gpt-2";
  if (splits.find("\\p{N}{1,3}") != std::string::npos && splits.find("\u4e00-\u9fa5") != std::string::npos) return "deepseek-v3";
  if (splits.find("(?i:'s|'t|'re|'ve|'m|'ll|'d)") != std::string::npos)
    return splits.find("\\p{N}{1,3}") != std::string::npos ? "llama-bpe" : "qwen2";
  fail("{}: pre-tokenizer not recognized (supported: ByteLevel (gpt-2), Digits+ByteLevel (smollm), llama3, qwen2, "
       "deepseek-v3 regexes); pattern(s): {}",
       path, splits.empty() ? pre.dump().substr(0, 200) : splits);
}

std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

std::string_view HfModel::keep(const std::string& s) { return strings_.emplace_back(s); }

void HfModel::set(const std::string& key, GgufValue v) {
  if (auto it = kv_index_.find(key); it != kv_index_.end()) {
    kv_[it->second].second = std::move(v);
    return;
  }
  kv_index_.emplace(key, kv_.size());
  kv_.emplace_back(key, std::move(v));
}
void HfModel::set_u32(const std::string& key, uint64_t v) {
  GgufValue g;
  g.type = GgufType::UINT32;
  if (v > 0xffffffffu) fail("{}: value {} of {} does not fit in 32 bits", dir_, v, key);
  g.u = v;
  g.i = int64_t(v);
  set(key, g);
}
void HfModel::set_f32(const std::string& key, double v) {
  GgufValue g;
  g.type = GgufType::FLOAT32;
  g.f = double(float(v));
  set(key, g);
}
void HfModel::set_bool(const std::string& key, bool v) {
  GgufValue g;
  g.type = GgufType::BOOL;
  g.u = v;
  g.i = v;
  set(key, g);
}
void HfModel::set_string(const std::string& key, const std::string& v) {
  GgufValue g;
  g.type = GgufType::STRING;
  g.str = keep(v);
  set(key, g);
}
void HfModel::set_strings(const std::string& key, const std::vector<std::string>& v) {
  GgufValue g;
  g.type = GgufType::ARRAY;
  g.elem_type = GgufType::STRING;
  g.count = v.size();
  for (const std::string& s : v) {
    GgufValue item;
    item.type = GgufType::STRING;
    item.str = keep(s);
    g.items.push_back(item);
  }
  set(key, std::move(g));
}
void HfModel::set_numbers(const std::string& key, GgufType type, const std::vector<uint8_t>& raw, size_t count) {
  GgufValue g;
  g.type = GgufType::ARRAY;
  g.elem_type = type;
  g.count = count;
  g.raw = owned_.emplace_back(raw).data();
  set(key, std::move(g));
}

const GgufValue* HfModel::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

void HfModel::release_pages(const uint8_t* p, size_t n) const {
  if (const MappedFile* map = checkpoint_->map_containing(p, n)) map->release(p, n);
}

bool HfModel::can_release_pages(const uint8_t* p, size_t n) const { return checkpoint_->map_containing(p, n) != nullptr; }

const GgufTensor* HfModel::find_tensor(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<const GgufTensor*> HfModel::tensor_list() const {
  std::vector<const GgufTensor*> v;
  for (const auto& [name, t] : tensors_) v.push_back(&t);
  return v;
}

std::unique_ptr<HfModel> HfModel::open(const std::string& dir, std::optional<TensorType> quantize_to, ThreadPool* pool) {
  if (!fs::is_directory(dir)) fail("{} is not a directory", dir);
  std::unique_ptr<HfModel> m(new HfModel());
  m->dir_ = dir;
  m->read_config();
  m->checkpoint_ = SafetensorsCheckpoint::open(dir);
  m->map_tensors(quantize_to, pool);
  m->read_tokenizer();
  return m;
}

void HfModel::read_config() {
  const fs::path path = fs::path(dir_) / "config.json";
  const json j = read_json(path, true);
  if (!j.is_object()) fail("{}: not a JSON object", path.string());
  const Config c{j, path.string()};
  const std::string type = c.str_or("model_type", "");
  if (type == "llama" || type == "mistral") arch_ = "llama";
  else if (type == "qwen2" || type == "qwen3") arch_ = type;
  else if (type == "deepseek_v2" || type == "deepseek_v3") arch_ = "deepseek2";
  else fail("{}: model_type '{}' is not supported (llama, mistral, qwen2, qwen3, deepseek_v2, deepseek_v3)", path.string(), type);
  const std::string a = arch_ + ".";
  set_string("general.architecture", arch_);
  set_string("general.name", fs::path(dir_).filename().string());

  const uint64_t hidden = c.uint("hidden_size"), heads = c.uint("num_attention_heads");
  if (heads == 0) fail("{}: num_attention_heads is 0", path.string());
  set_u32(a + "embedding_length", hidden);
  set_u32(a + "block_count", c.uint("num_hidden_layers"));
  set_u32(a + "feed_forward_length", c.uint("intermediate_size"));
  set_u32(a + "attention.head_count", heads);
  set_u32(a + "context_length", c.uint_or("max_position_embeddings", 2048));
  set_f32(a + "attention.layer_norm_rms_epsilon", c.num_or("rms_norm_eps", 1e-6));
  set_f32(a + "rope.freq_base", c.num_or("rope_theta", 10000.0));
  if (c.has("vocab_size")) set_u32(a + "vocab_size", c.uint("vocab_size"));

  if (arch_ == "deepseek2") {
    const uint64_t rope = c.uint("qk_rope_head_dim"), nope = c.uint("qk_nope_head_dim");
    set_u32(a + "attention.head_count_kv", heads);
    set_u32(a + "attention.q_lora_rank", c.uint_or("q_lora_rank", 0));
    set_u32(a + "attention.kv_lora_rank", c.uint("kv_lora_rank"));
    set_u32(a + "attention.key_length", nope + rope);
    set_u32(a + "attention.value_length", c.uint("v_head_dim"));
    set_u32(a + "rope.dimension_count", rope);
    if (c.has("n_routed_experts")) {
      set_u32(a + "expert_count", c.uint("n_routed_experts"));
      set_u32(a + "expert_used_count", c.uint("num_experts_per_tok"));
      set_u32(a + "expert_shared_count", c.uint_or("n_shared_experts", 0));
      set_u32(a + "expert_feed_forward_length", c.uint("moe_intermediate_size"));
      set_u32(a + "leading_dense_block_count", c.uint_or("first_k_dense_replace", 0));
      set_u32(a + "expert_group_count", c.uint_or("n_group", 1));
      set_u32(a + "expert_group_used_count", c.uint_or("topk_group", c.uint_or("n_group", 1)));
      const std::string scoring = c.str_or("scoring_func", "softmax");
      if (scoring != "softmax" && scoring != "sigmoid") fail("{}: scoring_func '{}' is not softmax or sigmoid", path.string(), scoring);
      set_u32(a + "expert_gating_func", scoring == "sigmoid" ? 2 : 1);
      set_bool(a + "expert_weights_norm", c.flag_or("norm_topk_prob", false));
      set_f32(a + "expert_weights_scale", c.num_or("routed_scaling_factor", 1.0));
    }
  } else {
    set_u32(a + "attention.head_count_kv", c.uint_or("num_key_value_heads", heads));
    const uint64_t head_dim = c.uint_or("head_dim", hidden / heads);
    set_u32(a + "attention.key_length", head_dim);
    set_u32(a + "attention.value_length", head_dim);
    set_u32(a + "rope.dimension_count", head_dim);
    rope_halves_ = arch_ == "llama";  // HF llama q/k are not permuted for adjacent-pair RoPE
    if (rope_halves_) set_bool("jevons.rope_halves", true);
  }

  if (c.has("rope_scaling")) {
    const json& rs = j["rope_scaling"];
    const Config r{rs, path.string() + " rope_scaling"};
    const std::string kind = r.str_or("rope_type", r.str_or("type", ""));
    if (kind == "linear") {
      set_string(a + "rope.scaling.type", "linear");
      set_f32(a + "rope.scaling.factor", r.num("factor"));
    } else if (kind == "yarn") {
      set_string(a + "rope.scaling.type", "yarn");
      set_f32(a + "rope.scaling.factor", r.num("factor"));
      set_u32(a + "rope.scaling.original_context_length", r.uint("original_max_position_embeddings"));
      set_f32(a + "rope.scaling.yarn_beta_fast", r.num_or("beta_fast", 32.0));
      set_f32(a + "rope.scaling.yarn_beta_slow", r.num_or("beta_slow", 1.0));
      set_f32(a + "rope.scaling.yarn_log_multiplier", 0.1 * r.num_or("mscale_all_dim", 0.0));
    } else if (kind == "llama3") {
      const uint64_t head_dim = c.uint_or("head_dim", hidden / heads);
      std::vector<float> f = llama3_rope_freqs(int(head_dim), float(c.num_or("rope_theta", 10000.0)), float(r.num("factor")),
                                               float(r.num_or("low_freq_factor", 1.0)), float(r.num_or("high_freq_factor", 4.0)),
                                               int(r.uint_or("original_max_position_embeddings", 8192)));
      std::vector<uint8_t>& bytes = owned_.emplace_back(f.size() * sizeof(float));
      std::memcpy(bytes.data(), f.data(), bytes.size());
      GgufTensor t;
      t.name = "rope_freqs.weight";
      t.type = TensorType::F32;
      t.dims = {int64_t(f.size())};
      t.n_elements = int64_t(f.size());
      t.nbytes = bytes.size();
      t.data = bytes.data();
      tensors_[t.name] = t;
    } else if (!kind.empty() && kind != "default") {
      fail("{}: rope_scaling type '{}' is not supported (linear, llama3, yarn)", path.string(), kind);
    }
  }
  // Tied unless the config says otherwise; a config without the key is decided by
  // whether the checkpoint has an lm_head (map_tensors).
  if (c.has("tie_word_embeddings")) set_bool("jevons.tied_output", c.flag_or("tie_word_embeddings", true));
}

void HfModel::map_tensors(std::optional<TensorType> quantize_to, ThreadPool* pool) {
  const json cfg = read_json(fs::path(dir_) / "config.json", true);
  int64_t block = 128;  // DeepSeek's weight_block_size
  if (cfg.contains("quantization_config") && cfg["quantization_config"].contains("weight_block_size")) {
    const json& b = cfg["quantization_config"]["weight_block_size"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_unsigned() || b[0] != b[1] || b[0].get<int64_t>() <= 0)
      fail("{}/config.json: quantization_config.weight_block_size must be [n, n]", dir_);
    block = b[0].get<int64_t>();
  }
  const GgufValue* tied_flag = find("jevons.tied_output");
  const bool untied = tied_flag ? tied_flag->u == 0 : checkpoint_->find("lm_head.weight") != nullptr;
  for (const auto& [hf, st] : checkpoint_->tensors()) {
    if (hf.size() > 10 && hf.compare(hf.size() - 10, 10, "_scale_inv") == 0) continue;  // attached to its weight below
    const std::string name = gguf_name(hf);
    if (name.empty() || (name == "output.weight" && !untied)) continue;
    GgufTensor t;
    t.name = name;
    t.type = tensor_type_of(*st);
    if (st->shape.empty() || st->shape.size() > 3) fail("{}: tensor {} has {} dimensions", dir_, hf, st->shape.size());
    t.dims.assign(st->shape.rbegin(), st->shape.rend());  // torch [out, in] -> ggml {in, out}
    t.n_elements = 1;
    for (int64_t d : t.dims) t.n_elements *= d;
    t.nbytes = st->nbytes;
    t.data = st->data;
    if (t.type == TensorType::F8_E4M3) {
      const SafetensorsTensor* s = checkpoint_->find(hf + "_scale_inv");
      if (!s) fail("{}: FP8 tensor {} has no {}_scale_inv", dir_, hf, hf);
      if (t.dims.size() != 2) fail("{}: FP8 tensor {} must be 2-D", dir_, hf);
      const int64_t rows = t.dims[1], cols = t.dims[0];
      const std::vector<int64_t> want = {(rows + block - 1) / block, (cols + block - 1) / block};
      if (s->shape != want)
        fail("{}: {}_scale_inv has shape [{}], expected [{}, {}] for {}x{} blocks", dir_, hf, fmt::join(s->shape, ", "), want[0],
             want[1], block, block);
      std::vector<uint8_t>& scales = owned_.emplace_back(size_t(want[0] * want[1]) * sizeof(float));
      type_traits(tensor_type_of(*s)).to_float(s->data, reinterpret_cast<float*>(scales.data()), want[0] * want[1]);
      owned_bytes_ += scales.size();
      t.block_scale = reinterpret_cast<const float*>(scales.data());
      t.scale_block = block;
      t.scale_cols = want[1];
    }
    tensors_[name] = t;
  }
  if (untied && !tensors_.count("output.weight")) fail("{}: tie_word_embeddings is false but lm_head.weight is missing", dir_);
  // DeepSeek's MTP layers follow the trunk's num_hidden_layers. Many checkpoints drop
  // them although the config still counts them: then they are left out, as before.
  const uint64_t n_trunk = find(arch_ + ".block_count")->u;
  uint64_t n_mtp = 0;
  if (arch_ == "deepseek2" && cfg.contains("num_nextn_predict_layers") && cfg["num_nextn_predict_layers"].is_number_unsigned())
    n_mtp = cfg["num_nextn_predict_layers"].get<uint64_t>();
  for (uint64_t k = 0; k < n_mtp; ++k)
    if (!tensors_.count(fmt::format("blk.{}.nextn.eh_proj.weight", n_trunk + k))) n_mtp = k;
  for (auto it = tensors_.begin(); it != tensors_.end();) {
    const bool beyond = it->first.rfind("blk.", 0) == 0 && std::strtoull(it->first.c_str() + 4, nullptr, 10) >= n_trunk + n_mtp;
    it = beyond ? tensors_.erase(it) : std::next(it);
  }
  if (n_mtp > 0) {
    set_u32(arch_ + ".block_count", n_trunk + n_mtp);
    set_u32(arch_ + ".nextn_predict_layers", n_mtp);
  }

  if (!quantize_to) return;
  // Quantize-on-load: every matrix except the router goes into the arena at the
  // chosen type (k-quants on short rows fall back as llama.cpp's quantizer does).
  for (auto& [name, t] : tensors_) {
    if (t.dims.size() != 2 || name.find("ffn_gate_inp") != std::string::npos) continue;
    TensorType target = *quantize_to;
    if (t.dims[0] % type_traits(target).block_size != 0) {
      switch (target) {
        case TensorType::Q2_K: case TensorType::Q3_K: target = TensorType::Q4_0; break;
        case TensorType::Q4_K: target = TensorType::Q5_0; break;
        case TensorType::Q5_K: target = TensorType::Q5_1; break;
        case TensorType::Q6_K: target = TensorType::Q8_0; break;
        default: break;
      }
      if (t.dims[0] % type_traits(target).block_size != 0) continue;  // stays in its stored type
    }
    const Tensor src{t.name, t.type, t.dims[0], t.dims[1], t.data, t.block_scale, t.scale_block, t.scale_cols};
    const size_t row = row_bytes(target, src.cols);
    std::vector<uint8_t>& out = owned_.emplace_back(row * size_t(src.rows));
    auto convert = [&](int64_t r0, int64_t r1) {
      std::vector<float> buf(static_cast<size_t>(src.cols));
      for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(src, r, buf.data());
        type_traits(target).from_float(buf.data(), out.data() + size_t(r) * row, src.cols);
      }
    };
    if (pool) pool->parallel_for(src.rows, convert);
    else convert(0, src.rows);
    owned_bytes_ += out.size();
    t.type = target;
    t.data = out.data();
    t.nbytes = out.size();
    t.block_scale = nullptr;
  }
}

void HfModel::read_tokenizer() {
  const fs::path tok_path = fs::path(dir_) / "tokenizer.json";
  const json tok = read_json(tok_path, false);
  if (tok.is_null()) return;  // logits work without one; run/tokenize will say it is missing
  const json cfg = read_json(fs::path(dir_) / "tokenizer_config.json", false);
  const json model_cfg = read_json(fs::path(dir_) / "config.json", true);
  const std::string where = tok_path.string();
  if (!tok.contains("model") || tok["model"].value("type", "") != "BPE")
    fail("{}: only BPE tokenizers are supported (model.type is {})", where, tok.contains("model") ? tok["model"].value("type", "?") : "missing");
  const json& model = tok["model"];
  if (model.value("byte_fallback", false))
    fail("{}: SentencePiece-style BPE (byte_fallback) from tokenizer.json is not supported yet; convert the model to GGUF", where);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab is missing", where);

  std::map<int64_t, std::pair<std::string, int32_t>> by_id;  // id -> (text, ggml token type)
  for (auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() > 10'000'000) fail("{}: vocab entry '{}' has a bad id {}", where, text, id.dump());
    by_id[id.get<int64_t>()] = {text, 1};  // NORMAL
  }
  if (tok.contains("added_tokens"))
    for (const json& t : tok["added_tokens"]) {
      if (!t.contains("id") || !t["id"].is_number_unsigned() || !t.contains("content") || !t["content"].is_string())
        fail("{}: an added_tokens entry lacks id or content", where);
      by_id[t["id"].get<int64_t>()] = {t["content"].get<std::string>(), t.value("special", false) ? 3 : 4};  // CONTROL / USER_DEFINED
    }
  if (by_id.empty()) fail("{}: the vocabulary is empty", where);
  const int64_t n = by_id.rbegin()->first + 1;
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int32_t> types(size_t(n), 5);  // UNUSED for holes
  std::map<std::string, int64_t> id_of;
  for (auto& [id, tt] : by_id) {
    tokens[size_t(id)] = tt.first;
    types[size_t(id)] = tt.second;
    id_of[tt.first] = id;
  }
  for (int64_t k = 0; k < n; ++k)
    if (types[size_t(k)] == 5) tokens[size_t(k)] = "[PAD" + std::to_string(k) + "]";
  std::vector<std::string> merges;
  if (model.contains("merges"))
    for (const json& mg : model["merges"]) {
      if (mg.is_string()) merges.push_back(mg.get<std::string>());
      else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
        merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
      else fail("{}: a merges entry is neither \"a b\" nor [\"a\", \"b\"]", where);
    }

  set_string("tokenizer.ggml.model", "gpt2");
  set_string("tokenizer.ggml.pre", detect_pre_tokenizer(tok.value("pre_tokenizer", json()), where));
  set_strings("tokenizer.ggml.tokens", tokens);
  std::vector<uint8_t> raw(types.size() * 4);
  std::memcpy(raw.data(), types.data(), raw.size());
  set_numbers("tokenizer.ggml.token_type", GgufType::INT32, raw, types.size());
  set_strings("tokenizer.ggml.merges", merges);

  auto special_id = [&](const char* cfg_key, const char* model_key) -> int64_t {
    if (cfg.is_object() && cfg.contains(cfg_key)) {
      const std::string text = token_content(cfg[cfg_key]);
      if (auto it = id_of.find(text); !text.empty() && it != id_of.end()) return it->second;
    }
    if (model_cfg.contains(model_key)) {
      const json& v = model_cfg[model_key];
      if (v.is_number_unsigned()) return v.get<int64_t>();
      if (v.is_array() && !v.empty() && v[0].is_number_unsigned()) return v[0].get<int64_t>();
    }
    return -1;
  };
  if (const int64_t bos = special_id("bos_token", "bos_token_id"); bos >= 0 && bos < n) set_u32("tokenizer.ggml.bos_token_id", uint64_t(bos));
  if (const int64_t eos = special_id("eos_token", "eos_token_id"); eos >= 0 && eos < n) set_u32("tokenizer.ggml.eos_token_id", uint64_t(eos));
  if (const int64_t pad = special_id("pad_token", "pad_token_id"); pad >= 0 && pad < n) set_u32("tokenizer.ggml.padding_token_id", uint64_t(pad));
  if (cfg.is_object()) {
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) set_bool("tokenizer.ggml.add_bos_token", cfg["add_bos_token"].get<bool>());
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) set_bool("tokenizer.ggml.add_eos_token", cfg["add_eos_token"].get<bool>());
    if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) set_string("tokenizer.chat_template", cfg["chat_template"].get<std::string>());
  }
}

std::unique_ptr<ModelSource> open_model_source(const std::string& path, std::optional<TensorType> quantize_to, ThreadPool* pool) {
  if (fs::is_directory(path)) return HfModel::open(path, quantize_to, pool);
  if (quantize_to) fail("--quant applies to Hugging Face directories; {} is a file (use jevons convert or synth for GGUF types)", path);
  return GgufFile::open(path);
}

}  // namespace jevons
