// jevons synth: a GGUF with a real model's shapes, random weights, real vocab.
#include <cctype>
#include <chrono>
#include <cstdio>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"
#include "model/synth.h"

namespace jevons::cli {
namespace {

constexpr const char* kWeightTypes =
    "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs mxfp4 tq1_0 tq2_0";

struct SynthCliOptions {
  std::string preset, type = "q4_0", vocab, out, experts_type;
  uint64_t seed = 1;
  int threads = 0, mtp = 0;
  bool list = false, full_precision = false, force = false;
};

void run_synth(const SynthCliOptions& c) {
  if (c.list || c.preset.empty()) {
    std::printf("presets:\n");
    for (const Preset& p : presets())
      std::printf("  %-16s %s: %d layers, embedding %d, %d/%d heads, FFN %d, vocab %d\n", p.name, p.description, p.n_layer,
                  p.n_embd, p.n_head, p.n_head_kv, p.n_ff, p.n_vocab);
    if (c.preset.empty() && !c.list) fail("--preset is required (see the list above)");
    return;
  }
  SynthOptions o;
  o.preset = find_preset(c.preset);
  if (!o.preset) fail("unknown preset '{}' (jevons synth --list shows them)", c.preset);
  std::string type_lower = c.type;
  for (char& ch : type_lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  o.q4_k_m = type_lower == "q4_k_m";
  const bool mxfp4_moe = type_lower == "mxfp4_moe";
  const TypeTraits* t = type_traits_by_name(o.q4_k_m ? "q4_k" : mxfp4_moe ? "q8_0" : c.type);
  if (!t || t->type == TensorType::Q8_K || t->type == TensorType::Q8_1 || t->type == TensorType::F8_E4M3)
    fail("unknown --type '{}' ({}, q4_k_m or mxfp4_moe)", c.type, kWeightTypes);
  if (mxfp4_moe) {
    if (!c.experts_type.empty()) fail("--type mxfp4_moe already sets the experts' type (MXFP4); drop --experts-type or use --type q8_0");
    o.experts_type = TensorType::MXFP4;
  } else if (!c.experts_type.empty()) {
    const TypeTraits* e = type_traits_by_name(c.experts_type);
    if (!e || e->type == TensorType::Q8_K || e->type == TensorType::Q8_1 || e->type == TensorType::F8_E4M3)
      fail("unknown --experts-type '{}' ({})", c.experts_type, kWeightTypes);
    o.experts_type = e->type;
  }
  if (c.out.empty()) fail("-o FILE.gguf is required");
  check_output(c.out, {c.vocab}, c.force);
  if (c.vocab.empty())
    fail("--vocab VOCAB.gguf is required: the tokenizer is copied from it (e.g. ../shared/tokenizers/vocab/ggml-vocab-llama-spm.gguf "
         "for Llama-2-style models, ggml-vocab-deepseek-llm.gguf or ggml-vocab-gpt-2.gguf for byte-level BPE ones)");
  o.type = t->type;
  o.vocab_path = c.vocab;
  o.out_path = c.out;
  o.seed = c.seed;
  o.mtp_layers = c.mtp;
  o.bf16_values = !c.full_precision;
  o.threads = c.threads > 0 ? c.threads : physical_core_count();
  const auto t0 = std::chrono::steady_clock::now();
  Progress progress("synth");
  o.progress = [&](size_t done, size_t total, uint64_t bytes) {
    progress.update(done, total, fmt::format("{}/{} tensors, {:.2f} GB written", done, total, double(bytes) / 1e9));
  };
  const SynthResult r = synthesize(o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  progress.finish();
  const std::string types = o.q4_k_m ? std::string("q4_K_M (q4_K + q6_K)")
                            : o.experts_type != TensorType::Q8_K
                                ? fmt::format("{} (routed experts {})", t->name, type_name(o.experts_type))
                                : std::string(t->name);
  std::printf("wrote %s: %s, %s weights, %.3f B parameters, %.2f GB, in %.1f s\n", c.out.c_str(), o.preset->name, types.c_str(),
              double(r.parameters) / 1e9, double(r.file_bytes) / 1e9, s);
  if (!r.notes.empty()) std::printf("type fallbacks (k-quants, IQ4_XS and TQ types need rows that are multiples of 256): %s\n", r.notes.c_str());
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto o = std::make_shared<SynthCliOptions>();
  CLI::App* c = app.add_subcommand("synth", "Write a GGUF with a real model's exact shapes, seeded random weights and a real vocabulary (for benchmarks)");
  c->add_option("--preset", o->preset, "Model shape (--list shows them)");
  c->add_option("--type", o->type, std::string("Weight type of the matrices: ") + kWeightTypes + "; or q4_k_m: "
                "llama.cpp's Q4_K_M mix (Q6_K for the output and for attn_v/ffn_down in some layers, Q4_K elsewhere), "
                "as most published GGUFs are; or mxfp4_moe: MXFP4 routed experts, Q8_0 elsewhere (llama-quantize's MXFP4_MOE)")
      ->capture_default_str();
  c->add_option("--experts-type", o->experts_type, "MoE presets: the routed experts' type (e.g. iq4_xs, mxfp4), --type for "
                "every other matrix, as low-bit MoE releases mix them");
  c->add_option("--vocab", o->vocab, "GGUF to take the tokenizer from (padded with unused tokens up to the preset's vocabulary size)");
  c->add_option("-o,--out", o->out, "Output GGUF file (written whole or not at all)");
  c->add_flag("--force", o->force, "Replace the output file if it exists (never the --vocab file)");
  c->add_option("--seed", o->seed, "Seed of the random weights")->capture_default_str();
  c->add_option("--mtp", o->mtp, "DeepSeek presets: append this many multi-token prediction (nextn) layers, as DeepSeek-V3/R1 "
                                 "ship one (for --spec mtp); the other weights stay the same")
      ->check(CLI::Range(0, 4));
  c->add_option("-t,--threads", o->threads, "Threads for quantization (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_flag("--full-precision", o->full_precision,
              "F32/F16 matrices: random values of the type's full precision (default: BF16 values, as in an F16 file "
              "converted from the BF16 checkpoints these models were released in; jevons runs those on the BF16 kernels)");
  c->add_flag("--list", o->list, "List the presets");
  c->callback([o] { run_synth(*o); });
}

}  // namespace jevons::cli
