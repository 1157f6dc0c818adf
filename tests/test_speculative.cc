// Speculative decoding (engine/speculative.h): proposals verified by the target in one
// pass keep greedy output identical and sampled output distributed as the target's;
// rejected proposals leave no KV and no penalty history behind.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <unistd.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/speculative.h"
#include "formats/gguf.h"
#include "formats/hf_model.h"
#include "meter/meter.h"
#include "model/model.h"
#include "model/synth.h"
#include "runtime/sampler.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace jevons {
namespace {

constexpr int kB = KvBlockPool::kBlockTokens;

struct Loaded {
  std::unique_ptr<ModelSource> src;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
};

Loaded load(const std::string& path, ThreadPool& threads) {
  Loaded l;
  l.src = open_model_source(path);
  l.model = load_model(*l.src);
  l.tok = Tokenizer::from_gguf(*l.src);
  l.model->set_thread_pool(&threads);
  return l;
}

meter::Meter& estimate_meter() {
  static meter::Meter* m = [] {
    meter::Overrides mo;
    mo.values["energy_source"] = "estimate";
    return new meter::Meter(meter::resolve_config(mo));
  }();
  return *m;
}

engine::GenParams greedy_params(int max_tokens) {
  engine::GenParams gp;
  gp.sampling.temperature = 0;
  gp.max_tokens = max_tokens;
  gp.split_reasoning = false;
  return gp;
}

// Runs every prompt (choice i with params[i]) through one engine; results by choice.
std::vector<engine::SequenceResult> generate(Loaded& m, const engine::EngineOptions& eo,
                                             const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<engine::GenParams>& params,
                                             std::unique_ptr<engine::Proposer> proposer = nullptr,
                                             engine::EngineStats* stats = nullptr) {
  engine::Engine eng(*m.model, *m.tok, estimate_meter(), eo);
  if (proposer) eng.set_proposer(std::move(proposer));
  std::vector<engine::SequenceResult> res(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::SequenceSink sink;
    sink.on_finish = [&res, i](engine::SequenceResult&& r) { res[i] = std::move(r); };
    eng.add(std::make_unique<engine::Sequence>(prompts[i], params[i], *m.tok, std::move(sink), int(i)));
  }
  eng.run_until_idle();
  EXPECT_EQ(eng.pool().used_blocks(), 0u) << "blocks leaked";
  if (stats) *stats = eng.stats();
  return res;
}

// Proposes each sequence's known continuation (script[choice]) with every
// `wrong_every`-th proposed position made wrong, so verification both accepts and rejects.
class ScriptProposer : public engine::Proposer {
 public:
  ScriptProposer(std::vector<std::vector<int32_t>> script, int wrong_every, int n_vocab)
      : script_(std::move(script)), wrong_every_(wrong_every), n_vocab_(n_vocab) {}
  void propose(const std::vector<engine::Sequence*>& seqs, const std::vector<int>& k, std::vector<engine::Draft>& out) override {
    out.assign(seqs.size(), {});
    for (size_t i = 0; i < seqs.size(); ++i) {
      const std::vector<int32_t>& s = script_[size_t(seqs[i]->choice())];
      for (size_t pos = seqs[i]->tokens().size(); int(out[i].tokens.size()) < k[i]; ++pos) {
        const int32_t t = pos < s.size() ? s[pos] : int32_t(pos % size_t(n_vocab_));
        out[i].tokens.push_back(pos % size_t(wrong_every_) == 0 ? (t + 1) % n_vocab_ : t);
      }
    }
  }

 private:
  std::vector<std::vector<int32_t>> script_;
  int wrong_every_, n_vocab_;
};

std::vector<int32_t> prompt_of(int n, int salt, int n_vocab) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(int32_t((i * 7919 + salt * 104729 + 3) % (n_vocab - 1)));
  return v;
}

