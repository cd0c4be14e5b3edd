// Single include point for the ONNX Runtime C++ API inside the addon.
// The addon never links against onnxruntime: it dlopen()s the library that onnxruntime-node ships
// (see runtime.cc) and hands the OrtApi to the C++ wrappers with Ort::InitApi.
#pragma once

#ifndef ORT_API_MANUAL_INIT
#define ORT_API_MANUAL_INIT
#endif
#include "onnxruntime_cxx_api.h"
