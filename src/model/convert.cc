#include "model/convert.h"

#include <cstdio>
#include <map>

#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "formats/hf_model.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/synth.h"

namespace jevons {
namespace {

// One output tensor: its float values come row by row from `row` (r -> values).
struct Output {
  std::string name;
  std::vector<int64_t> dims;  // ggml order
  TensorType type;
  std::function<void(int64_t r, float* out)> row;
};

Tensor view(const GgufTensor& t) {
  return Tensor{t.name, t.type, t.dims[0], t.n_elements / t.dims[0], t.data, t.block_scale, t.scale_block, t.scale_cols};
}

}  // namespace

ConvertResult convert_hf_to_gguf(const ConvertOptions& o) {
  ThreadPool pool(o.threads);
  auto src = HfModel::open(o.hf_dir, std::nullopt, &pool);
  const ModelConfig cfg = read_config(*src);
  ConvertResult result;
  std::map<std::string, int> fallbacks;

  auto matrix_type = [&](const GgufTensor& t, int64_t cols) {
    TensorType want = o.type ? *o.type : (t.type == TensorType::F8_E4M3 ? TensorType::BF16 : t.type);
    if (cols % type_traits(want).block_size != 0) {
      const TensorType fb = fallback_type(want);
      ++fallbacks[fmt::format("{} -> {} (row length {})", type_name(want), type_name(fb), cols)];
      want = fb;
      if (cols % type_traits(want).block_size != 0) want = TensorType::F16;
    }
    return want;
  };

  std::vector<Output> outputs;
  const std::string arch = cfg.arch;
  std::map<std::string, std::vector<const GgufTensor*>> experts;  // stacked name -> per-expert tensors
  for (const GgufTensor* tp : src->tensor_list()) {
    const GgufTensor& t = *tp;
    const Tensor v = view(t);
    // Per-expert tensors (blk.L.ffn_X_exps.E.weight) are stacked below.
    if (const size_t p = t.name.find("_exps."); p != std::string::npos) {
      experts[t.name.substr(0, p + 5) + ".weight"].push_back(tp);
      continue;
    }
    if (t.name.find("attn_kv_b") != std::string::npos) {
      // Split per head into attn_k_b {nope, kv_lora, H} (transposed) and attn_v_b {kv_lora, v, H}.
      const MlaConfig& m = cfg.mla;
      const int64_t H = cfg.n_head, nope = m.qk_nope_head_dim, vd = m.v_head_dim, lora = m.kv_lora_rank;
      const std::string blk = t.name.substr(0, t.name.find("attn_kv_b"));
      const TensorType kt = matrix_type(t, nope), vt = matrix_type(t, lora);
      outputs.push_back({blk + "attn_k_b.weight", {nope, lora, H}, kt, [v, nope, vd, lora](int64_t r, float* out) {
                           const int64_t h = r / lora, c = r % lora;  // output row (h, c): k_b[h][:, c]
                           std::vector<float> buf(static_cast<size_t>(lora));
                           for (int64_t i = 0; i < nope; ++i) {
                             dequantize_row(v, h * (nope + vd) + i, buf.data());
                             out[i] = buf[size_t(c)];
                           }
                         }});
      outputs.push_back({blk + "attn_v_b.weight", {lora, vd, H}, vt, [v, nope, vd](int64_t r, float* out) {
                           const int64_t h = r / vd, i = r % vd;
                           dequantize_row(v, h * (nope + vd) + nope + i, out);
                         }});
      continue;
    }
    if (t.dims.size() == 1) {
      outputs.push_back({t.name, t.dims, TensorType::F32, [v](int64_t, float* out) { type_traits(v.type).to_float(v.data, out, v.cols); }});
      continue;
    }
    const bool router = t.name.find("ffn_gate_inp") != std::string::npos;
    const TensorType type = router ? TensorType::F32 : matrix_type(t, v.cols);
    // llama.cpp's llama GGUFs rotate adjacent pairs: permute HF q/k rows within each head.
    int64_t permute_heads = 0;
    if (src->rope_halves()) {
      if (t.name.find("attn_q.weight") != std::string::npos) permute_heads = cfg.n_head;
      if (t.name.find("attn_k.weight") != std::string::npos) permute_heads = cfg.n_head_kv;
    }
    const int64_t hd = permute_heads ? v.rows / permute_heads : 0;
    outputs.push_back({t.name, t.dims, type, [v, permute_heads, hd](int64_t r, float* out) {
                         int64_t from = r;
                         if (permute_heads) {  // new row (h, 2i + j) = old row (h, j * hd/2 + i)
                           const int64_t h = r / hd, k = r % hd;
                           from = h * hd + (k % 2) * (hd / 2) + k / 2;
                         }
                         dequantize_row(v, from, out);
                       }});
  }
  for (auto& [name, list] : experts) {
    std::sort(list.begin(), list.end(), [](auto* a, auto* b) {
      auto idx = [](const std::string& n) { return std::stoi(n.substr(n.find("_exps.") + 6)); };
      return idx(a->name) < idx(b->name);
    });
    std::vector<Tensor> views;
    for (auto* t : list) views.push_back(view(*t));
    const int64_t cols = views[0].cols, rows = views[0].rows;
    for (const Tensor& e : views)
      if (e.cols != cols || e.rows != rows) fail("{}: experts of {} differ in shape", o.hf_dir, name);
    outputs.push_back({name, {cols, rows, int64_t(views.size())}, matrix_type(*list[0], cols),
                       [views, rows](int64_t r, float* out) { dequantize_row(views[size_t(r / rows)], r % rows, out); }});
  }

  GgufWriter w;
  for (const auto& [key, value] : src->metadata())
    if (key.rfind("jevons.", 0) != 0) w.set_value(key, value);
  if (arch == "deepseek2") {  // the current llama.cpp MLA layout
    const MlaConfig& m = cfg.mla;
    w.set_u32("deepseek2.attention.head_count_kv", 1);
    w.set_u32("deepseek2.attention.key_length", uint32_t(m.kv_lora_rank + m.qk_rope_head_dim));
    w.set_u32("deepseek2.attention.value_length", uint32_t(m.kv_lora_rank));
    w.set_u32("deepseek2.attention.key_length_mla", uint32_t(m.qk_nope_head_dim + m.qk_rope_head_dim));
    w.set_u32("deepseek2.attention.value_length_mla", uint32_t(m.v_head_dim));
  }
  w.set_u32("general.quantization_version", 2);
  w.set_string("general.converted_by", "jevons convert");

  size_t done = 0;
  for (const Output& out : outputs) {
    int64_t rows = 1;
    for (size_t k = 1; k < out.dims.size(); ++k) rows *= out.dims[k];
    const int64_t cols = out.dims[0];
    w.add_tensor_generated(out.name, out.type, out.dims, [&, rows, cols](uint8_t* data, size_t) {
      const size_t rb = row_bytes(out.type, cols);
      pool.parallel_for(rows, [&](int64_t r0, int64_t r1) {
        std::vector<float> buf(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
          out.row(r, buf.data());
          type_traits(out.type).from_float(buf.data(), data + size_t(r) * rb, cols);
        }
      });
      if (o.progress) o.progress(++done, outputs.size());
    });
  }
  OutputFile file(o.out_path);  // renamed into place when whole: the input is never touched
  w.write_to([&](const uint8_t* p, size_t n) {
    file.write(p, n);
    result.bytes += n;
  });
  file.commit();
  result.tensors = outputs.size();
  for (const auto& [what, count] : fallbacks) result.notes += fmt::format("{} tensors {}; ", count, what);
  return result;
}

}  // namespace jevons
