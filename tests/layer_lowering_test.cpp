#include <gtest/gtest.h>

#include "npu_model/layer_lowering.hpp"

namespace npusim {
namespace {

npu::LayerSpec conv(std::uint32_t size, std::uint32_t in, std::uint32_t out, std::uint32_t kernel,
                    std::uint32_t stride, std::uint32_t pad, std::uint32_t groups = 1) {
  npu::LayerSpec l;
  l.name = "conv";
  l.in_height = l.in_width = size;
  l.in_channels = in;
  l.out_channels = out;
  l.kernel_height = l.kernel_width = kernel;
  l.stride_height = l.stride_width = stride;
  l.padding_height = l.padding_width = pad;
  l.groups = groups;
  return l;
}

TEST(LayerLowering, ConvolutionWithStrideAndPadding) {
  // ResNet-50 conv1: 224x224x3, 7x7/2, pad 3, 64 filters -> 112x112x64.
  const auto w = npu::lower(conv(224, 3, 64, 7, 2, 3));
  EXPECT_EQ(w.out_height, 112u);  // (224 + 6 - 7) / 2 + 1
  EXPECT_EQ(w.gemm, (npu::GemmShape{112 * 112, 7 * 7 * 3, 64, 1, {224, 224, 7, 7, 2, 2, 3, 3}}));
  // The window lets the array form im2col rows on chip: it resolves to R and P again.
  const auto f = npu::feature_map_of(w.gemm);
  EXPECT_EQ(f.out_height * f.out_width, w.gemm.rows);
  EXPECT_EQ(f.channels, 3u);
}

TEST(LayerLowering, DepthwiseAndGroupedConvolution) {
  // MobileNetV2 depthwise 3x3 over 112x112x32: 32 groups of (12544 x 9) * (9 x 1).
  const auto dw = npu::lower(conv(112, 32, 32, 3, 1, 1, 32));
  EXPECT_EQ(dw.gemm, (npu::GemmShape{112 * 112, 9, 1, 32, {112, 112, 3, 3, 1, 1, 1, 1}}));
  const auto grouped = npu::lower(conv(56, 128, 128, 3, 1, 1, 32));
  EXPECT_EQ(grouped.gemm, (npu::GemmShape{56 * 56, 9 * 4, 4, 32, {56, 56, 3, 3, 1, 1, 1, 1}}));
  EXPECT_THROW(npu::lower(conv(56, 100, 128, 3, 1, 1, 32)), npu::InvalidLayer);
}

TEST(LayerLowering, FullyConnectedPoolingAndElementwise) {
  npu::LayerSpec fc;
  fc.name = "fc";
  fc.kind = npu::LayerKind::fully_connected;
  fc.in_channels = 2048;
  fc.out_channels = 1000;
  EXPECT_EQ(npu::lower(fc).gemm, (npu::GemmShape{1, 2048, 1000, 1}));

  npu::LayerSpec pool = conv(8, 64, 64, 8, 8, 0);
  pool.kind = npu::LayerKind::pooling;
  const auto p = npu::lower(pool);
  ASSERT_TRUE(p.on_vector_path);
  EXPECT_EQ(p.vector.input_elements, 8u * 8u * 64u);
  EXPECT_EQ(p.vector.output_elements, 64u);
  EXPECT_EQ(p.vector.operations, 64u * 64u);  // 64 outputs x 8x8 window

  npu::LayerSpec add = conv(16, 32, 32, 1, 1, 0);
  add.kind = npu::LayerKind::elementwise;
  const auto a = npu::lower(add);
  EXPECT_EQ(a.vector.input_elements, 2u * 16u * 16u * 32u);
  EXPECT_EQ(a.vector.output_elements, 16u * 16u * 32u);
}

TEST(LayerLowering, BadLayersNameTheProblem) {
  EXPECT_THROW(npu::lower(conv(4, 3, 8, 7, 1, 0)), npu::InvalidLayer);  // kernel > input
  EXPECT_THROW(npu::lower(conv(4, 3, 8, 3, 0, 0)), npu::InvalidLayer);  // stride 0
  try {
    npu::lower(conv(4, 3, 8, 7, 1, 1));
    FAIL();
  } catch (const npu::InvalidLayer& e) {
    EXPECT_STREQ(e.what(), "layer conv: kernel height = 7 does not fit the padded height 6");
  }
}

}  // namespace
}  // namespace npusim
