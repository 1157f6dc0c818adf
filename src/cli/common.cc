#include "cli/common.h"

#include <unistd.h>

#include "engine/engine.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/hf_model.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"

namespace jevons::cli {

void warn_of_reference_matrices(const ModelSource& file) {
  if (kernel_mode() != KernelMode::kFast) return;
  // The input embedding is only looked up, row by row, unless it is also the output.
  const bool tied = !file.find_tensor("output.weight") && !file.find_tensor("lm_head.weight");
  std::map<TensorType, std::pair<int, size_t>> slow;  // type -> matrices, bytes
  for (const GgufTensor* t : file.tensor_list()) {
    const bool embedding = t->name.find("token_embd") != std::string::npos || t->name.find("embed_tokens") != std::string::npos;
    if (t->dims.size() < 2 || t->rows() < 2 || (embedding && !tied) || matmul_has_fast_path(t->type)) continue;
    auto& [count, bytes] = slow[t->type];
    ++count, bytes += t->nbytes;
  }
  if (slow.empty()) return;
  std::string fast;  // the GGUF weight types that have one
  for (uint32_t id = 0; id < 64; ++id)
    if (const TypeTraits* t = find_type_traits(id); t && matmul_has_fast_path(t->type)) fast += std::string(" ") + t->name;
  for (const auto& [type, n] : slow)
    std::fprintf(stderr,
                 "[jevons] %d %s matrices (%.1f MB) have no SIMD kernel yet: they run on the exact reference kernel, "
                 "tens of times slower than the types that have one:%s (a GGUF file in one of those, or --quant TYPE "
                 "for a Hugging Face checkpoint)\n",
                 n.first, type_name(type), double(n.second) / 1e6, fast.c_str());
}

LoadedModel load(const ModelArgs& args, bool with_model) {
  const std::string& path = args.path;
  LoadedModel m;
  std::optional<TensorType> quantize_to;
  if (!args.quant.empty()) {
    const TypeTraits* t = type_traits_by_name(args.quant);
    if (!t || !is_gguf_type(t->type)) fail("unknown --quant type '{}' (q8_0, q4_0, q4_k, ...)", args.quant);
    quantize_to = t->type;
  }
  ThreadPool pool(physical_core_count());
  m.file = open_model_source(path, quantize_to, &pool);
  if (with_model) {
    // Large models take seconds to page in and repack: say so instead of staying silent.
    uint64_t bytes = 0;
    for (const GgufTensor* t : m.file->tensor_list()) bytes += t->nbytes;
    const auto t0 = std::chrono::steady_clock::now();
    const bool say = bytes >= (uint64_t(256) << 20);
    if (say) std::fprintf(stderr, "[jevons] loading %s (%.2f GB of weights)...\n", path.c_str(), double(bytes) / 1e9);
    m.model = load_model(*m.file, LoadOptions{.f16_as_bf16 = args.f16.policy()});
    if (say)
      std::fprintf(stderr, "[jevons] loaded in %.1f s\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (args.f16.always && m.model->f16_as_bf16_bytes() == 0)
      std::fprintf(stderr, "[jevons] --f16-as-bf16: no matrix was rounded (%s)\n",
                   repacking_enabled() ? "the model has no F16 matrix that this CPU's kernels repack"
                                       : "weights are not repacked here: not x86, reference kernels or JEVONS_REPACK=0");
    else if (args.f16.always && !matmul_uses_bf16_dot())
      std::fprintf(stderr,
                   "[jevons] --f16-as-bf16: this CPU has no BF16 dot product (AVX512-BF16), so the rounded matrices run "
                   "on f32 FMAs at about F16's speed: the flag costs precision and gains nothing here\n");
    else if (!args.f16.always && m.model->f16_as_bf16_bytes() > 0)
      std::fprintf(stderr,
                   "[jevons] the F16 matrices hold BF16 values only (%.2f GB): they run the BF16 dot product, weights "
                   "unchanged, activations rounded to BF16 as for BF16 models (--no-f16-as-bf16: f32 activations)\n",
                   double(m.model->f16_as_bf16_bytes()) / 1e9);
  }
  if (with_model) warn_of_reference_matrices(*m.file);
  m.tokenizer = Tokenizer::from_gguf(*m.file);
  if (with_model) {
    if (m.tokenizer->n_vocab() > m.model->config().n_vocab)
      fail("{}: the tokenizer has {} tokens but the model's vocabulary has only {}", path, m.tokenizer->n_vocab(),
           m.model->config().n_vocab);
  }
  return m;
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n') {
      ++p;
      continue;
    }
    int32_t v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || v < 0)
      fail("cannot parse token ids '{}': expected non-negative integers separated by commas or spaces", text);
    ids.push_back(v);
    p = next;
  }
  return ids;
}

