"""Closed-loop shaping policies: what each agent runs next, decided from how it did.

``from_spec(spec, task, seed)`` builds a policy from a plain declarative spec (docs/policies.md lists
every kind's keys). Kinds: ``fixed`` (no shaping, the control), ``staircase`` (Levitt / Kaernbach
up/down on one knob), ``stages`` (named stages with graduation and regression), ``ladder`` (one knob
stepped through levels, a stage each), ``curriculum``
(PsychRNN's Curriculum) and ``bias`` (correction trials and side-against-bias drawing around any policy).
"""
from .base import EVENTS, Policy, from_spec, get, kinds, lookup, make_event, register, tell
from .bias import BiasCorrection
from .curriculum import CurriculumPolicy
from .fixed import FixedPolicy
from .ladder import LadderPolicy
from .spec import SpecError
from .staged import Stage, StagedPolicy
from .stages import StagesPolicy
from .staircase import StaircasePolicy
from .updown import Staircase
from .window import AccuracyWindow, batch_accuracy

__all__ = ["Policy", "from_spec", "get", "kinds", "lookup", "register", "make_event", "tell", "EVENTS", "SpecError",
           "FixedPolicy", "LadderPolicy", "StaircasePolicy", "StagesPolicy", "CurriculumPolicy", "BiasCorrection",
           "Staircase", "StagedPolicy", "Stage", "AccuracyWindow", "batch_accuracy"]
