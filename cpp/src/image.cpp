// Photos: JPEG (libjpeg) and PNG (libpng) decoding to RGB8, Pillow's BILINEAR resize
// reproduced bit for bit (a separable, antialiasing convolution in 22-bit fixed point:
// horizontal pass first, then vertical, each rounded and clipped to 8 bits), and the palette
// mask PNG that `vcc run` writes.
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t
#include <cstring>
#include <memory>

#include <jpeglib.h>
#include <png.h>

#include "vcc/runtime.hpp"

namespace vcc {

namespace {

struct File {
  FILE* f;
  explicit File(const std::string& path, const char* mode) : f(std::fopen(path.c_str(), mode)) {}
  ~File() {
    if (f) std::fclose(f);
  }
};

struct JpegErr {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->msg);
  longjmp(err->jump, 1);
}

void jpeg_quiet(j_common_ptr, int) {}

Image read_jpeg(const std::string& path, FILE* f) {
  jpeg_decompress_struct cinfo;
  JpegErr err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_quiet;
  Image img;
  std::vector<uint8_t> row;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(path + ": cannot read the image (" + err.msg + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  const bool grey = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(path + ": cannot read the image (CMYK JPEG is not supported)");
  }
  cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;  // libjpeg's defaults otherwise, as Pillow
  jpeg_start_decompress(&cinfo);
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
  row.resize(static_cast<size_t>(img.width) * cinfo.output_components);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = row.data();
    const size_t y = cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &r, 1);
    uint8_t* out = &img.rgb[y * img.width * 3];
    if (grey) {
      for (int x = 0; x < img.width; ++x) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
    } else {
      std::memcpy(out, row.data(), row.size());
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

Image read_png(const std::string& path, FILE* f) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) throw Error(path + ": cannot read the image (libpng init failed)");
  Image img;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": cannot read the image (damaged PNG)");
  }
  png_init_io(png, f);
  png_read_info(png, info);
  const int ct = png_get_color_type(png, info);
  // 16-bit grey is Pillow's I;16, whose RGB conversion clips each value to 255; other 16-bit
  // PNGs keep their high byte, as libpng's strip_16
  const bool grey16 = ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) == 16;
  if (png_get_bit_depth(png, info) == 16 && !grey16) png_set_strip_16(png);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((ct == PNG_COLOR_TYPE_GRAY && !grey16) || ct == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_gray_to_rgb(png);
  }
  if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);  // Pillow's RGBA -> RGB drops alpha too
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  img.width = static_cast<int>(png_get_image_width(png, info));
  img.height = static_cast<int>(png_get_image_height(png, info));
  if (grey16) {
    std::vector<uint8_t> raw(static_cast<size_t>(img.width) * img.height * 2);
    rows.resize(img.height);
    for (int y = 0; y < img.height; ++y) rows[y] = &raw[static_cast<size_t>(y) * img.width * 2];
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    png_destroy_read_struct(&png, &info, nullptr);
    img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
    for (size_t i = 0; i < static_cast<size_t>(img.width) * img.height; ++i) {
      const int v = raw[2 * i] << 8 | raw[2 * i + 1];  // PNG samples are big-endian
      img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
    return img;
  }
  if (png_get_rowbytes(png, info) != static_cast<size_t>(img.width) * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": cannot read the image (unsupported PNG layout)");
  }
  img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
  rows.resize(img.height);
  for (int y = 0; y < img.height; ++y) rows[y] = &img.rgb[static_cast<size_t>(y) * img.width * 3];
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed-point precision for 8-bit images

double bilinear(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// per output position: the first input index, the count, and fixed-point weights (ksize each)
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> w;
};

