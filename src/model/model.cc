#include "model/model.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "model/architectures.h"

namespace jevons {

std::unique_ptr<Model> load_model(const ModelSource& source, const LoadOptions& options) {
  // read_config (inside each constructor) rejects unknown architectures by name.
  if (source.get_string_or("general.architecture", "") == "deepseek2") return make_deepseek(source, options);
  return make_transformer(source, options);
}

void Model::forward_mtp(const std::vector<MtpChunk>&, float*) {
  fail("this model has no multi-token prediction (nextn) layer");
}

}  // namespace jevons
