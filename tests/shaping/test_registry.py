"""The one registry (shaping.registry) behind tasks, policy kinds and the agents' model objects.

Every key that resolved before the registries were merged still resolves to the same class (lab files, journals
and saved configs name them); the acronym-aware snake names resolve too; a typo's error names the close match;
a user's class registers and builds.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from shaping.registry import Registry, legacy_snake, snake

# Every key registered before the merge, written out (not computed), and the class each one named.
OLD_TASK_KEYS = {
    "ContextDependentDM": "ContextDependentDM", "context_dependent_d_m": "ContextDependentDM",
    "DelayedDiscrimination": "DelayedDiscrimination", "delayed_discrimination": "DelayedDiscrimination",
    "DelayedMatchToSample": "DelayedMatchToSample", "delayed_match_to_sample": "DelayedMatchToSample",
    "FlipFlop": "FlipFlop", "flip_flop": "FlipFlop", "GoNoGo": "GoNoGo", "go_no_go": "GoNoGo",
    "MatchToCategory": "MatchToCategory", "match_to_category": "MatchToCategory",
    "MultiSensoryIntegration": "MultiSensoryIntegration", "multi_sensory_integration": "MultiSensoryIntegration",
    "PerceptualDiscrimination": "PerceptualDiscrimination", "perceptual_discrimination": "PerceptualDiscrimination",
    "PostDecisionWager": "PostDecisionWager", "post_decision_wager": "PostDecisionWager",
    "ProAntiSaccade": "ProAntiSaccade", "pro_anti_saccade": "ProAntiSaccade",
    "ReadySetGo": "ReadySetGo", "ready_set_go": "ReadySetGo",
}
OLD_POLICY_KEYS = {
    "bias": "BiasCorrection", "BiasCorrection": "BiasCorrection", "bias_correction": "BiasCorrection",
    "curriculum": "CurriculumPolicy", "CurriculumPolicy": "CurriculumPolicy", "curriculum_policy": "CurriculumPolicy",
    "fixed": "FixedPolicy", "FixedPolicy": "FixedPolicy", "fixed_policy": "FixedPolicy",
    "stages": "StagesPolicy", "StagesPolicy": "StagesPolicy", "stages_policy": "StagesPolicy",
    "staircase": "StaircasePolicy", "StaircasePolicy": "StaircasePolicy", "staircase_policy": "StaircasePolicy",
}
OLD_OBJECT_KEYS = {  # agents module -> its keys (each ClassName or its snake name)
    "constraints": ["Dale", "FixedSynapses", "Mask", "NoAutapses", "RandomMask", "Signs", "dale", "fixed_synapses",
                    "mask", "no_autapses", "random_mask", "signs"],
    "initializers": ["AlphaIdentity", "FromWeights", "GaussianSpectralRadius", "RandomInit", "alpha_identity",
                     "from_weights", "gaussian_spectral_radius", "random_init"],
    "regularizers": ["CustomRegularizer", "L1", "L2", "custom_regularizer", "l1", "l2"],
    "losses": ["BinaryCrossEntropy", "CustomLoss", "MeanSquaredError", "binary_cross_entropy", "custom_loss",
               "mean_squared_error"],
    "optimizers": ["Adam", "RMSProp", "SGD", "adam", "rms_prop", "sgd"],
}


@pytest.mark.parametrize("name, expected", [
    ("PerceptualDiscrimination", "perceptual_discrimination"), ("GoNoGo", "go_no_go"), ("DMS", "dms"),
    ("ContextDependentDM", "context_dependent_dm"), ("RMSProp", "rms_prop"), ("SGD", "sgd"),
    ("L2FiringRate", "l2_firing_rate"), ("FlipFlop", "flip_flop"), ("X", "x"),
])
def test_snake_keeps_acronyms_together(name, expected):
    assert snake(name) == expected


def test_legacy_snake_is_the_old_rule():
    assert legacy_snake("ContextDependentDM") == "context_dependent_d_m"
    assert legacy_snake("GoNoGo") == snake("GoNoGo") == "go_no_go"


@pytest.mark.parametrize("key", sorted(OLD_TASK_KEYS))
def test_every_old_task_key_resolves(key):
    from shaping.tasks import get, make

    assert get(key).__name__ == OLD_TASK_KEYS[key]
    assert type(make(key, seed=0)).__name__ == OLD_TASK_KEYS[key]


def test_new_task_names_resolve():
    from shaping.tasks import ContextDependentDM, GoNoGo, PerceptualDiscrimination, get, make

    assert get("context_dependent_dm") is get("context_dependent_d_m") is ContextDependentDM
    assert get("go_no_go") is GoNoGo and get("perceptual_discrimination") is PerceptualDiscrimination
    assert type(make("context_dependent_dm", seed=0)) is ContextDependentDM


@pytest.mark.parametrize("key", sorted(OLD_POLICY_KEYS))
def test_every_old_policy_key_resolves(key):
    from shaping.policies import lookup

    assert lookup(key).__name__ == OLD_POLICY_KEYS[key]


@pytest.mark.parametrize("module", sorted(OLD_OBJECT_KEYS))
def test_every_old_object_key_resolves(module):
    import importlib

    registry = importlib.import_module(f"agents.{module}")._registry
    assert isinstance(registry, Registry)
    for key in OLD_OBJECT_KEYS[module]:
        cls = registry.lookup(key)
        assert key in (cls.__name__, snake(cls.__name__))


@pytest.mark.parametrize("typo, close", [
    ("PerceptualDiscriminaton", "'PerceptualDiscrimination'"),
    ("perceptual_discrimnation", "'perceptual_discrimination'"),
    ("ContextDependantDM", "'ContextDependentDM'"),
    ("go_nogo", "'go_no_go'"),
])
def test_a_task_typo_names_the_close_match(typo, close):
    from shaping.tasks import make

    with pytest.raises(ValueError, match=rf"unknown task '{typo}' \(did you mean {close}.*\?\); known tasks: "):
        make(typo)


def test_a_name_with_nothing_close_lists_the_known_names_only():
    from shaping.tasks import get

    with pytest.raises(ValueError) as info:
        get("Zzyzx")
    assert "did you mean" not in str(info.value) and "PerceptualDiscrimination" in str(info.value)


def test_an_object_typo_names_the_close_match():
    from agents import constraints, optimizers

    with pytest.raises(ValueError, match=r"unknown constraint 'Dael' \(did you mean 'Dale'\?\)"):
        constraints.get("Dael")
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop' \(did you mean 'rms_prop'\?\)"):
        optimizers._registry.lookup("rmsprop")


def test_policy_kinds_use_the_shared_registry():
    from shaping.policies import SpecError, base, lookup

    assert isinstance(base.POLICIES, Registry)
    with pytest.raises(SpecError, match=r"^kind = 'stair': unknown policy kind; known kinds: bias, .*"
                                        r"\(did you mean 'staircase'.*\?\)$"):
        lookup("stair")
    with pytest.raises(SpecError, match="unknown policy kind"):
        lookup(["not", "hashable"])


def test_a_user_task_registers_in_a_scope():
    from shaping.tasks import PerceptualDiscrimination, catalog, get, make, register
    from shaping.tasks.registry import TASKS

    with TASKS.scope():
        @register
        class EasyRDM(PerceptualDiscrimination):
            """A user's variant, registered by its name."""

        assert get("EasyRDM") is get("easy_rdm") is get("easy_r_d_m") is EasyRDM
        assert type(make("easy_rdm", seed=0)) is EasyRDM
        assert "EasyRDM" in set(catalog()["name"])
    with pytest.raises(ValueError, match="unknown task 'EasyRDM'"):
        get("EasyRDM")
    with pytest.raises(TypeError, match="must be a class deriving from Task"):
        register(int)


