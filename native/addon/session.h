// The JS-visible `Session` class: one ORT inference session.
//   createSession(model: string | Uint8Array, options: object) -> Promise<Session>   (builds on a worker thread)
//   session.inputMetadata / session.outputMetadata                                     (arrays, set at creation)
//   session.run(inputs, outputNames, preallocated, runOptions) -> Promise<(Descriptor | null)[]>
//   session.endProfiling() -> string;  session.dispose()
// The ORT session lives in a shared SessionState: a run in flight keeps it alive even if dispose() is called.
#pragma once

#include "napi_include.h"

#include <memory>
#include <string>
#include <vector>

#include "ort.h"

namespace gdn {

struct ValueInfo {
  std::string name;
  bool is_tensor = false;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  std::vector<std::string> symbolic;
};

struct SessionState {
  Ort::Session session{nullptr};
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
};

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env);
  // JS: createSession(model, options)
  static Napi::Value Create(const Napi::CallbackInfo& info);

  explicit Session(const Napi::CallbackInfo& info);
  // The live session state (throws once disposed); the ascend device-loop runs (ep.cc) use it too.
  std::shared_ptr<SessionState> Live(Napi::Env env) const;

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value EndProfiling(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<SessionState> state_;
};

}  // namespace gdn
