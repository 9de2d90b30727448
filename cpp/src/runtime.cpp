// vcc::Model: the manifest, the sha256 checks and the TVM Relax VM behind the public header.
#include <dlpack/dlpack.h>
#include <openssl/evp.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>

#include "vcc/runtime.hpp"

namespace ffi = tvm::ffi;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace vcc {

namespace {

constexpr int kFormatVersion = 2;

std::string dl_dtype_name(DLDataType t) {
  if (t.lanes != 1) throw Error("vector dtypes are not supported as model outputs");
  if (t.code == kDLFloat) return "float" + std::to_string(t.bits);
  if (t.code == kDLInt) return "int" + std::to_string(t.bits);
  if (t.code == kDLUInt) return t.bits == 1 ? "bool" : "uint" + std::to_string(t.bits);
  throw Error("unsupported output dtype code " + std::to_string(t.code));
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// a manifest field, with the field's name in the error when it is missing or mistyped
template <typename T>
T field(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) throw Error(where + ": field \"" + key + "\" is missing");
  try {
    return obj.at(key).get<T>();
  } catch (const json::exception& e) {
    throw Error(where + ": field \"" + key + "\" has the wrong type (" + e.what() + ")");
  }
}

TensorInfo tensor_info(const json& j, const std::string& where) {
  TensorInfo t;
  t.name = field<std::string>(j, "name", where);
  t.shape = field<std::vector<int64_t>>(j, "shape", where);
  t.dtype = field<std::string>(j, "dtype", where);
  return t;
}

struct CpuAlloc {
  void AllocData(DLTensor* t) {
    size_t n = ffi::GetDataSize(*t);
    t->data = std::aligned_alloc(64, (n + 63) / 64 * 64);
    if (t->data == nullptr) throw Error("out of memory allocating " + std::to_string(n) + " bytes");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

Tensor to_tensor(const ffi::Tensor& t) {
  const DLTensor* dl = t.GetDLTensorPtr();
  Tensor out;
  out.dtype = dl_dtype_name(dl->dtype);
  out.shape.assign(dl->shape, dl->shape + dl->ndim);
  if (dl->strides != nullptr) {
    int64_t expect = 1;
    for (int i = dl->ndim - 1; i >= 0; --i) {
      if (dl->shape[i] != 1 && dl->strides[i] != expect) throw Error("a model output is not contiguous");
      expect *= dl->shape[i];
    }
  }
  size_t n = ffi::GetDataSize(*dl);
  out.bytes.resize(n);
  std::memcpy(out.bytes.data(), static_cast<const uint8_t*>(dl->data) + dl->byte_offset, n);
  return out;
}

}  // namespace

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const float* Tensor::f32() const {
  if (dtype != "float32") throw Error("tensor is " + dtype + ", not float32");
  return reinterpret_cast<const float*>(bytes.data());
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(f.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned int i = 0; i < len; ++i) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return s;
}

void set_threads(int threads) {
  if (threads <= 0) throw Error("threads must be positive, got " + std::to_string(threads));
  setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);
  setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), 1);
}

