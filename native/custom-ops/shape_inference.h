// Output type + shape inference of the gdn ops (beyond ORT's default type guess): one rule per op, run by
// ORT through the op table's InferOutputShapeFn.
#pragma once
#include "onnxruntime_c_api.h"

namespace gdn {
namespace custom_ops {

struct ShapeInfer;
using InferRule = void (*)(ShapeInfer&);

void infer_delta_rule(ShapeInfer& si);
void infer_causal_conv1d(ShapeInfer& si);
void infer_gating(ShapeInfer& si);
void infer_rms_norm(ShapeInfer& si);

// Applies `rule` to the node ORT asks about. Never fails: what cannot be inferred keeps ORT's own guess.
OrtStatus* run_shape_inference(OrtShapeInferContext* ctx, InferRule rule);

}  // namespace custom_ops
}  // namespace gdn
