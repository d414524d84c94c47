"""octattn: retinal OCT B-scan classification with Inception-v4 and residual attention.

Reproduces Shang et al., "Potential of Attention Mechanism for Classification of Optical
Coherence Tomography Images", and goes past it: patient-level evaluation, explanations,
calibrated predictions, serving.
"""

from octattn.classes import CLASS_NAMES
from octattn.models import create_model

__version__ = "0.1.0"

__all__ = ["CLASS_NAMES", "__version__", "create_model"]
