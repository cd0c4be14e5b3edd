#include "tensor.h"

#include <cstring>
#include <limits>

namespace gdn {
namespace {

struct TypeEntry {
  const char* name;
  ONNXTensorElementDataType type;
  size_t size;
};

constexpr TypeEntry kTypes[] = {
    {"float32", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 4},    {"float16", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, 2},
    {"bfloat16", ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, 2}, {"float64", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, 8},
    {"int64", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 8},      {"int32", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, 4},
    {"int16", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, 2},      {"int8", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, 1},
    {"uint64", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64, 8},    {"uint32", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32, 4},
    {"uint16", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, 2},    {"uint8", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, 1},
    {"bool", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, 1},        {"string", ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, 0},
};

// Any non-null address will do for an empty tensor: ORT never dereferences it.
alignas(16) char g_empty[16];

std::vector<int64_t> DimsFromJs(Napi::Env env, const std::string& what, Napi::Value v) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + ": dims must be an array of non-negative integers");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<int64_t> dims(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0) || x != static_cast<double>(static_cast<int64_t>(x))) {
      throw Napi::TypeError::New(env, what + ": dims must be an array of non-negative integers");
    }
    dims[i] = static_cast<int64_t>(x);
  }
  return dims;
}

size_t ElementCount(Napi::Env env, const std::string& what, const std::vector<int64_t>& dims) {
  size_t n = 1;
  for (int64_t d : dims) {
    if (d != 0 && n > std::numeric_limits<size_t>::max() / static_cast<size_t>(d)) {
      throw Napi::RangeError::New(env, what + ": tensor is too large");
    }
    n *= static_cast<size_t>(d);
  }
  return n;
}

std::string DimsString(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}


struct TypedArrayMemory {
  void* data = nullptr;
  size_t length = 0;  // bytes
};

// Where a typed array's bytes are. Reads napi_get_typedarray_info's data pointer directly, which also works for a
// SharedArrayBuffer-backed array (Napi::TypedArray::ArrayBuffer() fails on those with "Invalid argument").
// A detached buffer (transferred away) is refused: its memory belongs to someone else now.
TypedArrayMemory MemoryOf(Napi::Env env, const std::string& what, Napi::TypedArray ta) {
  napi_typedarray_type kind;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  size_t offset = 0;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, ta, &kind, &length, &data, &buffer, &offset), TypedArrayMemory());
  bool is_plain = false;  // an ArrayBuffer, not a SharedArrayBuffer
  NAPI_THROW_IF_FAILED(env, napi_is_arraybuffer(env, buffer, &is_plain), TypedArrayMemory());
  bool detached = false;
  if (is_plain) NAPI_THROW_IF_FAILED(env, napi_is_detached_arraybuffer(env, buffer, &detached), TypedArrayMemory());
  if (detached) {
    throw Napi::TypeError::New(env, what + ": its ArrayBuffer is detached (transferred away); pass a tensor over live memory");
  }
  return {data, ta.ByteLength()};
}
}  // namespace

ONNXTensorElementDataType ElementTypeFromName(Napi::Env env, const std::string& name) {
  for (const auto& t : kTypes) {
    if (name == t.name) return t.type;
  }
  throw Napi::TypeError::New(env, "unsupported tensor type '" + name + "'");
}

const char* ElementTypeName(ONNXTensorElementDataType type) {
  for (const auto& t : kTypes) {
    if (type == t.type) return t.name;
  }
  return nullptr;
}

size_t ElementSize(ONNXTensorElementDataType type) {
  for (const auto& t : kTypes) {
    if (type == t.type) return t.size;
  }
  return 0;
}

