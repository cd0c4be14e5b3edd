#include "session.h"

#include "addon.h"
#include "options.h"
#include "tensor.h"
#include "worker.h"

namespace gdn {
namespace {

std::vector<ValueInfo> CollectInfo(const Ort::Session& s, bool inputs) {
  const size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
  Ort::AllocatorWithDefaultOptions alloc;
  std::vector<ValueInfo> out(n);
  for (size_t i = 0; i < n; ++i) {
    ValueInfo& v = out[i];
    v.name = (inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc)).get();
    Ort::TypeInfo ti = inputs ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
    v.is_tensor = ti.GetONNXType() == ONNX_TYPE_TENSOR;
    if (!v.is_tensor) continue;
    auto tsi = ti.GetTensorTypeAndShapeInfo();
    v.type = tsi.GetElementType();
    v.shape = tsi.GetShape();
    for (const char* sym : tsi.GetSymbolicDimensions()) v.symbolic.emplace_back(sym ? sym : "");
  }
  return out;
}

Napi::Array InfoToJs(Napi::Env env, const std::vector<ValueInfo>& infos) {
  Napi::Array arr = Napi::Array::New(env, infos.size());
  for (uint32_t i = 0; i < infos.size(); ++i) {
    const ValueInfo& v = infos[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", v.name);
    o.Set("isTensor", v.is_tensor);
    if (v.is_tensor) {
      const char* t = ElementTypeName(v.type);
      o.Set("type", t ? Napi::Value(Napi::String::New(env, t)) : env.Undefined());
      o.Set("elementType", Napi::Number::New(env, v.type));
      Napi::Array shape = Napi::Array::New(env, v.shape.size());
      for (uint32_t d = 0; d < v.shape.size(); ++d) {
        if (v.shape[d] >= 0) {
          shape.Set(d, Napi::Number::New(env, static_cast<double>(v.shape[d])));
        } else {
          shape.Set(d, Napi::String::New(env, d < v.symbolic.size() ? v.symbolic[d] : ""));
        }
      }
      o.Set("shape", shape);
    }
    arr.Set(i, o);
  }
  return arr;
}

class CreateWorker : public PromiseWorker {
 public:
  CreateWorker(Napi::Env env, Ort::SessionOptions options) : PromiseWorker(env), options_(std::move(options)) {}
  std::string path;                // model path, or empty when loading from bytes
  const void* bytes = nullptr;     // model bytes (kept alive by bytes_ref)
  size_t length = 0;
  Napi::ObjectReference bytes_ref;

 protected:
  void Work() override {
    state_ = std::make_shared<SessionState>();
    if (!path.empty()) {
      state_->session = Ort::Session(RuntimeEnv(), path.c_str(), options_);
    } else {
      state_->session = Ort::Session(RuntimeEnv(), bytes, length, options_);
    }
    state_->inputs = CollectInfo(state_->session, true);
    state_->outputs = CollectInfo(state_->session, false);
  }
  Napi::Value Result(Napi::Env env) override {
    auto* holder = new std::shared_ptr<SessionState>(std::move(state_));
    Napi::External<std::shared_ptr<SessionState>> ext = Napi::External<std::shared_ptr<SessionState>>::New(
        env, holder, [](Napi::Env, std::shared_ptr<SessionState>* p) { delete p; });
    return GetAddonData(env).session_ctor.New({ext});
  }

 private:
  Ort::SessionOptions options_;
  std::shared_ptr<SessionState> state_;
};

class RunWorker : public PromiseWorker {
 public:
  RunWorker(Napi::Env env, std::shared_ptr<SessionState> state, Ort::RunOptions run_options)
      : PromiseWorker(env), state_(std::move(state)), run_options_(std::move(run_options)) {}
  std::vector<std::string> input_names, output_names;
  std::vector<Ort::Value> inputs, outputs;  // outputs[i] is null unless preallocated
  std::vector<bool> preallocated;
  std::vector<Napi::ObjectReference> keep_alive;  // JS buffers the OrtValues point into

 protected:
  void Work() override {
    std::vector<const char*> in(input_names.size()), out(output_names.size());
    for (size_t i = 0; i < in.size(); ++i) in[i] = input_names[i].c_str();
    for (size_t i = 0; i < out.size(); ++i) out[i] = output_names[i].c_str();
    state_->session.Run(run_options_, in.data(), inputs.data(), inputs.size(), out.data(), outputs.data(), outputs.size());
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array results = Napi::Array::New(env, outputs.size());
    for (uint32_t i = 0; i < outputs.size(); ++i) {
      results.Set(i, preallocated[i] ? env.Null() : ValueToJs(env, output_names[i], outputs[i]));
    }
    return results;
  }

 private:
  std::shared_ptr<SessionState> state_;
  Ort::RunOptions run_options_;
};

}  // namespace

Napi::Function Session::Define(Napi::Env env) {
  return DefineClass(env, "Session",
                     {InstanceMethod<&Session::Run>("run"), InstanceMethod<&Session::EndProfiling>("endProfiling"),
                      InstanceMethod<&Session::Dispose>("dispose")});
}

Session::Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "Session cannot be constructed directly; use createSession()");
  }
  // Take the state out of the External rather than share it: the External lives until the garbage collector finds
  // it, and a second owner there would keep the ORT session (and its device memory) alive after dispose().
  state_ = std::move(*info[0].As<Napi::External<std::shared_ptr<SessionState>>>().Data());
  if (!state_) throw Napi::TypeError::New(env, "Session cannot be constructed directly; use createSession()");
  Napi::Object self = info.This().As<Napi::Object>();
  self.Set("inputMetadata", InfoToJs(env, state_->inputs));
  self.Set("outputMetadata", InfoToJs(env, state_->outputs));
}