TEST(PromptLookup, TheLatestLongestMatchProposesWhatFollowedIt) {
  const std::vector<int32_t> t = {1, 2, 3, 9, 4, 2, 3, 7, 5, 1, 2, 3};
  EXPECT_EQ(engine::prompt_lookup(t, 2, 1, 3), (std::vector<int32_t>{9, 4}));  // [1 2 3] at 0 beats [2 3] at 5
  EXPECT_EQ(engine::prompt_lookup(t, 2, 1, 2), (std::vector<int32_t>{7, 5}));  // [2 3]: the latest, at 5
  EXPECT_EQ(engine::prompt_lookup(t, 8, 1, 2), (std::vector<int32_t>{7, 5, 1, 2, 3}));  // up to the end
  EXPECT_TRUE(engine::prompt_lookup({1, 2, 3, 4}, 4, 1, 3).empty());
  EXPECT_TRUE(engine::prompt_lookup(t, 0, 1, 3).empty());
  EXPECT_TRUE(engine::prompt_lookup(t, 2, 4, 4).empty());  // [9 ... 3] never occurred before
}

// ---- greedy: exactly the tokens of plain greedy, on every golden architecture ----

class SpeculativeGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SpeculativeGolden, GreedyGivesPlainGreedyTokensInAMixedBatch) {
  const std::string path = test::shared_dir() + "/golden/" + GetParam() + "/gguf/model-bf16.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << path;
  ThreadPool threads(2);
  Loaded m = load(path, threads);
  const int V = m.model->config().n_vocab;
  engine::EngineOptions eo;
  eo.kv_type = TensorType::F32;
  eo.parallel = 4;
  eo.n_ctx = 96;
  eo.kv_budget_bytes = 4 * (96 / kB) * KvBlockPool::block_bytes(m.model->config().n_layer, m.model->config().cache_k_dim,
                                                                m.model->config().cache_v_dim);
  eo.prefill_chunk = 8;  // prompts still prefilling while others verify
  eo.prefill_chunk_idle = 8;
  eo.spec.method = engine::SpecMethod::kNone;
  eo.spec.max_draft = 5;
  eo.spec.adaptive = false;
  // Four sequences: prompts of different lengths, one with speculation off, one with a
  // repeat penalty (whose history must roll back with rejected proposals).
  std::vector<std::vector<int32_t>> prompts = {prompt_of(5, 1, V), prompt_of(23, 2, V), prompt_of(12, 3, V), prompt_of(40, 4, V)};
  std::vector<engine::GenParams> params(4, greedy_params(24));
  params[2].speculate = false;
  params[3].sampling.repeat_penalty = 1.3f;
  const std::vector<engine::SequenceResult> plain = generate(m, eo, prompts, params);
  std::vector<std::vector<int32_t>> script;
  for (size_t i = 0; i < prompts.size(); ++i) {
    script.push_back(prompts[i]);
    script.back().insert(script.back().end(), plain[i].tokens.begin(), plain[i].tokens.end());
    ASSERT_EQ(plain[i].drafted_tokens, 0);
  }
  engine::EngineStats st;
  const std::vector<engine::SequenceResult> spec =
      generate(m, eo, prompts, params, std::make_unique<ScriptProposer>(script, 4, V), &st);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(spec[i].tokens, plain[i].tokens) << "sequence " << i;
    EXPECT_EQ(spec[i].finish_reason, plain[i].finish_reason) << "sequence " << i;
  }
  EXPECT_EQ(spec[2].drafted_tokens, 0) << "speculation was off for this request";
  EXPECT_GT(spec[0].accepted_tokens, 0);
  EXPECT_LT(spec[0].accepted_tokens, spec[0].drafted_tokens) << "every 4th proposal is wrong";
  EXPECT_EQ(st.drafted_tokens, spec[0].drafted_tokens + spec[1].drafted_tokens + spec[3].drafted_tokens);
}

