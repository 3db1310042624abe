"""Tasks defined with Python and NumPy alone (PsychRNN-compatible), with knobs and per-trial scoring."""
from .base import OUTCOMES, Batch, Task, TrialBuilder
from .knobs import Knob
from .registry import catalog, get, make, register
from .perceptual import PerceptualDiscrimination

__all__ = ["Task", "Batch", "TrialBuilder", "Knob", "OUTCOMES", "make", "get", "catalog", "register",
           "PerceptualDiscrimination"]
