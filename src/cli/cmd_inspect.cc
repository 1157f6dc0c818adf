// jevons inspect: what is in a model file, and what it will cost to run.
#include <cstdio>
#include <map>

#include "cli/common.h"
#include "core/error.h"
#include "formats/hf_model.h"
#include "kernels/matmul.h"

namespace jevons::cli {
namespace {

std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int k = 0;
  while (b >= 1024.0 && k < 4) { b /= 1024.0; ++k; }
  return fmt::format("{:.2f} {}", b, unit[k]);
}

void inspect(const std::string& path, bool all_tensors, const F16Args& f16) {
  auto file = open_model_source(path);
  if (const auto* g = dynamic_cast<const GgufFile*>(file.get()))
    std::printf("file: %s\nGGUF version %u, %zu metadata keys, %zu tensors, alignment %u, data at offset %zu, %s\n\n",
                path.c_str(), g->version(), g->metadata().size(), g->tensors().size(), g->alignment(), g->data_offset(),
                human_bytes(double(g->file_size())).c_str());
  else
    std::printf("Hugging Face directory: %s (config.json and tokenizer shown as GGUF keys, tensors under GGUF names)\n\n",
                path.c_str());
  std::printf("metadata:\n");
  for (const auto& [key, value] : file->metadata())
    std::printf("  %-44s %s\n", key.c_str(), value.to_string().c_str());

  std::printf("\ntensors:\n  %-40s %-6s %-22s %12s\n", "name", "type", "shape", "bytes");
  int64_t params = 0;
  size_t bytes = 0;
  std::map<std::string, int> per_type;
  size_t shown = 0;
  const std::vector<const GgufTensor*> tensors = file->tensor_list();
  for (const GgufTensor* t : tensors) {
    params += t->n_elements;
    bytes += t->nbytes;
    ++per_type[type_name(t->type)];
    if (all_tensors || shown < 64) {
      std::printf("  %-40s %-7s %-22s %12zu\n", t->name.c_str(), type_name(t->type), t->shape_string().c_str(), t->nbytes);
      ++shown;
    }
  }
  if (shown < tensors.size()) std::printf("  ... %zu more (--all to list them)\n", tensors.size() - shown);
  std::string types;
  for (auto& [n, c] : per_type) types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", n, c);
  // 292800 -> "292.8 K", 1100048384 -> "1.100 B"
  const double pd = double(params);
  const std::string count = pd >= 1e9 ? fmt::format("{:.3f} B", pd / 1e9) : pd >= 1e6 ? fmt::format("{:.1f} M", pd / 1e6)
                          : pd >= 1e3 ? fmt::format("{:.1f} K", pd / 1e3) : fmt::format("{}", params);
  std::printf("\nparameters: %lld (%s), weights %s, types: %s\n", (long long)params, count.c_str(), human_bytes(double(bytes)).c_str(),
              types.c_str());

  // The architecture summary needs a model jevons can build; a vocab-only file has none.
  if (file->find_tensor("token_embd.weight")) {
    auto model = load_model(*file, LoadOptions{.f16_as_bf16 = f16.policy()});
    const ModelConfig& c = model->config();
    std::printf("architecture: %s, %d layers, embedding %d, %d heads (%d kv, head dim %d), FFN %d, vocab %d, trained context %d\n",
                c.arch.c_str(), c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim_k, c.n_ff, c.n_vocab, c.n_ctx_train);
    std::printf("KV cache: %zu bytes per token in f16 / bf16 (the default --kv-type f16), %zu in f32; %s (f16) at the default context of %d\n",
                c.kv_bytes_per_token(TensorType::F16), c.kv_bytes_per_token(TensorType::F32),
                human_bytes(double(c.kv_bytes_per_token(TensorType::F16)) * default_context(c)).c_str(), default_context(c));
    if (model->repacked_bytes() > 0)
      std::printf("repacked at load: %s (Q4_0/IQ4_NL/MXFP4/IQ4_XS/Q5_0/Q8_0/Q2_K/Q3_K/Q4_K/Q5_K/Q6_K/BF16/F16 matrices, 8 rows interleaved for the %s kernels; the file's pages of "
                  "those rows are released; JEVONS_REPACK=0 turns this off)\n",
                  human_bytes(double(model->repacked_bytes())).c_str(), kernel_target_name());
    else
      std::printf("repacked at load: nothing (the %s kernels read every weight type in place)\n", kernel_target_name());
    if (model->f16_as_bf16_bytes() > 0 || f16.always)
      std::printf("F16 matrices run as BF16 (the BF16 dot product's kernels): %s of the repacked matrices, %s of them "
                  "rounded (%s)\n",
                  human_bytes(double(model->f16_as_bf16_bytes())).c_str(),
                  human_bytes(double(model->f16_rounded_bytes())).c_str(),
                  f16.always ? "--f16-as-bf16: every F16 matrix rounded to BF16"
                             : "their values are all BF16 values, unchanged; --no-f16-as-bf16 keeps them F16");
    if (model->copied_bytes() > 0)
      std::printf("copied at load: %s (the other matrices, unchanged, into huge pages as the repacked ones; "
                  "the file's pages are released; JEVONS_HUGEPAGES=0 turns this off)\n",
                  human_bytes(double(model->copied_bytes())).c_str());
    if (c.is_mla())
      std::printf("MLA: the cache holds the %d-dim latent + %d-dim RoPE key per layer = (%d + %d) x 4 bytes x %d layers\n",
                  c.mla.kv_lora_rank, c.mla.qk_rope_head_dim, c.mla.kv_lora_rank, c.mla.qk_rope_head_dim, c.n_layer);
    if (c.n_mtp > 0)
      std::printf("multi-token prediction: %d nextn layer%s after the %d of the trunk (blk.%d.nextn.*), %s read per proposed "
                  "token; --spec mtp uses %s\n",
                  c.n_mtp, c.n_mtp > 1 ? "s" : "", c.n_layer, c.n_layer, human_bytes(double(model->mtp_weight_bytes_per_token())).c_str(),
                  c.n_mtp > 1 ? "the first" : "it");
    if (c.moe.n_expert > 0)
      std::printf("MoE: %d routed experts (top %d) + %d shared; weights read per token: %s of %s\n", c.moe.n_expert,
                  c.moe.n_expert_used, c.moe.n_shared, human_bytes(double(model->weight_bytes_per_token())).c_str(),
                  human_bytes(double(bytes)).c_str());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  struct Options {
    std::string model;
    bool all = false;
    F16Args f16;
  };
  auto o = std::make_shared<Options>();
  CLI::App* c = app.add_subcommand("inspect", "Show a model file's metadata, tensor table, parameter count and KV cache bytes per token");
  c->add_option("model", o->model, "Model: a GGUF file or a Hugging Face directory")->required();
  c->add_flag("--all", o->all, "List every tensor (default: the first 64)");
  add_f16_options(c, o->f16);  // load as run and bench do with them
  c->callback([o] { inspect(o->model, o->all, o->f16); });
}

}  // namespace jevons::cli