INSTANTIATE_TEST_SUITE_P(Golden, SpeculativeGolden, ::testing::Values("llama-bpe", "qwen2", "qwen3", "deepseek-v2-lite", "deepseek-v3"),
                         [](const auto& info) { return std::string(info.param == "llama-bpe" ? "llama" : info.param == "deepseek-v2-lite" ? "deepseek_v2" : info.param == "deepseek-v3" ? "deepseek_v3" : info.param); });

// ---- prompt lookup on real text ----

TEST(Speculative, PromptLookupOnStories260KIsPlainGreedyAndPaysOnRepeats) {
  const std::string path = test::shared_dir() + "/models/stories260K/stories260K-f32.gguf";
  ThreadPool threads(2);
  Loaded m = load(path, threads);
  const std::vector<int32_t> prompt = m.tok->encode("Once upon a time", true);
  engine::EngineOptions eo;
  eo.parallel = 1;
  eo.n_ctx = 256;
  eo.kv_type = TensorType::F32;
  const std::vector<engine::SequenceResult> plain = generate(m, eo, {prompt}, {greedy_params(200)});
  eo.spec.method = engine::SpecMethod::kPromptLookup;
  eo.spec.adaptive = false;  // (on this tiny model a pass costs about the same per token: adaptation would stop)
  const std::vector<engine::SequenceResult> spec = generate(m, eo, {prompt}, {greedy_params(200)});
  EXPECT_EQ(spec[0].tokens, plain[0].tokens);
  EXPECT_EQ(m.tok->decode(spec[0].tokens), m.tok->decode(plain[0].tokens));
  // The story repeats whole phrases ("didn't know what to do"): lookup finds them.
  EXPECT_GT(spec[0].accepted_tokens, 20) << "drafted " << spec[0].drafted_tokens;
}

// ---- a draft model ----

TEST(Speculative, DraftModelGreedyIsPlainGreedy) {
  const std::string dir = test::shared_dir() + "/golden/qwen2/gguf/";
  ThreadPool threads(2);
  Loaded target = load(dir + "model-bf16.gguf", threads);
  Loaded draft = load(dir + "model-q8_0.gguf", threads);
  engine::check_same_vocabulary(*target.tok, *draft.tok);
  const int V = target.model->config().n_vocab;
  engine::EngineOptions eo;
  eo.kv_type = TensorType::F32;
  eo.parallel = 2;
  eo.n_ctx = 80;
  eo.kv_budget_bytes = 0;
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(9, 5, V), prompt_of(30, 6, V)};
  const std::vector<engine::GenParams> params(2, greedy_params(30));
  eo.kv_budget_bytes = 2 * (80 / kB) * KvBlockPool::block_bytes(target.model->config().n_layer, target.model->config().cache_k_dim,
                                                                target.model->config().cache_v_dim);
  const std::vector<engine::SequenceResult> plain = generate(target, eo, prompts, params);
  eo.spec.method = engine::SpecMethod::kDraftModel;
  eo.spec.draft = draft.model.get();
  eo.spec.max_draft = 4;
  engine::EngineStats st;
  const std::vector<engine::SequenceResult> spec = generate(target, eo, prompts, params, nullptr, &st);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(spec[i].tokens, plain[i].tokens) << "sequence " << i;
  // Q8_0 keeps most of the f32 argmaxes on this model (golden/README.md): most proposals hold.
  EXPECT_GT(st.accepted_tokens, st.drafted_tokens / 3) << st.accepted_tokens << " of " << st.drafted_tokens;
}

