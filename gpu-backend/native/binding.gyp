{
  "includes": ["ort/ort.gypi"],
  "targets": [
    {
      "target_name": "native_session",
      "sources": ["src/addon.cc", "src/native-session.cc", "src/fixed-runs.cc"],
      "include_dirs": ["<(addon_api_dir)", "<(ort_include_dir)"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2"],
      "libraries": ["-L<(ort_lib_dir)", "-l:libonnxruntime.so.1", "-Wl,-rpath,<(ort_rpath)"]
    }
  ]
}
