"""The ``sr-adaptive`` parents: ``sr-small`` (the default; a few minutes on two cores) and
``sr-tiny`` (for tests; seconds). Both carry an x2 and an x4 tail on one body."""

from __future__ import annotations

from .._parents import register_family
from .model import SRConfig

__all__ = ["PARENT_CONFIGS", "PARENT_STEPS"]

# FSRCNN/ESPCN-sized (methods §3, CPU scale-down): ~150K parameters, 8 blocks of width 32
PARENT_CONFIGS = {
    "sr-small": SRConfig(32, (32,) * 8),
    "sr-tiny": SRConfig(16, (16,) * 3),
}
PARENT_STEPS = {"sr-small": 800, "sr-tiny": 20}


register_family("sr-adaptive", PARENT_CONFIGS, PARENT_STEPS, network="spaces.sr.model:SRNet",
                trainer="spaces.sr.train:train_sandwich", subnets="spaces.sr.space", budget="steps",
                describe="adaptive-block SR net (x2 and x4) on patches of scikit-image and scikit-learn photos, {budget} steps of sandwich training")