// Sizes too far apart (4096 and 512 tokens; 32000 and 32256), and ids whose text differs.
TEST(Speculative, ADraftWithAnotherVocabularyIsRefused) {
  ThreadPool threads(1);
  Loaded qwen = load(test::shared_dir() + "/golden/qwen2/gguf/model-q8_0.gguf", threads);
  Loaded stories = load(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf", threads);
  auto vocab = [](const std::string& name) {
    return Tokenizer::from_gguf(*GgufFile::open(test::shared_dir() + "/tokenizers/vocab/ggml-vocab-" + name + ".gguf"));
  };
  const auto llama = vocab("llama-spm"), coder = vocab("deepseek-coder");
  auto spm = [](std::vector<std::string> tokens) {
    VocabSpec v;
    v.model = VocabSpec::Model::Spm;
    v.add_bos = false;
    v.tokens = std::move(tokens);
    return Tokenizer::from_vocab(v);
  };
  const auto abc = spm({"a", "b", "c", "d"}), abx = spm({"a", "b", "x", "d", "e"});
  auto message = [](const Tokenizer& a, const Tokenizer& b) -> std::string {
    try {
      engine::check_same_vocabulary(a, b);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(*qwen.tok, *stories.tok).find("512 tokens"), std::string::npos) << message(*qwen.tok, *stories.tok);
  EXPECT_NE(message(*llama, *coder).find("32256 tokens"), std::string::npos) << message(*llama, *coder);
  const std::string m = message(*abc, *abx);  // sizes may differ a little (padding), ids may not
  EXPECT_NE(m.find("differs from the target's at token 2 ('c' in the target, 'x' in the draft)"), std::string::npos) << m;
  EXPECT_EQ(message(*qwen.tok, *qwen.tok), "");
}

TEST(Speculative, BadSettingsAreRefused) {
  ThreadPool threads(1);
  Loaded m = load(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf", threads);
  auto engine_with = [&](engine::SpeculativeOptions sp) {
    engine::EngineOptions eo;
    eo.n_ctx = 64;
    eo.spec = sp;
    engine::Engine eng(*m.model, *m.tok, estimate_meter(), eo);
  };
  engine::SpeculativeOptions sp;
  sp.method = engine::SpecMethod::kPromptLookup;
  sp.max_draft = 0;
  EXPECT_THROW(engine_with(sp), Error);
  sp.max_draft = 65;
  EXPECT_THROW(engine_with(sp), Error);
  sp.max_draft = 4;
  sp.ngram_min = 0;
  EXPECT_THROW(engine_with(sp), Error);
  sp.ngram_min = 1;
  EXPECT_NO_THROW(engine_with(sp));
  sp.method = engine::SpecMethod::kDraftModel;  // no draft model given
  EXPECT_THROW(engine_with(sp), Error);
  EXPECT_THROW(engine::parse_spec_method("eagle"), Error);
}

// ---- rollback ----

// Proposes 40 wrong tokens each step (past two block boundaries) and checks, at each
// proposal, that the sequence holds only the blocks of its computed tokens.
class WrongProposer : public engine::Proposer {
 public:
  explicit WrongProposer(KvBlockPool* const* pool) : pool_(pool) {}
  void propose(const std::vector<engine::Sequence*>& seqs, const std::vector<int>& k, std::vector<engine::Draft>& out) override {
    out.assign(seqs.size(), {});
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int computed = seqs[i]->n_computed();
      EXPECT_EQ((*pool_)->used_blocks(), size_t((computed + kB - 1) / kB)) << "at " << computed << " computed tokens";
      max_used = std::max(max_used, (*pool_)->used_blocks());
      for (int j = 0; j < k[i]; ++j) out[i].tokens.push_back(int32_t(j % 2));  // never what stories260K writes next
    }
    ++calls;
  }
  KvBlockPool* const* pool_;
  size_t max_used = 0;
  int calls = 0;
};

TEST(Speculative, RejectedProposalsFreeTheirBlocks) {
  ThreadPool threads(1);
  Loaded m = load(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf", threads);
  const std::vector<int32_t> prompt = m.tok->encode("Once upon a time", true);
  engine::EngineOptions eo;
  eo.parallel = 1;
  eo.n_ctx = 128;
  eo.prefix_cache = false;  // no cached blocks: used blocks are the sequence's alone
  eo.spec.max_draft = 40;
  eo.spec.adaptive = false;
  engine::Engine eng(*m.model, *m.tok, estimate_meter(), eo);
  KvBlockPool* pool = &eng.pool();
  auto proposer = std::make_unique<WrongProposer>(&pool);
  WrongProposer* wp = proposer.get();
  eng.set_proposer(std::move(proposer));
  engine::SequenceResult res;
  engine::SequenceSink sink;
  sink.on_finish = [&res](engine::SequenceResult&& r) { res = std::move(r); };
  eng.add(std::make_unique<engine::Sequence>(prompt, greedy_params(30), *m.tok, std::move(sink)));
  eng.run_until_idle();
  EXPECT_GT(wp->calls, 10);
  EXPECT_EQ(res.completion_tokens, 30);
  EXPECT_EQ(eng.pool().used_blocks(), 0u);
  const std::vector<engine::SequenceResult> plain = generate(m, eo, {prompt}, {greedy_params(30)});
  EXPECT_EQ(res.tokens, plain[0].tokens);
}

// ---- sampling: the target's distribution, exactly ----

// Proposes one fixed token, with certainty.
class FixedProposer : public engine::Proposer {
 public:
  explicit FixedProposer(int32_t token) : token_(token) {}
  void propose(const std::vector<engine::Sequence*>& seqs, const std::vector<int>& k, std::vector<engine::Draft>& out) override {
    out.assign(seqs.size(), {});
    for (size_t i = 0; i < seqs.size(); ++i)
      if (k[i] > 0) out[i].tokens = {token_};
  }

 private:
  int32_t token_;
};

// stories260K (512 tokens), temperature 1 with no truncation: the first token of 3000
// seeds, every one verified against a proposal of the second most likely token, follows
// the model's softmax (Pearson's chi-square at the 0.1% level, Wilson-Hilferty's
// critical value; bins with fewer than 5 expected draws pooled).
TEST(Speculative, SampledTokensFollowTheTargetDistribution) {
  ThreadPool threads(2);
  Loaded m = load(test::shared_dir() + "/models/stories260K/stories260K-f32.gguf", threads);
  const int V = m.model->config().n_vocab;
  const std::vector<int32_t> prompt = m.tok->encode("Once upon a time there was a", true);
  engine::GenParams gp;
  gp.sampling.temperature = 1.0f;
  gp.sampling.top_k = 0;
  gp.sampling.top_p = 1.0f;
  gp.sampling.min_p = 0.0f;
  gp.max_tokens = 2;  // the first token can carry a proposal only if a second is wanted
  gp.split_reasoning = false;
  // The target's distribution of the first token.
  KvCache cache = m.model->new_cache(int(prompt.size()) + 1);
  std::vector<float> logits(size_t(V), 0.0f);
  m.model->forward(cache, prompt.data(), int64_t(prompt.size()), logits.data(), false);
  Sampler sampler(gp.sampling);
  TokenDistribution p;
  sampler.distribution(logits.data(), V, prompt, &p);
  ASSERT_GE(p.ids.size(), 2u);
  const int32_t proposal = p.ids[1];
  constexpr int kN = 3000;
  std::vector<std::vector<int32_t>> prompts(kN, prompt);
  std::vector<engine::GenParams> params(kN, gp);
  for (int i = 0; i < kN; ++i) params[size_t(i)].sampling.seed = uint64_t(i) + 1;
  engine::EngineOptions eo;
  eo.parallel = 16;
  eo.n_ctx = 64;
  eo.kv_type = TensorType::F32;
  eo.kv_budget_bytes = 16 * 4 * KvBlockPool::block_bytes(m.model->config().n_layer, m.model->config().cache_k_dim,
                                                         m.model->config().cache_v_dim);
  eo.spec.max_draft = 1;
  engine::EngineStats st;
  const std::vector<engine::SequenceResult> res = generate(m, eo, prompts, params, std::make_unique<FixedProposer>(proposal), &st);
  std::map<int32_t, int> counts;
  for (const engine::SequenceResult& r : res)
    if (!r.tokens.empty()) ++counts[r.tokens[0]];
  EXPECT_EQ(st.drafted_tokens, kN) << "every first token verified a proposal";
  EXPECT_GT(st.accepted_tokens, 0);
  // Bins: tokens with >= 5 expected draws, the rest pooled.
  double x2 = 0, rest_e = 0, rest_o = 0;
  int bins = 0;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double e = p.probs[i] * kN;
    const double o = counts.count(p.ids[i]) ? counts[p.ids[i]] : 0;
    if (e >= 5) {
      x2 += (o - e) * (o - e) / e;
      ++bins;
    } else {
      rest_e += e, rest_o += o;
    }
  }
  if (rest_e > 0) x2 += (rest_o - rest_e) * (rest_o - rest_e) / rest_e, ++bins;
  const double df = bins - 1, z = 3.09;  // 0.1%
  const double critical = df * std::pow(1 - 2 / (9 * df) + z * std::sqrt(2 / (9 * df)), 3);
  ASSERT_GE(bins, 5);
  EXPECT_LT(x2, critical) << bins << " bins";
}

// ---- DeepSeek's multi-token prediction ----

// A DeepSeek-V3-shaped toy (MLA with q_lora, sigmoid-gated MoE after one dense layer).
const Preset kTinyDs = {.name = "tiny-ds", .description = "test", .arch = "deepseek2", .n_embd = 64, .n_layer = 3,
                        .n_head = 4, .n_ff = 96, .n_vocab = 512, .n_ctx = 256, .rms_eps = 1e-6f, .q_lora_rank = 32,
                        .kv_lora_rank = 32, .qk_nope = 16, .qk_rope = 8, .v_head = 16, .n_expert = 8, .n_expert_used = 2,
                        .n_shared = 1, .n_ff_expert = 32, .first_dense = 1, .n_group = 4, .topk_group = 2,
                        .sigmoid_gating = true, .norm_topk = true, .routed_scale = 2.5f};

std::string synth_tiny_ds(int mtp_layers) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("jevons_spec_" + std::to_string(::getpid()) + "_ds" + std::to_string(mtp_layers) + ".gguf"))
                               .string();
  SynthOptions o;
  o.preset = &kTinyDs;
  o.type = TensorType::F32;
  o.vocab_path = test::shared_dir() + "/models/stories260K/stories260K-f32.gguf";
  o.out_path = path;
  o.seed = 7;
  o.mtp_layers = mtp_layers;
  synthesize(o);
  return path;
}

