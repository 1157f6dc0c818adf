// jevons convert: HF directory -> GGUF that reproduces llama.cpp's logits, in
// llama.cpp's tensor layout (so other engines load it too).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/convert.h"
#include "formats/gguf.h"
#include "kernels/matmul.h"
#include "model/model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {
namespace fs = std::filesystem;

struct Case {
  std::string model, type, ref;
};

class Convert : public ::testing::TestWithParam<Case> {};

TEST_P(Convert, GgufReproducesLlamaCpp) {
  ScopedKernelMode exact(KernelMode::kReference);
  const Case& c = GetParam();
  const std::string dir = test::shared_dir() + "/golden/" + c.model;
  const std::string out = (fs::temp_directory_path() / ("jevons_convert_" + std::to_string(::getpid()) + ".gguf")).string();
  ConvertOptions o;
  o.hf_dir = dir + "/hf";
  o.out_path = out;
  o.threads = 2;
  if (!c.type.empty()) o.type = type_traits_by_name(c.type)->type;
  convert_hf_to_gguf(o);

  auto f = GgufFile::open(out);
  auto model = load_model(*f);
  const auto prompt = nlohmann::json::parse(test::read_file(dir + "/ref/prompt.json"));
  const auto ids = prompt["token_ids"].get<std::vector<int32_t>>();
  KvCache cache = model->new_cache(int(ids.size()));
  const int V = model->config().n_vocab;
  std::vector<float> logits(ids.size() * size_t(V));
  model->forward(cache, ids.data(), int64_t(ids.size()), logits.data(), true);
  const std::string ref_bytes = test::read_file(dir + "/ref/logits-" + c.ref + ".f32");
  std::vector<float> ref(ref_bytes.size() / 4);
  std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
  EXPECT_LE(test::max_rel_diff(logits, ref, V), 1e-4);
  // The vocabulary went along.
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->encode(prompt["text"].get<std::string>(), tok->add_bos_default()),
            prompt["text_token_ids_full"].get<std::vector<int32_t>>());
  if (c.model.rfind("deepseek", 0) == 0) {  // llama.cpp's current MLA layout
    EXPECT_NE(f->find_tensor("blk.0.attn_k_b.weight"), nullptr);
    EXPECT_NE(f->find_tensor("blk.1.ffn_gate_exps.weight"), nullptr);
    EXPECT_EQ(f->get_uint("deepseek2.attention.head_count_kv"), 1u);
  }
  fs::remove(out);
}

INSTANTIATE_TEST_SUITE_P(Shared, Convert,
                         ::testing::Values(Case{"llama-bpe", "", "f32"}, Case{"llama-bpe", "q8_0", "q8_0-dequant"},
                                           Case{"qwen2", "", "f32"}, Case{"qwen3", "", "f32"},
                                           Case{"deepseek-v2-lite", "", "f32"}, Case{"deepseek-v3", "", "f32"}),
                         [](const auto& info) {
                           std::string s = info.param.model + (info.param.type.empty() ? "" : "_" + info.param.type);
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace jevons
