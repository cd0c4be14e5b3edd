#include "worker.h"

namespace gdn {

const char* OrtErrorCodeName(OrtErrorCode code) {
  switch (code) {
    case ORT_OK: return "ORT_OK";
    case ORT_FAIL: return "ORT_FAIL";
    case ORT_INVALID_ARGUMENT: return "ORT_INVALID_ARGUMENT";
    case ORT_NO_SUCHFILE: return "ORT_NO_SUCHFILE";
    case ORT_NO_MODEL: return "ORT_NO_MODEL";
    case ORT_ENGINE_ERROR: return "ORT_ENGINE_ERROR";
    case ORT_RUNTIME_EXCEPTION: return "ORT_RUNTIME_EXCEPTION";
    case ORT_INVALID_PROTOBUF: return "ORT_INVALID_PROTOBUF";
    case ORT_MODEL_LOADED: return "ORT_MODEL_LOADED";
    case ORT_NOT_IMPLEMENTED: return "ORT_NOT_IMPLEMENTED";
    case ORT_INVALID_GRAPH: return "ORT_INVALID_GRAPH";
    case ORT_EP_FAIL: return "ORT_EP_FAIL";
    default: return "ORT_FAIL";
  }
}

void PromiseWorker::Execute() {
  try {
    Work();
  } catch (const Ort::Exception& e) {
    failed_ = true;
    message_ = e.what();
    ort_code_ = OrtErrorCodeName(e.GetOrtErrorCode());
  } catch (const std::exception& e) {
    failed_ = true;
    message_ = e.what();
  } catch (...) {
    failed_ = true;
    message_ = "unknown native error";
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (!failed_) {
    try {
      deferred_.Resolve(Result(env));
      return;
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (const Ort::Exception& e) {
      message_ = e.what();
      ort_code_ = OrtErrorCodeName(e.GetOrtErrorCode());
    } catch (const std::exception& e) {
      message_ = e.what();
    }
  }
  Napi::Error err = Napi::Error::New(env, message_);
  if (ort_code_ != nullptr) err.Set("ortErrorCode", Napi::String::New(env, ort_code_));
  deferred_.Reject(err.Value());
}

void PromiseWorker::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

}  // namespace gdn
