"""Networks: the paper's attention model on timm's Inception-v4, and its baselines."""

from octattn.models.attention import AttentionModule, ResidualUnit, SoftMaskHourglass
from octattn.models.factory import MODEL_NAMES, create_model
from octattn.models.inception import DEFAULT_PLACEMENT, AttentionPlacement, InceptionV4Attention, attention_modules
from octattn.models.policy import POLICIES, param_groups, parameter_roles, set_train_mode

__all__ = [
    "DEFAULT_PLACEMENT",
    "MODEL_NAMES",
    "POLICIES",
    "AttentionModule",
    "AttentionPlacement",
    "InceptionV4Attention",
    "ResidualUnit",
    "SoftMaskHourglass",
    "attention_modules",
    "create_model",
    "param_groups",
    "parameter_roles",
    "set_train_mode",
]