Napi::Value Session::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!RuntimeLoaded()) throw Napi::Error::New(env, "ONNX Runtime is not loaded; call init() first");
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "createSession(model, options)");
  auto* worker = new CreateWorker(env, SessionOptionsFromJs(env, info[1].As<Napi::Object>()));
  if (info[0].IsString()) {
    worker->path = info[0].As<Napi::String>().Utf8Value();
    if (worker->path.empty()) {
      delete worker;
      throw Napi::TypeError::New(env, "model path is empty");
    }
  } else if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    worker->bytes = bytes.Data();
    worker->length = bytes.ByteLength();
    worker->bytes_ref = Napi::Persistent(bytes.As<Napi::Object>());
  } else {
    delete worker;
    throw Napi::TypeError::New(env, "model must be a path or a Uint8Array");
  }
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

std::shared_ptr<SessionState> Session::Live(Napi::Env env) const {
  if (!state_) throw Napi::Error::New(env, "session is disposed");
  return state_;
}

Napi::Value Session::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<SessionState> state = Live(env);
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsObject()) {
    throw Napi::TypeError::New(env, "run(inputs, outputNames, preallocated, runOptions)");
  }
  Napi::Array inputs = info[0].As<Napi::Array>();
  Napi::Array names = info[1].As<Napi::Array>();
  Napi::Array prealloc = info[2].As<Napi::Array>();
  if (prealloc.Length() != names.Length()) throw Napi::TypeError::New(env, "preallocated must match outputNames");

  // The worker owns everything it needs; if building it throws, unique_ptr frees it (and the references).
  auto worker = std::make_unique<RunWorker>(env, state, RunOptionsFromJs(env, info[3].As<Napi::Object>()));
  for (uint32_t i = 0; i < inputs.Length(); ++i) {
    Napi::Value item = inputs.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, "inputs must be tensor descriptors");
    Napi::Object desc = item.As<Napi::Object>();
    std::string name = desc.Get("name").ToString().Utf8Value();
    worker->inputs.push_back(ValueFromJs(env, "input '" + name + "'", desc, worker->keep_alive));
    worker->input_names.push_back(std::move(name));
  }
  for (uint32_t i = 0; i < names.Length(); ++i) {
    std::string name = names.Get(i).ToString().Utf8Value();
    Napi::Value p = prealloc.Get(i);
    if (p.IsObject()) {
      worker->outputs.push_back(ValueFromJs(env, "output '" + name + "'", p.As<Napi::Object>(), worker->keep_alive));
      worker->preallocated.push_back(true);
    } else {
      worker->outputs.emplace_back(nullptr);
      worker->preallocated.push_back(false);
    }
    worker->output_names.push_back(std::move(name));
  }
  Napi::Promise promise = worker->Promise();
  worker.release()->Queue();  // AsyncWorker deletes itself after settling
  return promise;
}

Napi::Value Session::EndProfiling(const Napi::CallbackInfo& info) {
  std::shared_ptr<SessionState> state = Live(info.Env());
  Ort::AllocatorWithDefaultOptions alloc;
  return Napi::String::New(info.Env(), state->session.EndProfilingAllocated(alloc).get());
}

void Session::Dispose(const Napi::CallbackInfo&) { state_.reset(); }

}  // namespace gdn
