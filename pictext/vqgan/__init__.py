"""VQGAN: a vector-quantized autoencoder with a patch discriminator (model, losses, taming import, training)."""

from pictext.vqgan.model import VQGAN, VQGANConfig
from pictext.vqgan.quantize import GumbelQuantizer, Quantized, VectorQuantizer

__all__ = ["VQGAN", "VQGANConfig", "GumbelQuantizer", "Quantized", "VectorQuantizer"]
