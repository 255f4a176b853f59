"""The ``vit-elastic`` parents: ``vit-small`` (the default; a few minutes on two cores) and
``vit-tiny`` (for tests; seconds)."""

from __future__ import annotations

from .._parents import register_family
from .model import StageConfig, ViTConfig

__all__ = ["PARENT_CONFIGS", "PARENT_EPOCHS"]

# EfficientFormerV2-S0-like proportions scaled to 8x8 digits: 3 stages at 8x8, 4x4, 2x2;
# attention possible in the last two blocks of the two late stages
PARENT_CONFIGS = {
    "vit-small": ViTConfig((StageConfig(32, 2, 4), StageConfig(64, 3, 4, heads=4, attn=2),
                            StageConfig(96, 4, 4, heads=4, attn=2))),
    "vit-tiny": ViTConfig((StageConfig(16, 1, 2), StageConfig(24, 2, 3, heads=2, attn=1),
                           StageConfig(32, 2, 2, heads=2, attn=1))),
}
PARENT_EPOCHS = {"vit-small": 25, "vit-tiny": 2}


register_family("vit-elastic", PARENT_CONFIGS, PARENT_EPOCHS, network="spaces.vit.model:SuperViT",
                trainer="spaces.vit.train:train_sandwich", subnets="spaces.vit.space", budget="epochs",
                describe="EfficientFormerV2-style ViT on scikit-learn digits, {budget} epochs of sandwich training")
