// A Napi::AsyncWorker that settles a Promise. Work() runs on a libuv worker thread and must not touch JS;
// Result() runs back on the JS thread. ORT and C++ exceptions from either become a rejected Promise whose
// Error carries ORT's message and, for ORT failures, `ortErrorCode` (e.g. "ORT_INVALID_ARGUMENT").
#pragma once

#include "napi_include.h"

#include <string>

#include "ort.h"

namespace gdn {

const char* OrtErrorCodeName(OrtErrorCode code);

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Work() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Execute() final;
  void OnOK() final;
  void OnError(const Napi::Error& e) final;
  void Settle(Napi::Env env);
  void DropResult();

  Napi::Promise::Deferred deferred_;
  bool failed_ = false;
  std::string message_;
  const char* ort_code_ = nullptr;
};

}  // namespace gdn
