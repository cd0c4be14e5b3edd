// Conversion between JS tensor descriptors and OrtValues.
// A JS tensor descriptor is a plain object { type: string, dims: number[], data: TypedArray | string[] }
// prepared by src/runtime (the onnxruntime-common Tensor is unwrapped on the JS side).
#pragma once

#include "napi_include.h"

#include <string>
#include <vector>

#include "ort.h"

namespace gdn {

// "float32" -> ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; throws Napi::Error for an unknown name.
ONNXTensorElementDataType ElementTypeFromName(Napi::Env env, const std::string& name);
// ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT -> "float32"; nullptr when the type has no JS representation.
const char* ElementTypeName(ONNXTensorElementDataType type);
// Bytes per element; 0 for string and unsupported types.
size_t ElementSize(ONNXTensorElementDataType type);

// Creates an OrtValue for an input or a preallocated output. Numeric data is NOT copied: the OrtValue
// points into the JS buffer, and a reference to the typed array is appended to `keep_alive` so that the
// buffer outlives the run. String tensors are copied (ORT owns std::string storage).
Ort::Value ValueFromJs(Napi::Env env, const std::string& what, Napi::Object desc,
                       std::vector<Napi::ObjectReference>& keep_alive);

// Converts an ORT-allocated output to a JS descriptor { type, dims, data } (data: ArrayBuffer or string[]).
Napi::Value ValueToJs(Napi::Env env, const std::string& name, const Ort::Value& value);

}  // namespace gdn
