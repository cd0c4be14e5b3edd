// The ops of the gdn domain as ONNX Runtime custom ops (OrtCustomOp), one per op and type variant.
#pragma once
#include <vector>

#include "onnxruntime_c_api.h"

namespace gdn {
namespace custom_ops {

// Every op variant, ready for CustomOpDomain_Add (static: valid until the library unloads).
// with_shape_inference: whether ORT may call the ops' shape inference (see RegisterCustomOps).
std::vector<OrtCustomOp*> custom_ops(bool with_shape_inference);

}  // namespace custom_ops
}  // namespace gdn