def test_a_user_object_registers_under_a_package_name():
    import numpy as np

    from agents import constraints

    with constraints._registry.scope():
        @constraints.register(name="mylab>Clip")
        class Clip(constraints.Constraint):
            def __init__(self, limit: float = 1.0):
                self.limit = limit

            def __call__(self, w):
                return np.clip(w, -self.limit, self.limit)

            def get_config(self) -> dict:
                return {"limit": self.limit}

        obj = constraints.get({"class_name": "mylab>Clip", "config": {"limit": 0.5}})
        assert isinstance(obj, Clip) and obj.limit == 0.5
        assert constraints.serialize(obj) == {"class_name": "mylab>Clip", "config": {"limit": 0.5}}
        assert constraints.get(constraints.serialize(obj)) == obj
        assert "mylab>Clip" in constraints.names() and "Clip" not in constraints._registry
    assert "mylab>Clip" not in constraints._registry


def test_a_registry_of_ones_own():
    class Widget:
        def __init__(self, size: int = 1):
            self.size = size

        @classmethod
        def from_config(cls, config: dict) -> "Widget":
            return cls(**config)

    class NotAWidgetError(ValueError):
        pass

    widgets = Registry("widget", Widget, error=NotAWidgetError)

    @widgets.register(aliases=("gizmo",))
    class BigWidget(Widget):
        pass

    assert widgets.names() == ["BigWidget"] and widgets.keys() == ["BigWidget", "big_widget", "gizmo"]
    assert widgets.lookup("gizmo") is BigWidget and "big_widget" in widgets and ["x"] not in widgets
    assert widgets.get(None) is None and widgets.get("big_widget").size == 1
    assert widgets.get({"class_name": "BigWidget", "config": {"size": 3}}).size == 3
    w = BigWidget()
    assert widgets.get(w) is w
    with pytest.raises(NotAWidgetError, match=r"unknown widget 'BigWidgit' \(did you mean 'BigWidget'\?\); "
                                              r"known widgets: BigWidget"):
        widgets.get("BigWidgit")
    with pytest.raises(NotAWidgetError, match="config must be"):
        widgets.get({"config": {}})
    with pytest.raises(TypeError, match="cannot interpret 3 as a widget"):
        widgets.get(3)

    @widgets.register(name="mine>BigWidget")
    class Replacement(Widget):
        pass

    assert widgets.lookup("mine>BigWidget") is Replacement and widgets.lookup("BigWidget") is BigWidget


def test_the_registry_needs_neither_numpy_nor_tensorflow():
    code = ("import sys, shaping.registry; bad = {'numpy', 'tensorflow', 'pandas'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
