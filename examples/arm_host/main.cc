// What an app does with a sparsec artifact: load ONNX Runtime, register the sparsec plugin EP shipped in the
// artifact, append it to the session with the artifact's kernel library and TVM runtime, run model.onnx.
//
//   arm_host [--threads N] [--repeat R] ARTIFACT_DIR OUT_DIR NAME=FILE.npy [NAME=FILE.npy ...]
//
// Writes output i as OUT_DIR/<i>.npy (a tensor) or OUT_DIR/<i>.json (a sequence or map, json_value.h) and prints
// "output <i> <name>" per output. --threads sets ORT's intra-op
// threads (default: ORT's choice); --repeat runs the model R times (for instruction counting; outputs of the last).
// Exit status 0 on success, 1 on any error (one "error: ..." line on stderr).
#include <onnxruntime_cxx_api.h>

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "json_value.h"
#include "npy.h"

namespace {

using arm_host::NpyArray;

constexpr const char* kEpName = "SparsecEP";  // the registration name the EP's factory reports

bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

const std::map<std::string, ONNXTensorElementDataType>& DtypeTable() {
  static const std::map<std::string, ONNXTensorElementDataType> table = {
      {"<f4", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT},  {"<f8", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE},
      {"<f2", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16}, {"<i8", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64},
      {"<i4", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32},  {"|b1", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL},
      {"|u1", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8},  {"|i1", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8}};
  return table;
}

std::string DescrOf(ONNXTensorElementDataType t) {
  for (const auto& [descr, type] : DtypeTable())
    if (type == t) return descr;
  throw std::runtime_error("output element type " + std::to_string(t) + " has no .npy dtype here");
}

// The session: ORT's CPU EP for ordinary nodes, the sparsec EP (from the artifact) for its EPContext nodes.
Ort::Session OpenArtifact(Ort::Env& env, const std::string& dir, int threads) {
  const std::string ep_lib = dir + "/libsparsec_ep.so";
  const std::string tvm_runtime = dir + "/libtvm_runtime.so";
  const std::string kernels = dir + "/kernels.so";
  for (const std::string& f : {dir + "/model.onnx", ep_lib, tvm_runtime})
    if (!IsFile(f)) throw std::runtime_error("missing artifact file " + f);
  env.RegisterExecutionProviderLibrary(kEpName, ep_lib);
  std::vector<Ort::ConstEpDevice> devices;
  for (const auto& d : env.GetEpDevices())
    if (std::string(d.EpName()) == kEpName) devices.push_back(d);
  if (devices.empty()) throw std::runtime_error("the sparsec EP registered but offers no device");
  std::unordered_map<std::string, std::string> ep_options = {{"tvm_runtime", tvm_runtime}};
  if (IsFile(kernels)) ep_options["kernel_library"] = kernels;  // absent when every layer stayed dense
  Ort::SessionOptions so;
  if (threads > 0) {
    so.SetIntraOpNumThreads(threads);
    ep_options["parallel_tasks"] = std::to_string(threads);  // the kernels' loops run on this same ORT pool
  }
  so.AppendExecutionProvider_V2(env, devices, ep_options);
  // ORT's WeightBiasQuantization would quantize again, per tensor, the float weights sparsec folded out of a QDQ
  // model's DequantizeLinear (sparsec/runtime/session.py keep_float_weights does the same in Python)
  so.AddConfigEntry("optimization.disable_specified_optimizers", "WeightBiasQuantization");
  return Ort::Session(env, (dir + "/model.onnx").c_str(), so);
}

int PositiveInt(const std::string& flag, const char* text) {
  int v = text ? std::atoi(text) : 0;
  if (v < 1) throw std::runtime_error(flag + " needs a positive integer");
  return v;
}

int Run(int argc, char** argv) {
  int threads = 0, repeat = 1, a = 1;
  for (; a < argc && std::string(argv[a]).rfind("--", 0) == 0; a += 2) {
    const std::string flag = argv[a];
    const char* value = a + 1 < argc ? argv[a + 1] : nullptr;
    if (flag == "--threads") {
      threads = PositiveInt(flag, value);
    } else if (flag == "--repeat") {
      repeat = PositiveInt(flag, value);
    } else {
      throw std::runtime_error("unknown option " + flag);
    }
  }
  if (argc - a < 2)
    throw std::runtime_error("usage: arm_host [--threads N] [--repeat R] ARTIFACT_DIR OUT_DIR NAME=FILE.npy ...");
  const std::string dir = argv[a], out_dir = argv[a + 1];
  std::map<std::string, NpyArray> arrays;
  for (int i = a + 2; i < argc; ++i) {
    std::string arg = argv[i];
    size_t eq = arg.find('=');
    if (eq == std::string::npos) throw std::runtime_error("bad input argument '" + arg + "': expected NAME=FILE.npy");
    arrays[arg.substr(0, eq)] = arm_host::ReadNpy(arg.substr(eq + 1));
  }
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "arm_host");
  Ort::Session session = OpenArtifact(env, dir, threads);
  Ort::AllocatorWithDefaultOptions alloc;
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<std::string> in_names, out_names;
  std::vector<Ort::Value> inputs;
  for (size_t i = 0; i < session.GetInputCount(); ++i) {
    std::string name = session.GetInputNameAllocated(i, alloc).get();
    auto it = arrays.find(name);
    if (it == arrays.end()) throw std::runtime_error("no file given for model input '" + name + "'");
    NpyArray& a = it->second;
    inputs.push_back(Ort::Value::CreateTensor(mem, a.data.data(), a.data.size(), a.shape.data(), a.shape.size(),
                                              DtypeTable().at(a.descr)));
    in_names.push_back(name);
  }
  for (size_t i = 0; i < session.GetOutputCount(); ++i)
    out_names.push_back(session.GetOutputNameAllocated(i, alloc).get());
  std::vector<const char*> in_ptrs, out_ptrs;
  for (const auto& n : in_names) in_ptrs.push_back(n.c_str());
  for (const auto& n : out_names) out_ptrs.push_back(n.c_str());
  std::vector<Ort::Value> outputs;
  for (int r = 0; r < repeat; ++r)
    outputs = session.Run(Ort::RunOptions{nullptr}, in_ptrs.data(), inputs.data(), inputs.size(), out_ptrs.data(),
                          out_ptrs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].IsTensor()) {  // ai.onnx.ml sequences and maps
      const std::string path = out_dir + "/" + std::to_string(i) + ".json";
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr) throw std::runtime_error("cannot write " + path);
      const std::string text = arm_host::ValueJson(outputs[i], alloc);
      const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
      if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot write " + path);
      std::printf("output %zu %s\n", i, out_names[i].c_str());
      continue;
    }
    auto info = outputs[i].GetTensorTypeAndShapeInfo();
    NpyArray a;
    a.descr = DescrOf(info.GetElementType());
    a.shape = info.GetShape();
    const char* data = static_cast<const char*>(outputs[i].GetTensorRawData());
    a.data.assign(data, data + info.GetElementCount() * arm_host::ItemSize(a.descr));
    arm_host::WriteNpy(out_dir + "/" + std::to_string(i) + ".npy", a);
    std::printf("output %zu %s\n", i, out_names[i].c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
