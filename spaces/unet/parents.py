"""The ``unet-blocks`` parents: ``unet-small`` (the default; a few minutes on two cores) and
``unet-tiny`` (for tests; seconds)."""

from __future__ import annotations

from .._parents import register_family
from .model import UNetConfig

__all__ = ["PARENT_CONFIGS", "PARENT_STEPS"]

# methods §5.4's tiny U-Net, on 16x16 images: 3 stages at 16, 8 and 4 pixels, two ResNet
# blocks per stage, attention in the two low-resolution stages (as SD's U-Net, whose
# highest-resolution blocks SnapFusion strips of attention first)
PARENT_CONFIGS = {
    "unet-small": UNetConfig((32, 64, 64), 2, (2, 3)),
    "unet-tiny": UNetConfig((16, 16, 16), 1, (3,)),
}
PARENT_STEPS = {"unet-small": 600, "unet-tiny": 10}


register_family("unet-blocks", PARENT_CONFIGS, PARENT_STEPS, network="spaces.unet.model:UNet",
                trainer="spaces.unet.train:train_robust", subnets="spaces.unet.space", budget="steps",
                describe="DDPM U-Net on scikit-learn digits (16x16), {budget} steps of robust training with random block removal")
