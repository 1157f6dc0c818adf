// One constructor per architecture family; load_model (model.cc) picks by
// general.architecture. Adding an architecture touches only this list.
#pragma once
#include <memory>

#include "model/model.h"

namespace jevons {

std::unique_ptr<Model> make_transformer(const ModelSource& source, const LoadOptions& options);  // llama, qwen2, qwen3
std::unique_ptr<Model> make_deepseek(const ModelSource& source, const LoadOptions& options);     // deepseek2 (V2, V3, R1)

}  // namespace jevons
