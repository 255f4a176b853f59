"""The ``unet-blocks`` space (diffusion U-Net block removal and stage widths)."""

from .space import UNetBlocksSpace

__all__ = ["UNetBlocksSpace"]
