"""Layers and blocks built from spec rows."""

from mnv3.blocks.inverted_residual import InvertedResidual
from mnv3.blocks.layers import ConvBnAct, SamePad2d, SqueezeExcite, make_activation

__all__ = ["ConvBnAct", "InvertedResidual", "SamePad2d", "SqueezeExcite", "make_activation"]
