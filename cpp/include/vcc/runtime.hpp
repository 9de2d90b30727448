// vcc C++ runtime: load a vcc artifact (a directory with model.so + manifest.json) and run it.
//
//   vcc::Model m = vcc::Model::load("bisenet-int8/");   // checks every file's sha256
//   vcc::Image img = vcc::read_image("photo.jpg");      // JPEG / PNG -> RGB8
//   std::vector<float> x = m.preprocess(img);          // resize, mean/std, colour order (manifest)
//   vcc::Tensor y = m.run(x.data());                   // float32 NCHW of m.input_shape()
//   std::vector<uint8_t> mask = vcc::argmax(y);        // class id per pixel
//
// Every failure is a vcc::Error whose message names the file, field or shape at fault.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace vcc {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A dense C-order tensor (the model's outputs; .npy files).
struct Tensor {
  std::vector<int64_t> shape;
  std::string dtype;           // numpy-style name: float32, float64, int8, uint8, int32, int64
  std::vector<uint8_t> bytes;  // the elements, C order, little endian
  int64_t numel() const;
  const float* f32() const;  // the data as float32 (a vcc::Error if dtype is not float32)
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
};

// How a photo becomes the model input (the manifest's "preprocess").
struct Preprocess {
  int height = 0, width = 0;
  std::vector<double> mean, std;  // per model channel, in 0..1 pixel units
  std::string color = "RGB";      // channel order the model expects: RGB or BGR
};

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3, interleaved R G B
};

struct Options {
  int threads = 0;  // TVM worker threads (0: TVM_NUM_THREADS or the core count); read by the
                    // first model that runs in the process
};

class Model {
 public:
  static Model load(const std::string& dir, const Options& options = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const std::string& dir() const;
  const std::vector<int64_t>& input_shape() const;
  const TensorInfo& input() const;
  const std::vector<TensorInfo>& outputs() const;
  const Preprocess& preprocessing() const;
  const std::string& dtype() const;  // the artifact's precision (fp32 / int8)

  // an RGB image -> float32 NCHW input (resized as Pillow's BILINEAR resize does)
  std::vector<float> preprocess(const Image& image) const;
  // run on a float32 NCHW buffer of input_shape(); the first output / all outputs
  Tensor run(const float* nchw) const;
  std::vector<Tensor> run_all(const float* nchw) const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Set TVM's worker thread count (must come before the first run in the process).
void set_threads(int threads);

Image read_image(const std::string& path);  // JPEG or PNG (grey, palette, alpha converted to RGB)
Image resize_bilinear(const Image& image, int width, int height);  // Pillow's BILINEAR, bit-exact

// (1, C, H, W) logits -> H * W class ids (the first maximum, as numpy's argmax)
std::vector<uint8_t> argmax(const Tensor& logits);
// a class-id map as a palette PNG with the PASCAL VOC palette (as `vcc run` writes it)
void write_mask_png(const std::string& path, const std::vector<uint8_t>& mask, int height, int width);

Tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const Tensor& tensor);

std::string sha256_file(const std::string& path);

}  // namespace vcc
