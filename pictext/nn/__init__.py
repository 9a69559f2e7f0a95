"""Layers shared by two or more model families."""

from pictext.nn.attention import MultiheadSelfAttention
from pictext.nn.transformer import QuickGELU, ResidualAttentionBlock, Transformer, activation_layer

__all__ = ["MultiheadSelfAttention", "QuickGELU", "ResidualAttentionBlock", "Transformer", "activation_layer"]
