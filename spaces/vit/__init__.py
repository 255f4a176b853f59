"""The ``vit-elastic`` space (EfficientFormerV2-style ViT subnets of a parent trained on digits)."""

from .space import ViTElasticSpace

__all__ = ["ViTElasticSpace"]