struct Model::Impl {
  std::string dir;
  std::string dtype;
  TensorInfo input;
  std::vector<TensorInfo> outputs;
  Preprocess pre;
  std::optional<ffi::Module> lib, exec;
  std::optional<ffi::Function> main;
  std::optional<ffi::Tensor> x;  // the input buffer, reused across runs
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::string& dir_arg, const Options& options) {
  if (options.threads > 0) set_threads(options.threads);
  fs::path dir(dir_arg);
  if (!fs::is_directory(dir)) throw Error(dir_arg + ": no such artifact directory");
  fs::path mpath = dir / "manifest.json";
  if (!fs::is_regular_file(mpath)) throw Error(dir_arg + ": not a vcc artifact (manifest.json is missing)");
  const std::string where = mpath.string();
  json m;
  {
    std::ifstream f(mpath);
    try {
      m = json::parse(f);
    } catch (const json::exception& e) {
      throw Error(where + ": corrupt manifest (" + e.what() + ")");
    }
  }
  if (!m.is_object()) throw Error(where + ": corrupt manifest (not a JSON object)");
  if (!m.contains("format_version") || m["format_version"] != kFormatVersion || !m.contains("files"))
    throw Error(where + ": unknown artifact format " + (m.contains("format_version") ? m["format_version"].dump() : "None"));
  const json& files = m["files"];
  if (!files.is_object()) throw Error(where + ": field \"files\" is not an object");
  for (const auto& [name, info] : files.items()) {
    fs::path p = dir / name;
    if (!fs::is_regular_file(p)) throw Error(dir_arg + ": artifact file " + name + " is missing");
    if (sha256_file(p.string()) != field<std::string>(info, "sha256", where + " files." + name))
      throw Error(dir_arg + ": artifact file " + name + " was altered (sha256 differs from the manifest)");
  }
  if (!files.contains("model.so")) throw Error(where + ": the manifest lists no model.so");

  auto impl = std::make_unique<Impl>();
  impl->dir = dir_arg;
  impl->dtype = m.contains("dtype") && m["dtype"].is_string() ? m["dtype"].get<std::string>() : "";
  const json& inputs = m.contains("inputs") ? m["inputs"] : json();
  if (!inputs.is_array() || inputs.empty()) throw Error(where + ": field \"inputs\" is missing or empty");
  impl->input = tensor_info(inputs[0], where + " inputs[0]");
  if (impl->input.dtype != "float32")
    throw Error(where + ": input " + impl->input.name + " is " + impl->input.dtype + "; vcc's C++ runtime feeds float32");
  const json& outs = m.contains("outputs") ? m["outputs"] : json();
  if (!outs.is_array() || outs.empty()) throw Error(where + ": field \"outputs\" is missing or empty");
  for (size_t i = 0; i < outs.size(); ++i) impl->outputs.push_back(tensor_info(outs[i], where + " outputs[" + std::to_string(i) + "]"));
  if (m.contains("preprocess") && m["preprocess"].is_object()) {
    const json& p = m["preprocess"];
    const std::string pw = where + " preprocess";
    auto size = field<std::vector<int>>(p, "size", pw);
    if (size.size() != 2) throw Error(pw + ": field \"size\" must be [H, W]");
    impl->pre.height = size[0];
    impl->pre.width = size[1];
    impl->pre.mean = field<std::vector<double>>(p, "mean", pw);
    impl->pre.std = field<std::vector<double>>(p, "std", pw);
    impl->pre.color = p.contains("color") ? field<std::string>(p, "color", pw) : "RGB";
  }

  const std::string lib_path = (dir / "model.so").string();
  try {
    impl->lib = ffi::Module::LoadFromFile(lib_path);
    auto load_exec = (*impl->lib)->GetFunction("vm_load_executable");
    if (!load_exec.has_value()) throw Error(lib_path + ": not a TVM Relax executable (no vm_load_executable)");
    impl->exec = (*load_exec)().cast<ffi::Module>();
    auto init = (*impl->exec)->GetFunction("vm_initialization");
    if (!init.has_value()) throw Error(lib_path + ": the executable has no vm_initialization");
    (*init)(static_cast<int>(kDLCPU), 0, 2);  // device type CPU, id 0, pooled allocator
    auto main = (*impl->exec)->GetFunction("main");
    if (!main.has_value()) throw Error(lib_path + ": the executable has no main function");
    impl->main = *main;
    impl->x = ffi::Tensor::FromNDAlloc(CpuAlloc(), ffi::ShapeView(impl->input.shape.data(), impl->input.shape.size()),
                                       DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
  } catch (const ffi::Error& e) {
    throw Error(lib_path + ": cannot load the compiled library (" + e.message() + ")");
  }
  return Model(std::move(impl));
}

const std::string& Model::dir() const { return impl_->dir; }
const std::vector<int64_t>& Model::input_shape() const { return impl_->input.shape; }
const TensorInfo& Model::input() const { return impl_->input; }
const std::vector<TensorInfo>& Model::outputs() const { return impl_->outputs; }
const Preprocess& Model::preprocessing() const { return impl_->pre; }
const std::string& Model::dtype() const { return impl_->dtype; }

std::vector<Tensor> Model::run_all(const float* nchw) const {
  DLTensor* x = const_cast<DLTensor*>(impl_->x->GetDLTensorPtr());
  std::memcpy(x->data, nchw, ffi::GetDataSize(*x));
  std::vector<Tensor> out;
  try {
    ffi::Any y = (*impl_->main)(*impl_->x);
    if (auto t = y.as<ffi::Tensor>()) {
      out.push_back(to_tensor(*t));
    } else if (auto arr = y.as<ffi::Array<ffi::Any>>()) {
      for (const ffi::Any& a : *arr) out.push_back(to_tensor(a.cast<ffi::Tensor>()));
    } else {
      throw Error(impl_->dir + ": main returned neither a tensor nor a tuple of tensors");
    }
  } catch (const ffi::Error& e) {
    throw Error(impl_->dir + ": running the model failed (" + e.message() + ")");
  }
  return out;
}

Tensor Model::run(const float* nchw) const { return std::move(run_all(nchw).front()); }

std::vector<float> Model::preprocess(const Image& image) const {
  const Preprocess& p = impl_->pre;
  if (p.height <= 0 || p.width <= 0) throw Error(impl_->dir + ": the manifest has no preprocessing (field \"preprocess\")");
  const auto& shape = impl_->input.shape;
  if (shape.size() != 4 || shape[0] != 1 || shape[1] != 3 || shape[2] != p.height || shape[3] != p.width)
    throw Error(impl_->dir + ": preprocessing size [" + std::to_string(p.height) + ", " + std::to_string(p.width) +
                "] does not fit the input " + shape_str(shape));
  if (p.mean.size() != 3 || p.std.size() != 3) throw Error(impl_->dir + ": preprocess mean / std need 3 values");
  if (p.color != "RGB" && p.color != "BGR") throw Error(impl_->dir + ": preprocess color must be RGB or BGR, got " + p.color);
  Image r = resize_bilinear(image, p.width, p.height);
  const size_t hw = static_cast<size_t>(p.height) * p.width;
  std::vector<float> x(3 * hw);
  const float mean[3] = {static_cast<float>(p.mean[0]), static_cast<float>(p.mean[1]), static_cast<float>(p.mean[2])};
  const float stdv[3] = {static_cast<float>(p.std[0]), static_cast<float>(p.std[1]), static_cast<float>(p.std[2])};
  for (int c = 0; c < 3; ++c) {
    const int src = p.color == "BGR" ? 2 - c : c;
    for (size_t i = 0; i < hw; ++i) {
      // the same float32 operations, in the same order, as numpy: (v / 255 - mean) / std
      float v = static_cast<float>(r.rgb[i * 3 + src]) / 255.0f;
      x[c * hw + i] = (v - mean[c]) / stdv[c];
    }
  }
  return x;
}

std::vector<uint8_t> argmax(const Tensor& logits) {
  if (logits.shape.size() != 4 || logits.shape[0] != 1)
    throw Error("the model's output " + shape_str(logits.shape) + " is not a (1, C, H, W) map; write it as .npy");
  const int64_t c = logits.shape[1], hw = logits.shape[2] * logits.shape[3];
  if (c > 256) throw Error("the output has " + std::to_string(c) + " classes; a mask PNG holds at most 256");
  const float* y = logits.f32();
  std::vector<uint8_t> mask(hw, 0);
  for (int64_t i = 0; i < hw; ++i) {
    float best = y[i];
    for (int64_t k = 1; k < c; ++k) {
      float v = y[k * hw + i];
      if (v > best || (std::isnan(v) && !std::isnan(best))) {
        best = v;
        mask[i] = static_cast<uint8_t>(k);
      }
    }
  }
  return mask;
}

}  // namespace vcc