Coeffs coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;  // the bilinear filter's support is 1
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.w.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = bilinear((x + xmin - center + 0.5) * ss);
      total += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = total != 0.0 ? k[x] / total : k[x];
      c.w[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image read_image(const std::string& path) {
  File file(path, "rb");
  if (!file.f) throw Error(path + ": cannot read the image (" + std::strerror(errno) + ")");
  unsigned char sig[8] = {0};
  const size_t n = std::fread(sig, 1, 8, file.f);
  std::rewind(file.f);
  if (n >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) return read_jpeg(path, file.f);
  if (n == 8 && png_sig_cmp(sig, 0, 8) == 0) return read_png(path, file.f);
  throw Error(path + ": cannot read the image (not a JPEG or PNG file)");
}

Image resize_bilinear(const Image& in, int width, int height) {
  if (width <= 0 || height <= 0) throw Error("resize to " + std::to_string(width) + "x" + std::to_string(height));
  if (in.width <= 0 || in.height <= 0) throw Error("resize of an empty image");
  if (in.width == width && in.height == height) return in;
  const Coeffs cx = coefficients(in.width, width), cy = coefficients(in.height, height);
  // the rows the vertical pass reads
  const int y_first = cy.first.front(), y_last = cy.first.back() + cy.count.back();
  const Image* src = &in;
  Image tmp;
  int row0 = 0;  // index of src's first row in the input
  if (width != in.width) {
    tmp.width = width;
    tmp.height = y_last - y_first;
    tmp.rgb.resize(static_cast<size_t>(tmp.width) * tmp.height * 3);
    for (int y = 0; y < tmp.height; ++y) {
      const uint8_t* r = &in.rgb[static_cast<size_t>(y + y_first) * in.width * 3];
      uint8_t* o = &tmp.rgb[static_cast<size_t>(y) * width * 3];
      for (int xx = 0; xx < width; ++xx) {
        const int32_t* k = &cx.w[static_cast<size_t>(xx) * cx.ksize];
        int64_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < cx.count[xx]; ++x) {
          const uint8_t* p = &r[(x + cx.first[xx]) * 3];
          s0 += p[0] * static_cast<int64_t>(k[x]);
          s1 += p[1] * static_cast<int64_t>(k[x]);
          s2 += p[2] * static_cast<int64_t>(k[x]);
        }
        o[3 * xx] = clip8(s0);
        o[3 * xx + 1] = clip8(s1);
        o[3 * xx + 2] = clip8(s2);
      }
    }
    src = &tmp;
    row0 = y_first;
  }
  if (height == in.height) return *src;
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int yy = 0; yy < height; ++yy) {
    const int32_t* k = &cy.w[static_cast<size_t>(yy) * cy.ksize];
    uint8_t* o = &out.rgb[static_cast<size_t>(yy) * width * 3];
    for (int xx = 0; xx < width; ++xx) {
      int64_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int y = 0; y < cy.count[yy]; ++y) {
        const uint8_t* p = &src->rgb[(static_cast<size_t>(y + cy.first[yy] - row0) * width + xx) * 3];
        s0 += p[0] * static_cast<int64_t>(k[y]);
        s1 += p[1] * static_cast<int64_t>(k[y]);
        s2 += p[2] * static_cast<int64_t>(k[y]);
      }
      o[3 * xx] = clip8(s0);
      o[3 * xx + 1] = clip8(s1);
      o[3 * xx + 2] = clip8(s2);
    }
  }
  return out;
}

void write_mask_png(const std::string& path, const std::vector<uint8_t>& mask, int height, int width) {
  if (mask.size() != static_cast<size_t>(height) * width) throw Error(path + ": mask size does not match its shape");
  png_color palette[256];
  for (int k = 0; k < 256; ++k) {  // the PASCAL VOC palette: class k's bits interleaved over R, G, B
    int c = k, r = 0, g = 0, b = 0;
    for (int j = 0; j < 8; ++j) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    palette[k] = png_color{static_cast<png_byte>(r), static_cast<png_byte>(g), static_cast<png_byte>(b)};
  }
  const std::string tmp = path + ".tmp";
  {
    File file(tmp, "wb");
    if (!file.f) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    if (!info) throw Error(path + ": libpng init failed");
    if (setjmp(png_jmpbuf(png))) {
      png_destroy_write_struct(&png, &info);
      std::remove(tmp.c_str());
      throw Error(path + ": writing the PNG failed");
    }
    png_init_io(png, file.f);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_set_PLTE(png, info, palette, 256);
    png_write_info(png, info);
    for (int y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(&mask[static_cast<size_t>(y) * width]));
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot write");
}

}  // namespace vcc