class Mtp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    threads_ = new ThreadPool(2);
    plain_path_ = new std::string(synth_tiny_ds(0));
    mtp_path_ = new std::string(synth_tiny_ds(1));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove(*plain_path_);
    std::filesystem::remove(*mtp_path_);
  }
  static inline ThreadPool* threads_ = nullptr;
  static inline std::string* plain_path_ = nullptr;
  static inline std::string* mtp_path_ = nullptr;
};

// The nextn layer is the module's, not a fourth trunk layer: the trunk's logits are
// those of the same file without it, bit for bit.
TEST_F(Mtp, ModuleLoadsAndLeavesTheTrunkAlone) {
  Loaded plain = load(*plain_path_, *threads_), mtp = load(*mtp_path_, *threads_);
  EXPECT_EQ(plain.model->config().n_mtp, 0);
  EXPECT_EQ(mtp.model->config().n_mtp, 1);
  EXPECT_EQ(mtp.model->config().n_layer, 3);
  EXPECT_GT(mtp.model->mtp_weight_bytes_per_token(), 0u);
  const std::vector<int32_t> ids = prompt_of(12, 1, 512);
  auto all_logits = [&](Model& m) {
    KvCache cache = m.new_cache(16);
    std::vector<float> l(12 * 512);
    m.forward(cache, ids.data(), 12, l.data(), true);
    return l;
  };
  EXPECT_EQ(all_logits(*plain.model), all_logits(*mtp.model));
  // Hidden states come with keep_hidden, and the module turns them into finite logits.
  mtp.model->keep_hidden(true);
  KvCache cache = mtp.model->new_cache(16);
  std::vector<float> logits(512);
  mtp.model->forward(cache, ids.data(), 12, logits.data(), false);
  const std::vector<float> h = mtp.model->hidden();
  ASSERT_EQ(h.size(), size_t(12 * 64));
  KvCache mc = mtp.model->new_mtp_cache(16, TensorType::F32);
  std::vector<float> m_logits(512);
  mtp.model->forward_mtp({Model::MtpChunk{&mc, ids.data() + 1, h.data(), 11}}, m_logits.data());
  for (float x : m_logits) ASSERT_TRUE(std::isfinite(x));
  // Its cache: the same positions one chunk at a time give the same last row.
  KvCache mc2 = mtp.model->new_mtp_cache(16, TensorType::F32);
  std::vector<float> first(512), again(512);
  mtp.model->forward_mtp({Model::MtpChunk{&mc2, ids.data() + 1, h.data(), 7}}, first.data());
  mtp.model->forward_mtp({Model::MtpChunk{&mc2, ids.data() + 8, h.data() + 7 * 64, 4}}, again.data());
  EXPECT_EQ(again, m_logits);
  EXPECT_THROW(plain.model->forward_mtp({Model::MtpChunk{&mc, ids.data() + 1, h.data(), 1}}, m_logits.data()), Error);
}

