# Two products, built by native/scripts/build.mjs during `npm install`:
#   gdn_ops    - the op library (libgdn_ops.so): our custom-op domain for any ONNX Runtime (C API only).
#   gdn_addon  - the N-API addon: the `gdn` onnxruntime-node backend's session handler.
# ONNX Runtime headers come from native/.deps/ort-headers (fetched by build.mjs, never committed).
{
  "variables": { "ort_headers": "<(module_root_dir)/native/.deps/ort-headers" },
  "targets": [
    {
      "target_name": "gdn_ops",
      "type": "shared_library",
      "product_name": "gdn_ops",
      "sources": [
        "native/custom-ops/attributes.cc",
        "native/custom-ops/op_table.cc",
        "native/custom-ops/ort_api.cc",
        "native/custom-ops/register.cc",
        "native/custom-ops/shape_inference.cc",
        "native/common/gdn_contract.cc",
        "native/cpu/cpu_util.cc",
        "native/cpu/chunk_gated_delta_rule.cc",
        "native/cpu/recurrent_gated_delta_rule.cc",
        "native/cpu/causal_conv1d.cc",
        "native/cpu/gated_delta_gating.cc",
        "native/cpu/gated_rms_norm.cc"
      ],
      "include_dirs": ["<(ort_headers)", "native"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-fno-math-errno", "-Wno-psabi"],
      "ldflags": ["-Wl,--exclude-libs,ALL", "-Wl,-z,defs", "-pthread",
                  "-Wl,--version-script=<(module_root_dir)/native/custom-ops/gdn_ops.map"],
      "xcode_settings": {
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-fvisibility=hidden"]
      }
    },
    {
      "target_name": "gdn_addon",
      "sources": [
        "native/addon/addon.cc",
        "native/addon/ep.cc",
        "native/addon/options.cc",
        "native/addon/runtime.cc",
        "native/addon/session.cc",
        "native/addon/tensor.cc",
        "native/addon/worker.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(ort_headers)", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden"],
      "libraries": ["-ldl"]
    },
    {
      "target_name": "gdn_cann_sim",
      "type": "shared_library",
      "product_name": "gdn_cann_sim",
      "sources": ["native/ascend/sim/cann_sim.cc"],
      "include_dirs": ["native"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden"],
      "ldflags": ["-Wl,-z,defs", "-pthread"]
    },
    {
      "target_name": "gdn_ascend_ep",
      "type": "shared_library",
      "product_name": "gdn_ascend_ep",
      "sources": [
        "native/ascend/device/cann_device.cc",
        "native/ascend/ep/capability.cc",
        "native/ascend/ep/delta_rule_kernels.cc",
        "native/ascend/ep/device_ops.cc",
        "native/ascend/ep/ep.cc",
        "native/ascend/ep/kernel_util.cc",
        "native/ascend/ep/layer_kernels.cc",
        "native/ascend/ep/memcpy_kernels.cc",
        "native/ascend/ep/serving_plan.cc",
        "native/ascend/ep/standard_kernels.cc",
        "native/ascend/ep/stream.cc",
        "native/common/gdn_contract.cc"
      ],
      "include_dirs": ["<(ort_headers)", "native"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O2", "-fvisibility=hidden", "-fvisibility-inlines-hidden"],
      "ldflags": ["-Wl,-z,defs", "-pthread"],
      "libraries": ["-ldl"]
    }
  ]
}
