// vcc_run: run a vcc artifact without Python.
//   vcc_run DIR photo.jpg -o mask.png        preprocess per the manifest, argmax, colour mask
//   vcc_run DIR --input x.npy -o y.npy       raw float32 tensor in, first output out
//   vcc_run DIR --bench [--threads N] [--runs N]   latency median / p90 (2 warm-up runs)
// Exit 2 with one message on a missing, damaged or tampered artifact, a wrong input, an
// unreadable image.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>

#include "vcc/runtime.hpp"

namespace {

const char* kUsage =
    "usage: vcc_run DIR photo.jpg [-o mask.png | -o logits.npy] [--save-input x.npy]\n"
    "       vcc_run DIR --input x.npy [-o y.npy]\n"
    "       vcc_run DIR --bench [--threads N] [--runs N] [--json]\n";

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int to_int(const std::string& opt, const std::string& v) {
  try {
    size_t used = 0;
    int n = std::stoi(v, &used);
    if (used == v.size() && n > 0) return n;
  } catch (const std::exception&) {
  }
  throw vcc::Error(opt + ": expected a positive integer, got '" + v + "'");
}

double percentile(std::vector<double> v, double q) {  // numpy's default (linear) percentile
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string dir, image, input, output, save_input;
  bool bench = false, as_json = false;
  int threads = 0, runs = 10;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw vcc::Error(a + " needs a value");
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--input") {
      input = value();
    } else if (a == "-o" || a == "--output") {
      output = value();
    } else if (a == "--save-input") {
      save_input = value();
    } else if (a == "--bench") {
      bench = true;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--threads") {
      threads = to_int(a, value());
    } else if (a == "--runs") {
      runs = to_int(a, value());
    } else if (!a.empty() && a[0] == '-') {
      throw vcc::Error("unknown option " + a + "\n" + kUsage);
    } else if (dir.empty()) {
      dir = a;
    } else if (image.empty()) {
      image = a;
    } else {
      throw vcc::Error("unexpected argument " + a + "\n" + kUsage);
    }
  }
  if (dir.empty()) throw vcc::Error(std::string("no artifact directory given\n") + kUsage);
  if (static_cast<int>(!image.empty()) + static_cast<int>(!input.empty()) + static_cast<int>(bench) != 1)
    throw vcc::Error("give exactly one of a photo, --input x.npy or --bench");

  const auto t0 = std::chrono::steady_clock::now();
  vcc::Model model = vcc::Model::load(dir, vcc::Options{threads});
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto& shape = model.input_shape();

  if (bench) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> x(n);
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    for (int i = 0; i < 2; ++i) model.run(x.data());
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
      const auto s = std::chrono::steady_clock::now();
      model.run(x.data());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    const double med = percentile(ms, 50), p90 = percentile(ms, 90), mn = *std::min_element(ms.begin(), ms.end());
    char buf[512];
    if (as_json) {
      std::snprintf(buf, sizeof buf,
                    "{\"threads\": %d, \"input_shape\": %s, \"runs\": %d, \"load_ms\": %.3f, \"median_ms\": %.3f, "
                    "\"p90_ms\": %.3f, \"min_ms\": %.3f}\n",
                    threads, shape_str(shape).c_str(), runs, load_ms, med, p90, mn);
    } else {
      std::snprintf(buf, sizeof buf,
                    "threads %s, input %s, %d runs after 2 warm-up, load %.1f ms\n"
                    "vcc_run               median %9.2f ms   p90 %9.2f ms\n",
                    threads ? std::to_string(threads).c_str() : "default", shape_str(shape).c_str(), runs, load_ms, med, p90);
    }
    std::cout << buf;
    return 0;
  }

  if (!input.empty()) {
    vcc::Tensor x = vcc::read_npy(input);
    if (x.dtype == "float64") {  // as `vcc run --input` does
      vcc::Tensor f;
      f.shape = x.shape;
      f.dtype = "float32";
      f.bytes.resize(x.numel() * 4);
      const double* d = reinterpret_cast<const double*>(x.bytes.data());
      float* o = reinterpret_cast<float*>(f.bytes.data());
      for (int64_t i = 0; i < x.numel(); ++i) o[i] = static_cast<float>(d[i]);
      x = std::move(f);
    }
    if (x.shape != shape || x.dtype != "float32")
      throw vcc::Error("input '" + model.input().name + "' expects float32" + shape_str(shape) + ", got " + x.dtype +
                       shape_str(x.shape) + " from " + input);
    vcc::Tensor y = model.run(x.f32());
    if (output.empty()) output = "out.npy";
    if (output.size() < 4 || output.substr(output.size() - 4) != ".npy")
      throw vcc::Error("-o " + output + ": with --input the output is a .npy file");
    vcc::write_npy(output, y);
    std::cerr << "wrote " << output << " " << y.dtype << shape_str(y.shape) << "\n";
    return 0;
  }

  vcc::Image img = vcc::read_image(image);
  std::vector<float> x = model.preprocess(img);
  if (!save_input.empty()) {  // the preprocessed tensor, to compare with Python's
    vcc::Tensor t;
    t.shape = shape;
    t.dtype = "float32";
    t.bytes.assign(reinterpret_cast<const uint8_t*>(x.data()), reinterpret_cast<const uint8_t*>(x.data() + x.size()));
    vcc::write_npy(save_input, t);
  }
  vcc::Tensor y = model.run(x.data());
  if (output.empty()) output = "out.png";
  if (output.size() >= 4 && output.substr(output.size() - 4) == ".npy") {
    vcc::write_npy(output, y);
    std::cerr << "wrote " << output << " " << y.dtype << shape_str(y.shape) << "\n";
    return 0;
  }
  std::vector<uint8_t> mask = vcc::argmax(y);
  const int h = static_cast<int>(y.shape[2]), w = static_cast<int>(y.shape[3]);
  vcc::write_mask_png(output, mask, h, w);
  std::cerr << "wrote " << output << " (" << w << "x" << h << " mask)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const vcc::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
