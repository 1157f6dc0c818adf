// Pieces every subcommand shares: loading a model file, parsing id lists.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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

// Opens a GGUF file or a Hugging Face directory and builds its tokenizer, and its
// model when with_model. quant ("" or a type name like q8_0) converts an HF
// checkpoint's matrices at load.
LoadedModel load(const std::string& path, bool with_model, const std::string& quant = "");

// Adds --temp, --top-k, --top-p, --min-p, the penalties and --seed (setting
// seed_given when the user chose one) for commands that sample.
void add_sampling_options(CLI::App* c, SamplerParams& sampling, bool& seed_given);

// Adds -m/--model (required: a GGUF file or a Hugging Face directory) and --quant
// (quantize-on-load for Hugging Face directories), shared by the commands that load a model.
void add_model_options(CLI::App* c, std::string& model, std::string& quant);

// "1,2,3" or "1 2 3" -> ids; throws Error on anything else.
std::vector<int32_t> parse_ids(const std::string& text);

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

}  // namespace jevons::cli