TEST_F(Mtp, GreedyWithTheModuleIsPlainGreedy) {
  Loaded m = load(*mtp_path_, *threads_);
  engine::EngineOptions eo;
  eo.kv_type = TensorType::F32;
  eo.parallel = 3;
  eo.n_ctx = 96;
  eo.kv_budget_bytes = 3 * (96 / kB) * KvBlockPool::block_bytes(3, m.model->config().cache_k_dim, m.model->config().cache_v_dim);
  eo.prefill_chunk = 8;
  // The third shares the first's first 32 tokens: its prefix-cache hit leaves the module
  // no trunk states for them (its context then starts after them).
  std::vector<int32_t> third = prompt_of(40, 3, 512);
  const std::vector<int32_t> first = prompt_of(33, 3, 512);
  std::copy(first.begin(), first.begin() + 32, third.begin());
  const std::vector<std::vector<int32_t>> prompts = {first, prompt_of(9, 2, 512), third};
  const std::vector<engine::GenParams> params(3, greedy_params(30));
  const std::vector<engine::SequenceResult> plain = generate(m, eo, prompts, params);
  eo.spec.method = engine::SpecMethod::kMtp;
  eo.spec.max_draft = 1;
  engine::EngineStats st;
  const std::vector<engine::SequenceResult> spec = generate(m, eo, prompts, params, nullptr, &st);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(spec[i].tokens, plain[i].tokens) << "sequence " << i;
    EXPECT_GE(spec[i].drafted_tokens, 25) << "a proposal every step after the first, sequence " << i;
  }
  EXPECT_GT(spec[2].cached_tokens, 0);
}

TEST_F(Mtp, RefusedWhereThereIsNone) {
  Loaded m = load(*plain_path_, *threads_);
  engine::EngineOptions eo;
  eo.n_ctx = 64;
  eo.spec.method = engine::SpecMethod::kMtp;
  try {
    engine::Engine eng(*m.model, *m.tok, estimate_meter(), eo);
    ADD_FAILURE() << "accepted --spec mtp without an MTP layer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no multi-token prediction layer"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace jevons
