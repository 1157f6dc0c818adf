// Hugging Face checkpoints: the golden safetensors directories give llama.cpp's
// f32 logits (same bf16 weight values as the GGUFs), FP8 block-scaled weights match
// their BF16 originals, and broken checkpoints fail with messages that name the problem.
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/float16.h"
#include "formats/hf_model.h"
#include "formats/safetensors.h"
#include "quant/quants.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {
namespace fs = std::filesystem;

// The logit comparisons below are at 1e-4 against llama.cpp's f32 runs, so they use
// the exact reference kernels (the fast ones round activations like llama.cpp's
// bf16/q8 paths; tests/test_kernels_golden.cc holds those to llama.cpp's own runs).

std::vector<float> all_logits(Model& model, const std::vector<int32_t>& ids) {
  KvCache cache = model.new_cache(int(ids.size()));
  std::vector<float> logits(ids.size() * size_t(model.config().n_vocab));
  model.forward(cache, ids.data(), int64_t(ids.size()), logits.data(), true);
  return logits;
}

class HfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGolden, MatchesLlamaCppF32) {
  ScopedKernelMode exact(KernelMode::kReference);
  const std::string dir = test::shared_dir() + "/golden/" + GetParam();
  auto src = HfModel::open(dir + "/hf");
  auto model = load_model(*src);
  const auto prompt = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"));
  const auto ids = prompt["token_ids"].get<std::vector<int32_t>>();
  const std::vector<float> logits = all_logits(*model, ids);
  EXPECT_LE(test::max_rel_diff(logits, test::read_f32(dir + "/ref/logits-f32.f32"), model->config().n_vocab), 1e-4);
  // The tokenizer comes from tokenizer.json + tokenizer_config.json.
  auto tok = Tokenizer::from_gguf(*src);
  EXPECT_EQ(tok->encode(prompt["text"].get<std::string>(), tok->add_bos_default()),
            prompt["text_token_ids_full"].get<std::vector<int32_t>>());
  // Greedy continuation agrees with llama.cpp's f32 run.
  const auto greedy = nlohmann::json::parse(test::read_file(dir + "/ref/greedy-f32.json"))["greedy"];
  const auto want = greedy["tokens"].get<std::vector<int32_t>>();
  const int V = model->config().n_vocab;
  KvCache cache = model->new_cache(int(ids.size() + want.size()));
  std::vector<float> last(static_cast<size_t>(V));
  model->forward(cache, ids.data(), int64_t(ids.size()), last.data(), false);
  for (size_t k = 0; k < want.size(); ++k) {
    const int32_t id = argmax(last.data(), V);
    if (id != want[k]) {
      EXPECT_LT(greedy["steps"][k]["margin"].get<double>(), 1e-3) << "step " << k;
      break;
    }
    model->forward(cache, &id, 1, last.data(), false);
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, HfGolden, ::testing::Values("llama-bpe", "qwen2", "qwen3", "deepseek-v2-lite", "deepseek-v3"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

TEST(HfModel, QuantizeOnLoadRunsAtTheChosenType) {
  ScopedKernelMode exact(KernelMode::kReference);
  const std::string dir = test::shared_dir() + "/golden/llama-bpe";
  auto src = HfModel::open(dir + "/hf", TensorType::Q8_0);
  EXPECT_EQ(src->find_tensor("blk.0.attn_q.weight")->type, TensorType::Q8_0);
  EXPECT_GT(src->owned_bytes(), 0u);
  auto model = load_model(*src);
  const auto ids = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"))["token_ids"].get<std::vector<int32_t>>();
  // Same weights llama.cpp quantized to Q8_0 (our quantizer is ggml's for Q8_0): the
  // dequantized-f32 reference, within its own quantization noise.
  EXPECT_LE(test::max_rel_diff(all_logits(*model, ids), test::read_f32(dir + "/ref/logits-q8_0-dequant.f32"), 4096), 1e-3);
}

TEST(HfModel, OnlyMappedBytesCanBeReleased) {
  // Load-time copies into huge pages (kernels/repack.h) are made only where the source
  // can drop its own pages: the safetensors maps, not the arrays converted at load.
  const std::string dir = test::shared_dir() + "/golden/llama-bpe/hf";
  auto mapped = HfModel::open(dir);
  const GgufTensor* t = mapped->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(mapped->can_release_pages(t->data, t->nbytes));
  EXPECT_FALSE(mapped->can_release_pages(t->data, t->nbytes + (size_t(1) << 40)));  // past the map's end
  auto converted = HfModel::open(dir, TensorType::Q8_0);
  const GgufTensor* q = converted->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(converted->can_release_pages(q->data, q->nbytes));
  const std::vector<uint8_t> before(q->data, q->data + q->nbytes);
  converted->release_pages(q->data, q->nbytes);  // a no-op: the converted bytes stay
  EXPECT_EQ(std::memcmp(before.data(), q->data, q->nbytes), 0);
}

// ---- Writing small checkpoints for the FP8 and bad-input tests ----

struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

void write_safetensors(const fs::path& path, const std::vector<StTensor>& ts, int64_t lie_end = -1) {
  nlohmann::json h = nlohmann::json::object();
  size_t off = 0;
  for (const StTensor& t : ts) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, lie_end >= 0 ? size_t(lie_end) : off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  const std::string header = h.dump();
  const uint64_t n = header.size();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(header.data(), std::streamsize(header.size()));
  for (const StTensor& t : ts) f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
}

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("jevons_hf_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Copies a golden HF directory twice: to `fp8`, converting every 2-D BF16 weight to
// FP8 E4M3 with 128x128 block scales, and to `same`, holding those FP8 weights
// dequantized, in BF16. Scales are powers of two (>= block amax / 448), so every
// fp8 x scale is exactly a BF16 value: both checkpoints are the same model.
void write_fp8_copy(const std::string& from, const fs::path& fp8, const fs::path& same) {
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(from + "/" + f, fp8 / f);
    fs::copy_file(from + "/" + f, same / f);
  }
  auto st = SafetensorsFile::open(from + "/model.safetensors");
  std::vector<StTensor> out, out_bf16;
  for (const auto& [name, t] : st->tensors()) {
    if (t.shape.size() != 2 || t.dtype != SafetensorsDtype::BF16 || name.find("embed_tokens") != std::string::npos) {
      out.push_back({name, t.dtype_name, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
      out_bf16.push_back(out.back());
      continue;
    }
    const int64_t rows = t.shape[0], cols = t.shape[1], br = (rows + 127) / 128, bc = (cols + 127) / 128;
    std::vector<float> w(size_t(rows * cols));
    for (size_t i = 0; i < w.size(); ++i) {
      uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      w[i] = bf16_to_float(b);
    }
    std::vector<float> scale(size_t(br * bc), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float& s = scale[size_t((r / 128) * bc + c / 128)];
        s = std::max(s, std::fabs(w[size_t(r * cols + c)]) / 448.0f);
      }
    for (float& s : scale) s = s > 0 ? std::exp2(std::ceil(std::log2(s))) : 1.0f;
    std::vector<uint8_t> q(w.size());
    std::vector<float> scaled(w.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float s = scale[size_t((r / 128) * bc + c / 128)];
        scaled[size_t(r * cols + c)] = s > 0 ? w[size_t(r * cols + c)] / s : 0.0f;
      }
    type_traits(TensorType::F8_E4M3).from_float(scaled.data(), q.data(), int64_t(q.size()));
    out.push_back({name, "F8_E4M3", t.shape, q});
    std::vector<uint8_t> sb(scale.size() * 4);
    std::memcpy(sb.data(), scale.data(), sb.size());
    out.push_back({name + "_scale_inv", "F32", {br, bc}, sb});
    std::vector<uint8_t> deq(w.size() * 2);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = fp8_e4m3_to_float(q[size_t(r * cols + c)]) * scale[size_t((r / 128) * bc + c / 128)];
        const uint16_t b = float_to_bf16(v);
        EXPECT_EQ(bf16_to_float(b), v);  // exact by construction
        std::memcpy(&deq[size_t(r * cols + c) * 2], &b, 2);
      }
    out_bf16.push_back({name, "BF16", t.shape, deq});
  }
  write_safetensors(fp8 / "model.safetensors", out);
  write_safetensors(same / "model.safetensors", out_bf16);
}

// DeepSeek-V3's multi-token prediction layer as its checkpoints hold it
// (model.layers.<num_hidden_layers>.*, num_nextn_predict_layers): loaded as the MTP
// module, not as a trunk layer (the trunk's logits stay bit-identical); a config that
// counts a layer the checkpoint dropped loads without it.
TEST(HfModel, DeepSeekMtpLayerLoadsAsTheModule) {
  const std::string from = test::shared_dir() + "/golden/deepseek-v3/hf";
  if (!fs::exists(from)) GTEST_SKIP() << "missing " << from;
  const fs::path with = temp_dir("mtp"), dropped = temp_dir("mtp_dropped");
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(from + "/config.json"));
  const int n = cfg["num_hidden_layers"].get<int>();
  const int64_t E = cfg["hidden_size"].get<int64_t>();
  cfg["num_nextn_predict_layers"] = 1;
  for (const fs::path& d : {with, dropped}) {
    std::ofstream(d / "config.json") << cfg.dump(1);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(from + "/" + f, d / f);
  }
  fs::copy_file(from + "/model.safetensors", dropped / "model.safetensors");
  auto st = SafetensorsFile::open(from + "/model.safetensors");
  std::vector<StTensor> ts;
  const std::string last = "model.layers." + std::to_string(n - 1) + ".";
  for (const auto& [name, t] : st->tensors()) {
    ts.push_back({name, t.dtype_name, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    if (name.rfind(last, 0) == 0)  // the module's block: a copy of the last layer's
      ts.push_back({"model.layers." + std::to_string(n) + "." + name.substr(last.size()), t.dtype_name, t.shape,
                    std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  }
  auto bf16_values = [](int64_t count, float scale) {
    std::vector<uint8_t> b(size_t(count) * 2);
    for (int64_t i = 0; i < count; ++i) {
      const uint16_t h = float_to_bf16(scale * float((i * 7919) % 17 - 8) / 8.0f + (scale == 0 ? 1.0f : 0.0f));
      std::memcpy(&b[size_t(i) * 2], &h, 2);
    }
    return b;
  };
  const std::string mtp = "model.layers." + std::to_string(n) + ".";
  ts.push_back({mtp + "eh_proj.weight", "BF16", {E, 2 * E}, bf16_values(E * 2 * E, 0.05f)});
  for (const char* norm : {"enorm.weight", "hnorm.weight", "shared_head.norm.weight"})
    ts.push_back({mtp + norm, "BF16", {E}, bf16_values(E, 0.0f)});
  write_safetensors(with / "model.safetensors", ts);

  auto original = HfModel::open(from), with_mtp = HfModel::open(with.string()), without = HfModel::open(dropped.string());
  auto m0 = load_model(*original), m1 = load_model(*with_mtp), m2 = load_model(*without);
  EXPECT_EQ(m1->config().n_mtp, 1);
  EXPECT_EQ(m1->config().n_layer, n);
  EXPECT_EQ(m2->config().n_mtp, 0);
  const std::vector<int32_t> ids = {1, 17, 400, 33, 1024, 5, 77, 300};
  EXPECT_EQ(all_logits(*m1, ids), all_logits(*m0, ids));
  m1->keep_hidden(true);
  all_logits(*m1, ids);
  const std::vector<float> h = m1->hidden();
  KvCache cache = m1->new_mtp_cache(16, TensorType::F32);
  std::vector<float> logits(size_t(m1->config().n_vocab));
  m1->forward_mtp({Model::MtpChunk{&cache, ids.data() + 1, h.data(), int64_t(ids.size()) - 1}}, logits.data());
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  fs::remove_all(with);
  fs::remove_all(dropped);
}

TEST(HfModel, Fp8BlockScaledMatchesBf16) {
  ScopedKernelMode exact(KernelMode::kReference);
  const std::string from = test::shared_dir() + "/golden/deepseek-v3/hf";
  const fs::path dir = temp_dir("fp8"), same_dir = temp_dir("fp8_as_bf16");
  write_fp8_copy(from, dir, same_dir);
  auto fp8 = HfModel::open(dir.string());
  auto bf16 = HfModel::open(from);
  auto same = HfModel::open(same_dir.string());
  // Dequantized weights: within E4M3's half-ulp (2^-4 relative) of the BF16 originals.
  for (const char* name : {"blk.1.attn_q_b.weight", "blk.2.attn_kv_b.weight", "blk.0.ffn_down.weight"}) {
    const GgufTensor* a = fp8->find_tensor(name);
    const GgufTensor* b = bf16->find_tensor(name);
    ASSERT_TRUE(a && b) << name;
    EXPECT_EQ(a->type, TensorType::F8_E4M3);
    const Tensor ta{a->name, a->type, a->dims[0], a->dims[1], a->data, a->block_scale, a->scale_block, a->scale_cols};
    const Tensor tb{b->name, b->type, b->dims[0], b->dims[1], b->data};
    std::vector<float> ra(size_t(ta.cols)), rb(size_t(tb.cols));
    double amax = 0, maxerr = 0;
    for (int64_t r = 0; r < ta.rows; ++r) {
      dequantize_row(ta, r, ra.data());
      dequantize_row(tb, r, rb.data());
      for (int64_t c = 0; c < ta.cols; ++c) {
        amax = std::max(amax, double(std::fabs(rb[c])));
        maxerr = std::max(maxerr, double(std::fabs(ra[c] - rb[c]) / std::max(std::fabs(rb[c]), 1e-3f)));
      }
    }
    EXPECT_LE(maxerr, 0.0625 + 1e-6) << name;
  }
  // Logits: the FP8 checkpoint and the same weights in BF16 agree to f32 rounding;
  // against the original BF16 model they differ (FP8 rounding moves MoE routing
  // much as Q4_0 does), which shows the FP8 weights really are in use.
  auto m8 = load_model(*fp8);
  auto m_same = load_model(*same);
  auto m_orig = load_model(*bf16);
  const std::vector<int32_t> ids = {0, 525, 2386, 299, 2718, 296, 1345, 565};
  const auto l8 = all_logits(*m8, ids);
  EXPECT_LE(test::max_rel_diff(l8, all_logits(*m_same, ids), 4096), 1e-4);
  EXPECT_GT(test::max_rel_diff(l8, all_logits(*m_orig, ids), 4096), 1e-3);
  fs::remove_all(dir);
  fs::remove_all(same_dir);
}

std::string open_error(const fs::path& dir) {
  try {
    HfModel::open(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfModel, BadCheckpointsAreNamed) {
  const std::string from = test::shared_dir() + "/golden/qwen2/hf";
  {  // missing shard
    const fs::path d = temp_dir("shard");
    fs::copy_file(from + "/config.json", d / "config.json");
    std::ofstream(d / "model.safetensors.index.json") << R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}})";
    EXPECT_NE(open_error(d).find("shard model-00002-of-00002.safetensors"), std::string::npos) << open_error(d);
    fs::remove_all(d);
  }
  {  // header length beyond the file
    const fs::path d = temp_dir("header");
    fs::copy_file(from + "/config.json", d / "config.json");
    std::ofstream f(d / "model.safetensors", std::ios::binary);
    const uint64_t n = 1ull << 30;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{}";
    f.close();
    EXPECT_NE(open_error(d).find("header length"), std::string::npos) << open_error(d);
    fs::remove_all(d);
  }
  {  // tensor data out of bounds
    const fs::path d = temp_dir("oob");
    fs::copy_file(from + "/config.json", d / "config.json");
    write_safetensors(d / "model.safetensors", {{"model.norm.weight", "F32", {128}, std::vector<uint8_t>(512)}}, 100000);
    EXPECT_NE(open_error(d).find("model.norm.weight: data"), std::string::npos) << open_error(d);
    fs::remove_all(d);
  }
  {  // dtype inconsistent with the data size
    const fs::path d = temp_dir("dtype");
    fs::copy_file(from + "/config.json", d / "config.json");
    write_safetensors(d / "model.safetensors", {{"model.norm.weight", "F32", {128}, std::vector<uint8_t>(256)}});
    EXPECT_NE(open_error(d).find("256 bytes of data for shape [128] of F32"), std::string::npos) << open_error(d);
    fs::remove_all(d);
  }
  {  // dtype mismatch with the config: a weight stored as integers
    const fs::path d = temp_dir("int");
    fs::copy_file(from + "/config.json", d / "config.json");
    write_safetensors(d / "model.safetensors", {{"model.norm.weight", "I32", {128}, std::vector<uint8_t>(512)}});
    EXPECT_NE(open_error(d).find("dtype I32 cannot hold weights"), std::string::npos) << open_error(d);
    fs::remove_all(d);
  }
  {  // shape mismatch with config.json: caught when the model is built
    const fs::path d = temp_dir("shape");
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) fs::copy_file(from + "/" + f, d / f);
    auto st = SafetensorsFile::open(from + "/model.safetensors");
    std::vector<StTensor> ts;
    for (const auto& [name, t] : st->tensors()) {
      std::vector<int64_t> shape = t.shape;
      if (name == "model.layers.1.mlp.up_proj.weight") std::swap(shape[0], shape[1]);
      ts.push_back({name, t.dtype_name, shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    }
    write_safetensors(d / "model.safetensors", ts);
    auto src = HfModel::open(d.string());
    try {
      load_model(*src);
      FAIL() << "mis-shaped tensor accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.1.ffn_up.weight: expected 128x256, file has 256x128"), std::string::npos) << e.what();
    }
    fs::remove_all(d);
  }
  EXPECT_NE(open_error("/nonexistent-dir").find("not a directory"), std::string::npos);
}

TEST(Safetensors, Fp8Decoding) {
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);    // exp 7, mant 0
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.0f);  // largest finite
  EXPECT_EQ(fp8_e4m3_to_float(0xb8), -1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7f)));
  uint8_t q[3];
  const float x[3] = {1.0f, 1000.0f, 0.3f};
  type_traits(TensorType::F8_E4M3).from_float(x, q, 3);
  EXPECT_EQ(q[0], 0x38);
  EXPECT_EQ(q[1], 0x7e);  // saturates
  EXPECT_NEAR(fp8_e4m3_to_float(q[2]), 0.3f, 0.3f / 16);
}

}  // namespace
}  // namespace jevons
