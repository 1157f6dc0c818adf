// jevons: the command-line front end. Each subcommand lives in its own cmd_*.cc.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"jevons: an LLM inference engine that counts every joule.\n"
               "Runs Llama-family, Qwen2/Qwen3 and DeepSeek-V2/V3 models from GGUF files or\nHugging Face safetensors directories on the CPU."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "jevons 0.1.0");
  jevons::cli::add_run_command(app);
  jevons::cli::add_logits_command(app);
  jevons::cli::add_tokenize_commands(app);
  jevons::cli::add_inspect_command(app);
  jevons::cli::add_meter_command(app);
  jevons::cli::add_synth_command(app);
  jevons::cli::add_bench_command(app);
  jevons::cli::add_convert_command(app);
  jevons::cli::add_chat_command(app);
  jevons::cli::add_serve_command(app);
  jevons::cli::add_eval_command(app);
  // An unknown command is named as such (CLI11 would say "A subcommand is required").
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "error: unknown command '%s' (the commands: %s; jevons --help describes them)\n", argv[1], names.c_str());
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "error: %s\n(run with --help for the options)\n", e.what());
    return 1;
  } catch (const jevons::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
