// consumer MODEL_DIR x.npy y.npy: load an artifact through the installed vcc package, run it.
#include <iostream>

#include <vcc/runtime.hpp>

int main(int argc, char** argv) {
  if (argc != 4) return 1;
  try {
    vcc::Model m = vcc::Model::load(argv[1], vcc::Options{1});
    vcc::Tensor x = vcc::read_npy(argv[2]);
    vcc::Tensor y = m.run(x.f32());
    vcc::write_npy(argv[3], y);
    std::cout << "input";
    for (int64_t d : m.input_shape()) std::cout << " " << d;
    std::cout << " -> " << y.numel() << " " << y.dtype << "\n";
  } catch (const vcc::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
