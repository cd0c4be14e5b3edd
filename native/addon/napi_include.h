// The addon's only include of node-addon-api: every translation unit must see the same settings.
#pragma once

// A worker_thread being terminated still runs JS up to the next interrupt check, so it can call into the addon;
// every napi call that would run JS then fails. Without this, node-addon-api turns that failure into a C++
// exception thrown out of a JS callback, and the process aborts ("terminate called after throwing ...
// Napi::Error"). With it, an exception that cannot be thrown into a dying environment is dropped.
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#include <napi.h>
