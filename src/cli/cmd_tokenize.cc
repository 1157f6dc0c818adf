// jevons tokenize / detokenize: text <-> ids with a model's own vocabulary.
#include <cstdio>

#include "cli/common.h"

namespace jevons::cli {

void add_tokenize_commands(CLI::App& app) {
  struct Options {
    std::string model, text;
    bool no_bos = false, no_special = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* t = app.add_subcommand("tokenize", "Print the token ids of TEXT, space-separated on one line");
  t->add_option("-m,--model", o->model, "Model or vocab: a GGUF file or a Hugging Face directory")->required();
  t->add_option("text", o->text, "Text to tokenize")->required();
  t->add_flag("--no-bos", o->no_bos, "Do not add the BOS token");
  t->add_flag("--no-special", o->no_special, "Treat special-token text like <|im_start|> as plain text");
  t->callback([o] {
    LoadedModel m = load(ModelArgs{o->model, "", false}, false);
    const auto ids = m.tokenizer->encode(o->text, m.tokenizer->add_bos_default() && !o->no_bos, !o->no_special);
    std::string line;
    for (size_t k = 0; k < ids.size(); ++k) line += (k ? " " : "") + std::to_string(ids[k]);
    std::printf("%s\n", line.c_str());
  });

  auto d = std::make_shared<Options>();
  CLI::App* dt = app.add_subcommand("detokenize", "Print the text of token IDS (comma- or space-separated)");
  dt->add_option("-m,--model", d->model, "Model or vocab: a GGUF file or a Hugging Face directory")->required();
  dt->add_option("ids", d->text, "Token ids, e.g. 1,403,407")->required();
  dt->callback([d] {
    LoadedModel m = load(ModelArgs{d->model, "", false}, false);
    const std::string text = m.tokenizer->decode(parse_ids(d->text));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  });
}

}  // namespace jevons::cli