Ort::Value ValueFromJs(Napi::Env env, const std::string& what, Napi::Object desc,
                       std::vector<Napi::ObjectReference>& keep_alive) {
  Napi::Value type_v = desc.Get("type");
  if (!type_v.IsString()) throw Napi::TypeError::New(env, what + ": tensor type must be a string");
  const ONNXTensorElementDataType type = ElementTypeFromName(env, type_v.As<Napi::String>().Utf8Value());
  const std::vector<int64_t> dims = DimsFromJs(env, what, desc.Get("dims"));
  const size_t count = ElementCount(env, what, dims);
  Napi::Value data = desc.Get("data");

  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    if (!data.IsArray()) throw Napi::TypeError::New(env, what + ": string tensor data must be an array of strings");
    Napi::Array arr = data.As<Napi::Array>();
    if (arr.Length() != count) {
      throw Napi::RangeError::New(env, what + ": data has " + std::to_string(arr.Length()) + " elements but dims " +
                                           DimsString(dims) + " need " + std::to_string(count));
    }
    std::vector<std::string> strings(count);
    std::vector<const char*> ptrs(count);
    for (uint32_t i = 0; i < count; ++i) {
      Napi::Value s = arr.Get(i);
      if (!s.IsString()) throw Napi::TypeError::New(env, what + ": string tensor data must be an array of strings");
      strings[i] = s.As<Napi::String>().Utf8Value();
      ptrs[i] = strings[i].c_str();
    }
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::Value value = Ort::Value::CreateTensor(allocator, dims.data(), dims.size(), type);
    if (count > 0) value.FillStringTensor(ptrs.data(), ptrs.size());
    return value;
  }

  if (!data.IsTypedArray()) throw Napi::TypeError::New(env, what + ": tensor data must be a TypedArray");
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  TypedArrayMemory mem = MemoryOf(env, what, ta);
  const size_t bytes = count * ElementSize(type);
  if (mem.length != bytes) {
    throw Napi::RangeError::New(env, what + ": data holds " + std::to_string(mem.length) + " bytes but a " +
                                         type_v.As<Napi::String>().Utf8Value() + " tensor of dims " + DimsString(dims) +
                                         " needs " + std::to_string(bytes));
  }
  void* ptr = bytes == 0 ? static_cast<void*>(g_empty) : mem.data;
  keep_alive.emplace_back(Napi::Persistent(ta.As<Napi::Object>()));
  // Leaked on purpose (no release from static destructors at exit); one per process.
  static const Ort::MemoryInfo* cpu = new Ort::MemoryInfo(Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault));
  return Ort::Value::CreateTensor(*cpu, ptr, bytes, dims.data(), dims.size(), type);
}

Napi::Value ValueToJs(Napi::Env env, const std::string& name, const Ort::Value& value) {
  if (!value.IsTensor()) {
    throw Napi::TypeError::New(env, "output '" + name + "' is not a tensor (sequence and map outputs are not supported)");
  }
  Ort::TensorTypeAndShapeInfo info = value.GetTensorTypeAndShapeInfo();
  const ONNXTensorElementDataType type = info.GetElementType();
  const char* type_name = ElementTypeName(type);
  if (type_name == nullptr) {
    throw Napi::TypeError::New(env, "output '" + name + "' has element type " + std::to_string(type) +
                                        ", which has no JavaScript tensor type");
  }
  const std::vector<int64_t> shape = info.GetShape();
  const size_t count = info.GetElementCount();

  Napi::Object out = Napi::Object::New(env);
  out.Set("type", type_name);
  Napi::Array dims = Napi::Array::New(env, shape.size());
  for (uint32_t i = 0; i < shape.size(); ++i) dims.Set(i, Napi::Number::New(env, static_cast<double>(shape[i])));
  out.Set("dims", dims);

  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    Napi::Array strings = Napi::Array::New(env, count);
    if (count > 0) {
      const size_t total = value.GetStringTensorDataLength();
      std::vector<char> buffer(total + 1);
      std::vector<size_t> offsets(count);
      value.GetStringTensorContent(buffer.data(), total, offsets.data(), count);
      for (size_t i = 0; i < count; ++i) {
        const size_t end = i + 1 < count ? offsets[i + 1] : total;
        strings.Set(static_cast<uint32_t>(i), Napi::String::New(env, buffer.data() + offsets[i], end - offsets[i]));
      }
    }
    out.Set("data", strings);
    return out;
  }

  const size_t bytes = count * ElementSize(type);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(ab.Data(), value.GetTensorRawData(), bytes);
  out.Set("data", ab);
  return out;
}

}  // namespace gdn
