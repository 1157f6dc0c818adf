// Pieces every subcommand shares: loading a model file, parsing id lists.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/speculative.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace jevons::cli {

struct LoadedModel {
  std::unique_ptr<ModelSource> file;  // a GGUF file or a Hugging Face directory
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;  // null when only the tokenizer was asked for
};

// --f16-as-bf16 / --no-f16-as-bf16 (add_f16_options): LoadOptions::f16_as_bf16.
struct F16Args {
  bool always = false, never = false;
  F16AsBf16 policy() const {
    return always ? F16AsBf16::kAlways : never ? F16AsBf16::kNever : F16AsBf16::kWhereExact;
  }
};

// What the user said about the model to load (add_model_options).
struct ModelArgs {
  std::string path;   // a GGUF file or a Hugging Face directory
  std::string quant;  // "" or a type name like q8_0: an HF checkpoint's matrices converted at load
  F16Args f16;
  std::string kv_type = "f16";  // the KV cache's elements: f32, f16, bf16 or q8_0
  TensorType kv() const;
};

// What the user said about speculative decoding (add_spec_options).
struct SpecArgs {
  std::string method = "none";  // none, ngram, draft or mtp (--draft MODEL alone implies draft)
  std::string draft;            // the draft model: a GGUF file or a Hugging Face directory
  int max_draft = 0;            // 0: the method's default (ngram 8, draft 4, mtp 1)
  bool fixed = false;           // always propose max_draft (no adaptation)
};

// A resolved choice: the options for the engine and the draft model they point to.
struct Speculation {
  engine::SpeculativeOptions options;
  LoadedModel draft;
  std::string describe() const;  // for a start-up line: "ngram, up to 8 tokens", ...
};

// Loads the draft model (its vocabulary checked against the target's, with the
// target's KV type and thread pool) and fills the engine's options.
Speculation resolve_speculation(const SpecArgs& args, const ModelArgs& target_args, const LoadedModel& target, ThreadPool* pool);

// Adds --spec, --draft, --draft-max and --draft-fixed.
void add_spec_options(CLI::App* c, SpecArgs& args);

// Opens a GGUF file or a Hugging Face directory and builds its tokenizer, and its
// model when with_model (then also warn_of_reference_matrices).
LoadedModel load(const ModelArgs& args, bool with_model);

// One stderr line per weight type of the file that the fast matmul lacks (FP8 scaled
// blocks, Q8_1): those matrices run on the exact reference kernel, which is slow.
void warn_of_reference_matrices(const ModelSource& file);

// Adds --temp, --top-k, --top-p, --min-p, the penalties and --seed (setting
// seed_given when the user chose one) for commands that sample.
void add_sampling_options(CLI::App* c, SamplerParams& sampling, bool& seed_given);

// Adds -m/--model (required: a GGUF file or a Hugging Face directory), --quant
// (quantize-on-load for Hugging Face directories), --kv-type and the F16 options,
// shared by the commands that load a model.
void add_model_options(CLI::App* c, ModelArgs& args);

// Adds --f16-as-bf16 and --no-f16-as-bf16 (which exclude each other).
void add_f16_options(CLI::App* c, F16Args& args);

// "1,2,3" or "1 2 3" -> ids; throws Error on anything else.
std::vector<int32_t> parse_ids(const std::string& text);

// Progress of long work on stderr: one line rewritten in place (\r) on a terminal; in
// a log file, a line at each quarter instead of carriage returns.
class Progress {
 public:
  explicit Progress(std::string tag);
  void update(size_t done, size_t total, const std::string& detail);
  void finish();  // ends the terminal's line

 private:
  std::string tag_;
  bool tty_;
  int last_ = -1;
};

// -t as asked (with a warning when it exceeds the hardware threads), or the physical cores.
int resolve_threads(int requested);

// Default context: min(4096, trained context).
int default_context(const ModelConfig& c);

// Subcommand registration; each adds itself to app and runs from its callback.
void add_run_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_tokenize_commands(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_meter_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_eval_command(CLI::App& app);

}  // namespace jevons::cli
