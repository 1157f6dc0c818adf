// Pieces every subcommand shares: loading a model file, parsing id lists.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "formats/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace jevons::cli {

struct LoadedModel {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;  // null when only the tokenizer was asked for
};

// Opens a GGUF and builds its tokenizer, and its model when with_model.
LoadedModel load(const std::string& path, bool with_model);

// "1,2,3" or "1 2 3" -> ids; throws Error on anything else.
std::vector<int32_t> parse_ids(const std::string& text);

// Default context: min(4096, trained context).
int default_context(const ModelConfig& c);

// Subcommand registration; each adds itself to app and runs from its callback.
void add_run_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_tokenize_commands(CLI::App& app);
void add_inspect_command(CLI::App& app);

}  // namespace jevons::cli