void add_sampling_options(CLI::App* c, SamplerParams& sampling, bool& seed_given) {
  c->add_option("--temp", sampling.temperature, "Sampling temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str()->check(CLI::Range(0, 1 << 30));
  c->add_option("--top-p", sampling.top_p, "Nucleus sampling mass, in (0, 1] (1 = off)")->capture_default_str()->check(CLI::Range(1e-6, 1.0));
  c->add_option("--min-p", sampling.min_p, "Drop tokens below min-p x the top probability, in [0, 1] (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--repeat-penalty", sampling.repeat_penalty, "Penalize recently seen tokens (1 = off)")->capture_default_str();
  c->add_option("--repeat-last-n", sampling.repeat_last_n, "How many recent tokens the penalties consider")->capture_default_str();
  c->add_option("--presence-penalty", sampling.presence_penalty, "Subtract from logits of tokens already seen")->capture_default_str();
  c->add_option("--frequency-penalty", sampling.frequency_penalty, "Subtract per occurrence of a seen token")->capture_default_str();
  c->add_option("--seed", sampling.seed, "Random seed (same seed, same output; default: random)")
      ->each([&seed_given](const std::string&) { seed_given = true; });
}

TensorType ModelArgs::kv() const { return engine::parse_kv_type(kv_type); }

void add_model_options(CLI::App* c, ModelArgs& args) {
  c->add_option("-m,--model", args.path, "Model: a GGUF file or a Hugging Face directory")->required();
  c->add_option("--kv-type", args.kv_type,
                "Element type of the KV cache: f16 (default, as llama.cpp), bf16, q8_0 (about half of f16's memory; "
                "head dims must be multiples of 32), or f32 (twice f16's memory and bytes read per decoded token; what "
                "the golden tests match llama.cpp's logits with)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
  c->add_option("--quant", args.quant,
                "Quantize a Hugging Face checkpoint's matrices at load: q8_0, q4_0, q4_k, ... (k-quants fall back on short rows)");
  add_f16_options(c, args.f16);
}

Progress::Progress(std::string tag) : tag_(std::move(tag)), tty_(::isatty(2) != 0) {}

void Progress::update(size_t done, size_t total, const std::string& detail) {
  const int pct = total > 0 ? int(100 * done / total) : 100;
  const int step = tty_ ? 1 : 25;
  if (pct / step == last_ / step && done != total) return;
  last_ = pct;
  if (tty_) std::fprintf(stderr, "\r[%s] %3d%%  %s", tag_.c_str(), pct, detail.c_str());
  else std::fprintf(stderr, "[%s] %3d%%  %s\n", tag_.c_str(), pct, detail.c_str());
}

void Progress::finish() {
  if (tty_ && last_ >= 0) std::fprintf(stderr, "\n");
}

int resolve_threads(int requested) {
  const int cores = physical_core_count();
  if (requested <= 0) return cores;
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw > 0 && unsigned(requested) > hw)
    std::fprintf(stderr,
                 "[jevons] warning: -t %d is more threads than this machine's %u hardware threads; the extra ones only "
                 "wait their turn and every step waits for the slowest (far slower). The default is its %d physical cores\n",
                 requested, hw, cores);
  return requested;
}

void add_spec_options(CLI::App* c, SpecArgs& args) {
  c->add_option("--spec", args.method,
                "Speculative decoding: ngram (propose what followed the last few tokens earlier in the context: no extra "
                "model, pays where text repeats), draft (a smaller model of the same vocabulary, --draft), mtp (DeepSeek-V3/R1's "
                "own multi-token prediction layer, when the file has it), or none. "
                "Greedy output is identical to plain decoding; sampled output keeps the model's distribution")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "ngram", "draft", "mtp"}));
  c->add_option("--draft", args.draft, "Draft model for --spec draft (implies it): a GGUF file or a Hugging Face directory "
                                       "with the target's vocabulary")
      ->type_name("MODEL");
  c->add_option("--draft-max", args.max_draft, "Tokens proposed per step at most (default: ngram 8, draft 4, mtp 1: "
                                               "one per MTP layer); the number "
                                               "adapts to the acceptance rate unless --draft-fixed")
      ->check(CLI::Range(1, 64));
  c->add_flag("--draft-fixed", args.fixed, "Always propose --draft-max tokens (no adaptation)");
}

