"""unCLIP (DALL-E 2): a diffusion prior and a diffusion decoder in a CLIP's embedding space.

This package's modules bring diffusers (seconds to import); this file stays light, so that the CLI can read the
defaults below without them.
"""

DECODER_GUIDANCE = 1.5  # the decoder's classifier-free guidance by default (docs/measurements.md: why 1.5)
