"""Tasks defined with Python and NumPy alone (PsychRNN-compatible), with knobs and per-trial scoring.

Built-in tasks, one module per family:

- :mod:`.perceptual`: ``PerceptualDiscrimination`` (PsychRNN)
- :mod:`.working_memory`: ``DelayedDiscrimination`` (PsychRNN), ``DelayedMatchToSample``
- :mod:`.category`: ``MatchToCategory`` (PsychRNN)
- :mod:`.context`: ``ContextDependentDM``
- :mod:`.gonogo`: ``GoNoGo``
- :mod:`.saccade`: ``ProAntiSaccade``
- :mod:`.timing`: ``ReadySetGo``
- :mod:`.flipflop`: ``FlipFlop``
- :mod:`.confidence`: ``PostDecisionWager``
- :mod:`.multisensory`: ``MultiSensoryIntegration``
- :mod:`.sequence_memory`: ``NDelayedMatch``, ``NParity`` (Khajehabdollahi et al. 2024)

:func:`check_task` checks any task, a user's PsychRNN subclass included, against the contract.
"""
from .base import OUTCOMES, Batch, Task, TrialBuilder
from .category import MatchToCategory
from .check import check_task
from .confidence import PostDecisionWager
from .context import ContextDependentDM
from .flipflop import FlipFlop
from .gonogo import GoNoGo
from .knobs import Knob
from .multisensory import MultiSensoryIntegration
from .perceptual import PerceptualDiscrimination
from .registry import catalog, get, make, register
from .saccade import ProAntiSaccade
from .sequence_memory import NDelayedMatch, NParity
from .timing import ReadySetGo
from .working_memory import DelayedDiscrimination, DelayedMatchToSample

__all__ = ["Task", "Batch", "TrialBuilder", "Knob", "OUTCOMES", "make", "get", "catalog", "register",
           "check_task", "PerceptualDiscrimination", "DelayedDiscrimination", "DelayedMatchToSample",
           "MatchToCategory", "ContextDependentDM", "GoNoGo", "ProAntiSaccade", "ReadySetGo", "FlipFlop",
           "PostDecisionWager", "MultiSensoryIntegration", "NDelayedMatch", "NParity"]
