"""CLIP: contrastive language-image pretraining (Radford et al. 2021)."""

from pictext.clip.configs import CLIP_CONFIGS, get_config
from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig

__all__ = ["CLIP", "CLIPConfig", "CLIP_CONFIGS", "TextConfig", "VisionConfig", "get_config"]