std::string Speculation::describe() const {
  using engine::SpecMethod;
  if (options.method == SpecMethod::kNone) return "off";
  std::string s = engine::spec_method_name(options.method);
  if (options.method == SpecMethod::kDraftModel && draft.file) s += " " + draft.file->path();
  return s + fmt::format(", up to {} tokens{}", options.max_draft, options.adaptive ? " (adaptive)" : "");
}

Speculation resolve_speculation(const SpecArgs& args, const ModelArgs& target_args, const LoadedModel& target, ThreadPool* pool) {
  Speculation sp;
  engine::SpecMethod m = engine::parse_spec_method(args.method);
  if (!args.draft.empty() && m == engine::SpecMethod::kNone) m = engine::SpecMethod::kDraftModel;
  if (!args.draft.empty() && m != engine::SpecMethod::kDraftModel)
    fail("--draft gives a draft model, but --spec {} does not use one (use --spec draft)", args.method);
  if (m == engine::SpecMethod::kDraftModel && args.draft.empty()) fail("--spec draft needs a draft model: --draft MODEL");
  sp.options.method = m;
  sp.options.max_draft = args.max_draft > 0                         ? args.max_draft
                         : m == engine::SpecMethod::kDraftModel ? 4
                         : m == engine::SpecMethod::kMtp        ? 1
                                                                : 8;
  sp.options.adaptive = !args.fixed;
  if (m == engine::SpecMethod::kDraftModel) {
    ModelArgs d = target_args;
    d.path = args.draft;
    d.quant.clear();
    sp.draft = load(d, true);
    engine::check_same_vocabulary(*target.tokenizer, *sp.draft.tokenizer);
    sp.draft.model->set_thread_pool(pool);
    sp.options.draft = sp.draft.model.get();
  }
  return sp;
}

void add_f16_options(CLI::App* c, F16Args& args) {
  CLI::Option* always = c->add_flag(
      "--f16-as-bf16", args.always,
      "Round every F16 weight matrix to BF16 as it is repacked at load, so that it runs the BF16 kernels: on CPUs "
      "with AVX512-BF16 (Zen 4, Sapphire Rapids) prefill uses the BF16 dot product, about 1.7x faster. Each weight "
      "keeps 8 of its 11 significant bits (activations are rounded to BF16 too); same memory. Without this flag, "
      "only F16 matrices whose values are all BF16 values (files converted from BF16 checkpoints) do so, unchanged");
  CLI::Option* never = c->add_flag("--no-f16-as-bf16", args.never,
                                   "Keep every F16 matrix on the F16 kernels (f32 activations and FMAs), even one whose "
                                   "values are all BF16 values");
  always->excludes(never);
  never->excludes(always);
}

int default_context(const ModelConfig& c) { return std::min(4096, c.n_ctx_train); }

}  // namespace jevons::cli
