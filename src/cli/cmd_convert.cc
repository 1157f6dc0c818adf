// jevons convert: a Hugging Face directory to a GGUF file.
#include <cstdio>

#include "cli/common.h"
#include "core/error.h"
#include "core/output_file.h"
#include "core/thread_pool.h"
#include "model/convert.h"

namespace jevons::cli {

void add_convert_command(CLI::App& app) {
  struct Options {
    std::string in, out, type;
    int threads = 0;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* c = app.add_subcommand("convert", "Convert a Hugging Face safetensors directory (llama, qwen2, qwen3, deepseek) to GGUF");
  c->add_option("hf_dir", o->in, "Directory with config.json, *.safetensors, tokenizer.json")->required();
  c->add_option("out", o->out, "Output GGUF file (outside the input directory; written whole or not at all)")->required();
  c->add_option("--type", o->type, "Matrix type: f32 f16 bf16 q8_0 q4_0 q4_k ... (default: as stored; FP8 becomes bf16)");
  c->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(1, 1024));
  c->add_flag("--force", o->force, "Replace the output file if it exists (never a file of the input directory)");
  c->callback([o] {
    check_output(o->out, {o->in}, o->force);
    ConvertOptions co;
    co.hf_dir = o->in;
    co.out_path = o->out;
    co.threads = o->threads > 0 ? o->threads : physical_core_count();
    if (!o->type.empty()) {
      const TypeTraits* t = type_traits_by_name(o->type);
      if (!t || !is_gguf_type(t->type)) fail("unknown --type '{}'", o->type);
      co.type = t->type;
    }
    auto progress = std::make_shared<Progress>("convert");
    co.progress = [progress](size_t done, size_t total) { progress->update(done, total, fmt::format("{}/{} tensors", done, total)); };
    const ConvertResult r = convert_hf_to_gguf(co);
    progress->finish();
    std::printf("wrote %s: %zu tensors, %.1f MB\n", o->out.c_str(), r.tensors, double(r.bytes) / 1e6);
    if (!r.notes.empty()) std::printf("type fallbacks: %s\n", r.notes.c_str());
  });
}

}  // namespace jevons::cli
