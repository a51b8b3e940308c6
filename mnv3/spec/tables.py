"""The paper's architecture tables as data: MobileNetV3-Large (Table 1) and -Small (Table 2).

Widths are the nominal (multiplier 1.0) values printed in the paper; transforms in
:mod:`mnv3.spec.transforms` derive every other variant from these two tables.
"""

from __future__ import annotations

from mnv3.spec.types import Activation, BlockSpec, HeadSpec, ModelSpec, StemSpec

RE = Activation.RELU
HS = Activation.HSWISH

# fmt: off
#                     k  exp   out  SE     NL  s      # paper Table 1, input size
LARGE_BLOCKS = (
    BlockSpec(3,  16,  16, False, RE, 1),  # 1   112^2 x 16
    BlockSpec(3,  64,  24, False, RE, 2),  # 2   112^2 x 16
    BlockSpec(3,  72,  24, False, RE, 1),  # 3    56^2 x 24
    BlockSpec(5,  72,  40, True,  RE, 2),  # 4    56^2 x 24
    BlockSpec(5, 120,  40, True,  RE, 1),  # 5    28^2 x 40
    BlockSpec(5, 120,  40, True,  RE, 1),  # 6    28^2 x 40
    BlockSpec(3, 240,  80, False, HS, 2),  # 7    28^2 x 40
    BlockSpec(3, 200,  80, False, HS, 1),  # 8    14^2 x 80
    BlockSpec(3, 184,  80, False, HS, 1),  # 9    14^2 x 80
    BlockSpec(3, 184,  80, False, HS, 1),  # 10   14^2 x 80
    BlockSpec(3, 480, 112, True,  HS, 1),  # 11   14^2 x 80
    BlockSpec(3, 672, 112, True,  HS, 1),  # 12   14^2 x 112
    BlockSpec(5, 672, 160, True,  HS, 2),  # 13   14^2 x 112  (its expansion is SSDLite's C4)
    BlockSpec(5, 960, 160, True,  HS, 1),  # 14    7^2 x 160
    BlockSpec(5, 960, 160, True,  HS, 1),  # 15    7^2 x 160
)

#                     k  exp   out  SE     NL  s      # paper Table 2, input size
SMALL_BLOCKS = (
    BlockSpec(3,  16,  16, True,  RE, 2),  # 1   112^2 x 16
    BlockSpec(3,  72,  24, False, RE, 2),  # 2    56^2 x 16
    BlockSpec(3,  88,  24, False, RE, 1),  # 3    28^2 x 24
    BlockSpec(5,  96,  40, True,  HS, 2),  # 4    28^2 x 24
    BlockSpec(5, 240,  40, True,  HS, 1),  # 5    14^2 x 40
    BlockSpec(5, 240,  40, True,  HS, 1),  # 6    14^2 x 40
    BlockSpec(5, 120,  48, True,  HS, 1),  # 7    14^2 x 40
    BlockSpec(5, 144,  48, True,  HS, 1),  # 8    14^2 x 48
    BlockSpec(5, 288,  96, True,  HS, 2),  # 9    14^2 x 48  (its expansion is SSDLite's C4)
    BlockSpec(5, 576,  96, True,  HS, 1),  # 10    7^2 x 96
    BlockSpec(5, 576,  96, True,  HS, 1),  # 11    7^2 x 96
)
# fmt: on

LARGE = ModelSpec(
    name="mobilenetv3_large",
    stem=StemSpec(out=16, act=HS),  # conv2d 3x3, s2, HS
    blocks=LARGE_BLOCKS,
    head=HeadSpec(conv_out=960, hidden=1280, act=HS),  # conv2d 1x1 960, pool, 1x1 1280 NBN, 1x1 k
)

# Table 2 ticks SE on the 576 head conv; no reference implementation (TF-slim, torchvision,
# Keras) or released checkpoint has it, so the head here has none (docs/architecture.md).
SMALL = ModelSpec(
    name="mobilenetv3_small",
    stem=StemSpec(out=16, act=HS),
    blocks=SMALL_BLOCKS,
    head=HeadSpec(conv_out=576, hidden=1024, act=HS),
)

# MnasNet-A1 (Tan et al., "MnasNet", arXiv 1807.11626, Fig. 7; tensorflow/tpu models/official/mnasnet/
# mnasnet_models.py, mnasnet_a1): the platform-aware NAS result MobileNetV3-Large's search restarts from
# (§4.1). ReLU throughout; SepConv = a block whose expansion equals its input (no 1x1 expansion).
# Its SE squeezes to 1/4 of the block's *input* width (1/24 of an x6 expansion): MNASNET_SE_RATIO below,
# rounded to the divisor like every mnv3 width; mnv3's SE gate is the hard sigmoid (MnasNet: sigmoid).
# fmt: off
#                     k  exp   out  SE     NL  s      # MnasNet Fig. 7, stage
MNASNET_A1_BLOCKS = (
    BlockSpec(3,  32,  16, False, RE, 1),  # SepConv 3x3, 16            x1
    BlockSpec(3,  96,  24, False, RE, 2),  # MBConv6 3x3, 24            x2
    BlockSpec(3, 144,  24, False, RE, 1),
    BlockSpec(5,  72,  40, True,  RE, 2),  # MBConv3 5x5 SE, 40         x3
    BlockSpec(5, 120,  40, True,  RE, 1),
    BlockSpec(5, 120,  40, True,  RE, 1),
    BlockSpec(3, 240,  80, False, RE, 2),  # MBConv6 3x3, 80            x4
    BlockSpec(3, 480,  80, False, RE, 1),
    BlockSpec(3, 480,  80, False, RE, 1),
    BlockSpec(3, 480,  80, False, RE, 1),
    BlockSpec(3, 480, 112, True,  RE, 1),  # MBConv6 3x3 SE, 112        x2
    BlockSpec(3, 672, 112, True,  RE, 1),
    BlockSpec(5, 672, 160, True,  RE, 2),  # MBConv6 5x5 SE, 160        x3
    BlockSpec(5, 960, 160, True,  RE, 1),
    BlockSpec(5, 960, 160, True,  RE, 1),
    BlockSpec(3, 960, 320, False, RE, 1),  # MBConv6 3x3, 320           x1
)
# fmt: on
MNASNET_SE_RATIO = 1 / 24  # squeeze = input / 4 for an x6 expansion (x3 stage: rounded up to the divisor)

MNASNET_A1 = ModelSpec(
    name="mnasnet_a1",
    stem=StemSpec(out=32, act=RE),  # conv 3x3, s2, 32
    blocks=MNASNET_A1_BLOCKS,
    head=HeadSpec(conv_out=1280, hidden=0, act=RE),  # conv 1x1 1280 before pooling, pool, FC (no hidden layer)
)
