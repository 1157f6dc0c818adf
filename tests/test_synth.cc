// jevons synth: files load back as the model they claim to be, the same seed
// gives the same bytes whatever the thread count, k-quants fall back like llama.cpp.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {

// A qwen2-shaped toy: biases, GQA, tied embeddings, vocab padded from 512 to 600.
const Preset kTiny = {"tiny", "test", "qwen2", 64, 2, 4, 2, 16, 96, 600, 256, 10000.0f, 1e-6f, true};

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
  // And it runs: finite logits.
  KvCache cache = model->new_cache(8);
  std::vector<float> logits(600);
  const int32_t ids[3] = {1, 403, 407};
  model->forward(cache, ids, 3, logits.data(), false);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
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

TEST(Synth, KQuantsFallBackOnShortRows) {
  const std::string path = tmp("q4k.gguf");
  const SynthResult r = synthesize(options(TensorType::Q4_K, 1, path));
  auto f = GgufFile::open(path);
  // Rows of 64 or 96 elements cannot hold 256-element k-quant blocks: Q4_K -> Q5_0.
  EXPECT_EQ(f->find_tensor("blk.0.ffn_down.weight")->type, TensorType::Q5_0);
  EXPECT_NE(r.notes.find("q4_K -> q5_0"), std::string::npos) << r.notes;
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
    EXPECT_EQ(p.n_head % p.n_head_kv, 0) << p.name;
    EXPECT_EQ(p.head_dim % 2, 0) << p.name;
    EXPECT_NE(find_preset(p.name), nullptr);
  }
  EXPECT_EQ(find_preset("nope"), nullptr);
  EXPECT_EQ(presets().size(), 5u);
}

}  // namespace
}  // namespace jevons
