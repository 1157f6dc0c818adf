// jevons synth: files load back as the model they claim to be, the same seed
// gives the same bytes whatever the thread count, k-quants fall back like llama.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/float16.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "model/synth.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {

// A qwen2-shaped toy: biases, GQA, tied embeddings, vocab padded from 512 to 600.
const Preset kTiny = {.name = "tiny", .description = "test", .arch = "qwen2", .n_embd = 64, .n_layer = 2, .n_head = 4,
                      .n_head_kv = 2, .head_dim = 16, .n_ff = 96, .n_vocab = 600, .n_ctx = 256, .rms_eps = 1e-6f,
                      .tied_embeddings = true};

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("jevons_synth_" + std::to_string(::getpid()) + "_" + name)).string();
}

SynthOptions options(TensorType type, int threads, const std::string& out) {
  SynthOptions o;
  o.preset = &kTiny;
  o.type = type;
  o.vocab_path = test::shared_dir() + "/models/stories260K/stories260K-f32.gguf";
  o.out_path = out;
  o.seed = 5;
  o.threads = threads;
  return o;
}

// Three tokens through a 600-token-vocabulary model give finite logits.
void expect_finite_logits(Model& model) {
  KvCache cache = model.new_cache(8);
  std::vector<float> logits(600);
  const int32_t ids[3] = {1, 403, 407};
  model.forward(cache, ids, 3, logits.data(), false);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(Synth, WritesALoadableModelOfTheRightShape) {
  const std::string path = tmp("q8.gguf");
  size_t progress_calls = 0;
  SynthOptions o = options(TensorType::Q8_0, 2, path);
  o.progress = [&](size_t done, size_t total, uint64_t) {
    ++progress_calls;
    EXPECT_LE(done, total);
  };
  const SynthResult r = synthesize(o);
  auto f = GgufFile::open(path);
  EXPECT_EQ(r.file_bytes, f->file_size());
  EXPECT_EQ(progress_calls, f->tensors().size());
  auto model = load_model(*f);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_EQ(c.n_vocab, 600);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim_k, 16);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(f->find_tensor("blk.1.attn_q.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(f->find_tensor("blk.1.attn_q.bias")->type, TensorType::F32);
  // The vocabulary is stories260K's, padded with unused tokens up to 600.
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->n_vocab(), 600);
  EXPECT_EQ(tok->encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  expect_finite_logits(*model);  // and it runs
  std::filesystem::remove(path);
}

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
  const std::string a = tmp("a.gguf"), b = tmp("b.gguf");
  synthesize(options(TensorType::Q4_0, 1, a));
  synthesize(options(TensorType::Q4_0, 3, b));
  EXPECT_EQ(test::read_file(a), test::read_file(b));
  SynthOptions other = options(TensorType::Q4_0, 1, b);
  other.seed = 6;
  synthesize(other);
  EXPECT_NE(test::read_file(a), test::read_file(b));
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST(Synth, FloatMatricesHoldBf16ValuesUnlessFullPrecision) {
  // As an F16 file converted from a BF16 release: every F16 matrix value is a BF16
  // value, so the model runs the BF16 kernels where the CPU has the dot product;
  // bf16_values = false gives F16's full precision (most values are not BF16 values).
  const std::string path = tmp("f16.gguf");
  for (bool bf16_values : {true, false}) {
    SCOPED_TRACE(bf16_values);
    SynthOptions o = options(TensorType::F16, 2, path);
    o.bf16_values = bf16_values;
    synthesize(o);
    auto f = GgufFile::open(path);
    const GgufTensor* q = f->find_tensor("blk.1.attn_q.weight");
    ASSERT_EQ(q->type, TensorType::F16);
    EXPECT_EQ(all_fp16_are_bf16_values(q->data, q->nbytes / 2), bf16_values);
    size_t not_bf16 = 0;
    for (size_t i = 0; i < q->nbytes / 2; ++i) {
      uint16_t h;
      std::memcpy(&h, q->data + 2 * i, 2);
      not_bf16 += !fp16_is_bf16_value(h);
    }
    EXPECT_EQ(not_bf16 > q->nbytes / 2 / 2, !bf16_values) << not_bf16;
    auto model = load_model(*f);
    EXPECT_EQ(model->f16_as_bf16_bytes() > 0, bf16_values && repacking_enabled() && matmul_uses_bf16_dot());
    EXPECT_EQ(model->f16_rounded_bytes(), 0u);
    expect_finite_logits(*model);
  }
  std::filesystem::remove(path);
}

TEST(Synth, KQuantsFallBackOnShortRows) {
  const std::string path = tmp("q4k.gguf");
  const SynthResult r = synthesize(options(TensorType::Q4_K, 1, path));
  auto f = GgufFile::open(path);
  // Rows of 64 or 96 elements cannot hold 256-element k-quant blocks: Q4_K -> Q5_0.
  EXPECT_EQ(f->find_tensor("blk.0.ffn_down.weight")->type, TensorType::Q5_0);
  EXPECT_NE(r.notes.find("q4_K -> q5_0"), std::string::npos) << r.notes;
  std::filesystem::remove(path);
}

// --type q4_k_m follows llama.cpp's recipe. Its rule checked against llama.cpp's own
// output: golden/llama-bpe/gguf/model-q4_k_m.gguf (4 layers) has the more-bits types in
// blk.2 and blk.3 only.
TEST(Synth, Q4KMMixesQ6KWhereLlamaCppDoes) {
  EXPECT_TRUE(use_more_bits(2, 4) && use_more_bits(3, 4));
  EXPECT_FALSE(use_more_bits(0, 4) || use_more_bits(1, 4));
  // Rows of 256 and 512 elements: k-quants without fallbacks. 8 layers: llama.cpp gives
  // more bits to 0 (first eighth), 7 (last eighth), 3 and 6 ((l - 1) % 3 == 2).
  const Preset shape = {.name = "tiny-256", .description = "test", .arch = "qwen2", .n_embd = 256, .n_layer = 8,
                        .n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_ff = 512, .n_vocab = 600, .n_ctx = 256,
                        .rms_eps = 1e-6f, .tied_embeddings = true};
  const std::string path = tmp("q4km.gguf");
  SynthOptions o = options(TensorType::Q8_0, 2, path);  // the type is ignored with the mix
  o.preset = &shape;
  o.q4_k_m = true;
  const SynthResult r = synthesize(o);
  EXPECT_TRUE(r.notes.empty()) << r.notes;
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_uint("general.file_type"), 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  EXPECT_EQ(f->find_tensor("token_embd.weight")->type, TensorType::Q6_K);  // tied: it is also the output
  for (int l = 0; l < 8; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const TensorType more = (l == 0 || l == 3 || l == 6 || l == 7) ? TensorType::Q6_K : TensorType::Q4_K;
    EXPECT_EQ(f->find_tensor(b + "attn_v.weight")->type, more) << l;
    EXPECT_EQ(f->find_tensor(b + "ffn_down.weight")->type, more) << l;
    for (const char* other : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"})
      EXPECT_EQ(f->find_tensor(b + other)->type, TensorType::Q4_K) << b << other;
  }
  expect_finite_logits(*load_model(*f));  // it loads and runs
  std::filesystem::remove(path);
}

// A DeepSeek-shaped toy (MLA with q-LoRA, sigmoid group routing) loads and runs.
TEST(Synth, DeepSeekShapesLoadAndRun) {
  const Preset tiny_ds = {.name = "tiny-ds", .description = "test", .arch = "deepseek2", .n_embd = 64, .n_layer = 3,
                          .n_head = 4, .n_ff = 96, .n_vocab = 512, .n_ctx = 256, .rms_eps = 1e-6f, .q_lora_rank = 32,
                          .kv_lora_rank = 32, .qk_nope = 16, .qk_rope = 8, .v_head = 16, .n_expert = 8, .n_expert_used = 2,
                          .n_shared = 1, .n_ff_expert = 32, .first_dense = 1, .n_group = 4, .topk_group = 2,
                          .sigmoid_gating = true, .norm_topk = true, .routed_scale = 2.5f, .yarn_factor = 4.0f,
                          .yarn_mscale_all_dim = 1.0f, .yarn_orig_ctx = 64};
  const std::string path = tmp("ds.gguf");
  SynthOptions o = options(TensorType::Q8_0, 2, path);
  o.preset = &tiny_ds;
  synthesize(o);
  auto f = GgufFile::open(path);
  auto model = load_model(*f);
  const ModelConfig& c = model->config();
  EXPECT_TRUE(c.is_mla());
  EXPECT_EQ(c.moe.n_expert, 8);
  EXPECT_EQ(c.moe.gating, MoeGating::kSigmoid);
  EXPECT_EQ(c.kv_bytes_per_token(), size_t(3) * (32 + 8) * 4);  // latent + rope key only
  KvCache cache = model->new_cache(8);
  std::vector<float> logits(512);
  const int32_t ids[3] = {1, 403, 407};
  model->forward(cache, ids, 3, logits.data(), false);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  std::filesystem::remove(path);
}

// An experts mix (llama-quantize's MXFP4_MOE shape): routed experts MXFP4, every other
// matrix Q8_0; the fast and the reference kernels agree on it.
TEST(Synth, ExpertsTypeMixesLikeMxfp4Moe) {
  const Preset tiny_moe = {.name = "tiny-moe", .description = "test", .arch = "deepseek2", .n_embd = 64, .n_layer = 2,
                           .n_head = 4, .n_ff = 96, .n_vocab = 512, .n_ctx = 256, .rms_eps = 1e-6f, .q_lora_rank = 32,
                           .kv_lora_rank = 32, .qk_nope = 16, .qk_rope = 8, .v_head = 16, .n_expert = 4, .n_expert_used = 2,
                           .n_shared = 1, .n_ff_expert = 64, .first_dense = 1, .n_group = 1, .topk_group = 1};
  const std::string path = tmp("mxfp4moe.gguf");
  SynthOptions o = options(TensorType::Q8_0, 2, path);
  o.preset = &tiny_moe;
  o.experts_type = TensorType::MXFP4;
  synthesize(o);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_uint("general.file_type"), 38u);  // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
  for (const char* t : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
    EXPECT_EQ(f->find_tensor(std::string("blk.1.") + t + ".weight")->type, TensorType::MXFP4) << t;
  EXPECT_EQ(f->find_tensor("blk.1.ffn_gate_shexp.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(f->find_tensor("blk.0.ffn_up.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(f->find_tensor("output.weight")->type, TensorType::Q8_0);
  auto model = load_model(*f);
  const int32_t ids[3] = {1, 403, 407};
  std::vector<float> fast(512 * 3), exact(512 * 3);
  KvCache c1 = model->new_cache(8), c2 = model->new_cache(8);
  model->forward(c1, ids, 3, fast.data(), true);
  {
    const ScopedKernelMode reference(KernelMode::kReference);
    model->forward(c2, ids, 3, exact.data(), true);
  }
  // Q8_0 activation rounding only (the README of the golden set: <= 0.4 of a row's std).
  EXPECT_LE(test::max_rel_diff(fast, exact, 512, nullptr), 0.4);
  std::filesystem::remove(path);

  o.preset = &kTiny;  // no routed experts: refused
  EXPECT_THROW(synthesize(o), Error);
}

// IQ4_XS and the TQ types need rows of 256: shorter ones fall back as llama.cpp's do.
TEST(Synth, NewTypesFallBackOnShortRows) {
  const std::string path = tmp("iq4xs.gguf");
  SynthOptions o = options(TensorType::IQ4_XS, 2, path);
  const SynthResult r = synthesize(o);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_uint("general.file_type"), 30u);
  EXPECT_EQ(f->find_tensor("blk.0.ffn_down.weight")->type, TensorType::IQ4_NL);
  EXPECT_NE(r.notes.find("iq4_xs -> iq4_nl"), std::string::npos) << r.notes;
  expect_finite_logits(*load_model(*f));
  std::filesystem::remove(path);
}

TEST(Synth, RejectsAVocabLargerThanThePreset) {
  SynthOptions o = options(TensorType::Q8_0, 1, tmp("big.gguf"));
  o.vocab_path = test::shared_dir() + "/tokenizers/vocab/ggml-vocab-gpt-2.gguf";  // 50257 > 600
  EXPECT_THROW(synthesize(o), Error);
  EXPECT_FALSE(std::filesystem::exists(o.out_path));
}

TEST(Synth, PresetsHaveConsistentShapes) {
  for (const Preset& p : presets()) {
    if (std::string(p.arch) == "deepseek2") {
      EXPECT_GT(p.kv_lora_rank, 0) << p.name;
      EXPECT_EQ(p.qk_rope % 2, 0) << p.name;
      EXPECT_EQ(p.n_expert % p.n_group, 0) << p.name;
      EXPECT_LE(p.n_expert_used, p.topk_group * (p.n_expert / p.n_group)) << p.name;
    } else {
      ASSERT_GT(p.n_head_kv, 0) << p.name;
      EXPECT_EQ(p.n_head % p.n_head_kv, 0) << p.name;
      EXPECT_EQ(p.head_dim % 2, 0) << p.name;
    }
    EXPECT_NE(find_preset(p.name), nullptr);
  }
  EXPECT_EQ(find_preset("nope"), nullptr);
  EXPECT_NE(find_preset("deepseek-v2-lite"), nullptr);
  EXPECT_NE(find_preset("deepseek-v3-mini"), nullptr);
}

}  // namespace
}  // namespace jevons

namespace jevons {
namespace {

// The check: DeepSeek-V3's KV cache is (kv_lora_rank 512 + rope 64) x element
// size x 61 layers per token (metadata as llama.cpp writes it for the real model).
TEST(Synth, DeepSeekV3KvBytesPerToken) {
  GgufWriter w;
  const std::string a = "deepseek2.";
  w.set_string("general.architecture", "deepseek2");
  w.set_u32(a + "block_count", 61);
  w.set_u32(a + "embedding_length", 7168);
  w.set_u32(a + "feed_forward_length", 18432);
  w.set_u32(a + "attention.head_count", 128);
  w.set_u32(a + "attention.head_count_kv", 1);
  w.set_u32(a + "attention.key_length", 576);
  w.set_u32(a + "attention.value_length", 512);
  w.set_u32(a + "attention.key_length_mla", 192);
  w.set_u32(a + "attention.value_length_mla", 128);
  w.set_u32(a + "attention.q_lora_rank", 1536);
  w.set_u32(a + "attention.kv_lora_rank", 512);
  w.set_u32(a + "rope.dimension_count", 64);
  w.set_u32(a + "expert_count", 256);
  w.set_u32(a + "expert_used_count", 8);
  w.set_u32(a + "expert_feed_forward_length", 2048);
  w.set_u32(a + "expert_group_count", 8);
  w.set_u32(a + "expert_group_used_count", 4);
  const std::string path = tmp("v3meta.gguf");
  w.write(path);
  auto f = GgufFile::open(path);
  const ModelConfig c = read_config(*f);
  EXPECT_EQ(c.kv_bytes_per_token(), size_t(512 + 64) * sizeof(float) * 61);
  EXPECT_EQ(c.mla.qk_nope_head_dim, 128);
  EXPECT_EQ(c.mla.v_head_dim, 128);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace jevons
