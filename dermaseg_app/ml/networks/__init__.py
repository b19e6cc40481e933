"""The seed papers' lesion segmenters beside SLSNet (docs/seed-networks.md).

Each network follows SLSNet's generator contract (``ml.slsnet.SLSNetGenerator``): input RGB in
[0, 1] as (B, 3, H, W) (any normalisation a paper asks for happens inside the network),
``forward_logits`` gives pre-sigmoid lesion scores (B, 1, H, W), ``forward`` their sigmoid.
None of them has a discriminator: they train supervised with their paper's loss
(``ml.losses_seeds``).
"""

from .dual_attention_unet import DualAttentionUNet, DualAttentionUNetConfig
from .mobile_deeplab import MobileDeepLab, MobileDeepLabConfig
from .slsdeep import SLSDeep, SLSDeepConfig

__all__ = [
    "DualAttentionUNet",
    "DualAttentionUNetConfig",
    "MobileDeepLab",
    "MobileDeepLabConfig",
    "SLSDeep",
    "SLSDeepConfig",
]
