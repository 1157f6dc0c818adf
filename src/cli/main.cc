// jevons: the command-line front end. Each subcommand lives in its own cmd_*.cc.
#include <cctype>
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/common.h"
#include "core/error.h"

namespace {

// The first option on the command line that the chosen (sub)command does not have, or "".
// CLI11 checks required options before it reports unknown ones, so `run --bogus` would
// say "--model is required"; the unknown option is the user's real mistake.
std::string unknown_option(CLI::App& app, int argc, char** argv) {
  CLI::App* cmd = &app;
  int i = 1;
  for (; i < argc; ++i) {  // descend through the subcommands named first
    CLI::App* sub = nullptr;
    for (CLI::App* s : cmd->get_subcommands([](CLI::App*) { return true; }))
      if (s->get_name() == argv[i]) sub = s;
    if (!sub) break;
    cmd = sub;
  }
  if (cmd == &app) return "";
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;  // positional arguments follow
    if (a.size() < 2 || a[0] != '-' || std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.') continue;  // a value
    std::string name = a.substr(0, a.find('='));
    const bool inline_value = name.size() < a.size() || (name.rfind("--", 0) != 0 && name.size() > 2);
    if (name.rfind("--", 0) != 0) name = name.substr(0, 2);  // -t4 is -t with 4
    if (name == "-h" || name == "--help") continue;
    const CLI::Option* opt = cmd->get_option_no_throw(name);
    if (!opt) return a;
    if (opt->get_type_size() != 0 && !inline_value) ++i;  // its value may start with '-' ("-p -x")
  }
  return "";
}

}  // namespace

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
    const std::string unknown = unknown_option(app, argc, argv);
    if (!unknown.empty()) std::fprintf(stderr, "error: unknown option '%s'\n(run with --help for the options)\n", unknown.c_str());
    else std::fprintf(stderr, "error: %s\n(run with --help for the options)\n", e.what());
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
