"""ALIGNN graph networks: edge-gated convolution, ALIGNN layer, encoder, pooling, heads."""

from hopnet.nn.config import EncoderConfig, EncoderConfigError
from hopnet.nn.encoder import AlignnEncoder, EncoderOutput, GraphInputError
from hopnet.nn.heads import LinearHead, MLPHead, MultiHead
from hopnet.nn.layers import AlignnLayer, EdgeGatedGraphConv, MLPLayer, RBFExpansion
from hopnet.nn.pooling import AttentionPooling, MeanPooling, PoolingError

__all__ = [
    "AlignnEncoder", "AlignnLayer", "AttentionPooling", "EdgeGatedGraphConv", "EncoderConfig",
    "EncoderConfigError", "EncoderOutput", "GraphInputError", "LinearHead", "MLPHead", "MLPLayer",
    "MeanPooling", "MultiHead", "PoolingError", "RBFExpansion",
]
