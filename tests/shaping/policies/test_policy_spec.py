"""Specs: every malformed spec is a ValueError naming the field; the registry works as Keras' does."""
import pytest
from policy_specs import STAGES

from shaping.policies import FixedPolicy, Policy, SpecError, StagesPolicy, from_spec, get, kinds, lookup, register

EASY = {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.8}}
HARD = {"name": "hard", "knobs": {"coherence": 0.1}}


def stages(*st, **top):
    return {"kind": "stages", "stages": list(st), **top}


BAD = {
    "unknown kind": ({"kind": "stair"}, r"^kind = 'stair': unknown policy kind; known kinds: bias, curriculum"),
    "no kind": ({"stages": []}, r"^spec.kind is required"),
    "unknown top key": (stages(EASY, windw=100), r"^windw: unknown key for policy kind 'stages'"),
    "empty stages": (stages(), r"^stages = \[\] must be a non-empty list"),
    "threshold > 1": (stages(EASY, HARD, {"name": "x", "graduate": {"accuracy": 1.3}}),
                      r"^stages\[2\]\.graduate\.accuracy = 1\.3 is outside \[0, 1\]"),
    "negative floor": (stages(EASY, HARD, regress={"accuracy": -0.1}),
                       r"^regress\.accuracy = -0\.1 is outside \[0, 1\]"),
    "unknown knob": (stages({"name": "a", "knobs": {"coherance": 0.5}}),
                     r"^stages\[0\]\.knobs\.coherance: PerceptualDiscrimination has no knob 'coherance'"),
    "knob out of range": (stages({"name": "a", "knobs": {"coherence": 3}}),
                          r"^stages\[0\]\.knobs\.coherence = 3: .*outside its range \[0, 2\]"),
    "unknown stage key": (stages({"name": "a", "graduat": {}}), r"^stages\[0\]\.graduat: unknown key"),
    "empty graduate": (stages({"name": "a", "graduate": {}}), r"^stages\[0\]\.graduate: give at least one"),
    "duplicate names": (stages(EASY, dict(EASY)), r"^stages\[1\]\.name = 'easy' repeats the name of stages\[0\]"),
    "unknown start": (stages(EASY, HARD, start="medium"), r"^start = 'medium': no such stage; stages are 'easy'"),
    "unknown regress target": (stages(EASY, HARD, regress={"accuracy": 0.5, "to": "warmup"}),
                               r"^regress\.to = 'warmup': no such stage"),
    "reversals without staircase": (stages({"name": "a", "graduate": {"reversals": 3}}),
                                    r"^stages\[0\]\.graduate\.reversals: the stage runs no staircase"),
    "staircase down 0": (stages({"name": "a", "knobs": {"coherence": {"staircase": {"down": 0}}}}),
                         r"^stages\[0\]\.knobs\.coherence\.staircase\.down = 0 must be a whole number >= 1"),
    "staircase 2up2down": ({"kind": "staircase", "knob": "coherence", "up": 2, "down": 2},
                           r"^up = 2, down = 2: a transformed rule needs up = 1 or down = 1"),
    "staircase log from 0": ({"kind": "staircase", "knob": "coherence", "scale": "log"},
                             r"^bounds: a log-scale staircase needs a positive lower bound"),
    "staircase bounds beyond knob": ({"kind": "staircase", "knob": "coherence", "bounds": [0.1, 5]},
                                     r"^bounds = \[0\.1, 5\] leaves knob 'coherence'\'s range \[0, 2\]"),
    "staircase weighted no target": ({"kind": "staircase", "knob": "coherence", "method": "weighted"},
                                     r"^target is required with method = 'weighted'"),
    "staircase unknown knob": ({"kind": "staircase", "knob": "contrast"}, r"^knob = 'contrast': .*no knob"),
    "staircase weighted with runs": ({"kind": "staircase", "knob": "coherence", "method": "weighted",
                                      "target": 0.8, "down": 3}, r"^up/down = None/3: the weighted rule has no runs"),
    "staircase on a knob without a direction": ({"kind": "staircase", "knob": "p_choice1"},
                                                r"knob 'p_choice1' has no easier direction"),
    "stage task unknown": (stages({"name": "a", "task": {"name": "Nope"}}),
                           r"^stages\[0\]\.task\.name = 'Nope': unknown task"),
    "curriculum thresholds": ({"kind": "curriculum", "tasks": [{"knobs": {}}, {"knobs": {}}],
                               "thresholds": [0.9, 1.5]}, r"^thresholds\[1\] = 1\.5 is outside \[0, 1\]"),
    "curriculum threshold count": ({"kind": "curriculum", "tasks": [{"knobs": {}}], "thresholds": [0.9, 0.8]},
                                   r"^thresholds = .* one threshold per task \(1\)"),
    "curriculum bad task kwarg": ({"kind": "curriculum", "tasks": [{"name": "PerceptualDiscrimination",
                                                                   "direction": 5}]},
                                  r"^tasks\[0\]: PerceptualDiscrimination\(direction=5\) failed"),
    "curriculum metric_epoch": ({"kind": "curriculum", "tasks": [{"knobs": {}}], "metric_epoch": 0},
                                r"^metric_epoch = 0 must be a whole number >= 1"),
    "bias inner": ({"kind": "bias", "policy": stages({"name": "a", "graduate": {"accuracy": 2}})},
                   r"^policy\.stages\[0\]\.graduate\.accuracy = 2 is outside \[0, 1\]"),
    "bias side rule": ({"kind": "bias", "policy": {"kind": "fixed"}, "side": "mirror"},
                       r"^side\.rule = 'mirror'; expected one of 'thresholded_linear', 'ibl'"),
    "bias side threshold": ({"kind": "bias", "policy": {"kind": "fixed"},
                             "side": {"rule": "thresholded_linear", "threshold": 1.2}},
                            r"^side\.threshold = 1\.2 is outside \[0, 1\]"),
    "bias repeat params": ({"kind": "bias", "policy": {"kind": "fixed"}, "repeat": {"params": ["contrast"]}},
                           r"^repeat\.params\[0\] = 'contrast': PerceptualDiscrimination draws no such"),
    "bias runs need side_param": ({"kind": "bias", "policy": {"kind": "fixed"}, "max_same_side": 3},
                                  r"^max_same_side needs side_param"),
    "window size": (stages(EASY, window=0), r"^window = 0 must be a whole number >= 1"),
    "window key": (stages(EASY, window={"size": 10, "exclude": True}), r"^window\.exclude: unknown key"),
}


@pytest.mark.parametrize("spec, message", list(BAD.values()), ids=list(BAD))
def test_bad_spec_names_the_field(spec, message, task):
    with pytest.raises(ValueError, match=message):
        from_spec(spec, task)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


def test_registry_keys_and_get(task):
    assert {"bias", "curriculum", "fixed", "staircase", "stages"} <= set(kinds())
    assert lookup("stages") is lookup("StagesPolicy") is lookup("stages_policy") is StagesPolicy
    assert isinstance(get(None, task), FixedPolicy)
    assert isinstance(get("fixed", task), FixedPolicy)
    policy = get(STAGES, task, seed=3)
    assert isinstance(policy, StagesPolicy) and policy.seed == 3
    assert get(policy) is policy
    with pytest.raises(ValueError, match="expected a Policy, a kind name"):
        get(42, task)


def test_seed_argument_overrides_spec_and_none_is_kept(task):
    assert from_spec({**STAGES, "seed": 4}, task).seed == 4
    assert from_spec({**STAGES, "seed": 4}, task, seed=5).seed == 5
    fresh = from_spec(STAGES, task)
    assert from_spec(fresh.get_config(), task).seed == fresh.seed


def test_user_policy_kinds_register(task):
    @register
    class EveryOther(FixedPolicy):
        """A user's kind: flips coherence between two values every batch."""

        kind = "test_every_other"

        def _decide(self, scored):
            value = 0.2 if self.conditions()["knobs"]["coherence"] == 0.7 else 0.7
            return self.set_knob("coherence", value)

    policy = from_spec({"kind": "test_every_other", "knobs": {"coherence": 0.7}}, task, seed=0)
    assert isinstance(policy, Policy) and "test_every_other" in kinds()
    from shaping.policies.simulate import Observer, run

    result = run(policy, task, Observer(), 96)
    assert [c["knobs"]["coherence"] for c in result.conditions] == [0.7, 0.2, 0.7]


def test_a_user_policy_written_before_policies_were_told_drawn_still_runs(task):
    """``Policy.update(scored, drawn)`` passes ``drawn`` on only to an ``_update`` that takes it."""
    @register
    class CountOnly(Policy):
        kind = "test_count_only"

        def _update(self, scored):
            self._trials += len(scored)
            return []

        def conditions(self):
            return {"stage": "only", "stage_index": 0, "knobs": {}, "repeat": [], "task": None, "levels": {}}

        def _config(self):
            return {}

        def _state(self):
            return {}

        def _restore(self, state):
            pass

    policy = from_spec({"kind": "test_count_only"}, task, seed=0)
    batch = task.generate(8, batch_id=0)
    scored = task.score(batch.y, batch.y, batch.mask, batch.params)
    assert policy.update(scored, policy.conditions()) == [] and policy.update(scored) == []
    assert policy.trials == 16


def test_tell_feeds_any_policy_its_drawn_conditions_as_it_can_take_them(task):
    """What the server and wrapping policies call: a subclass overriding the public update(scored), or an
    _update taking **kwargs, keeps working (either raised TypeError on every batch)."""
    from shaping.policies import StaircasePolicy, tell

    seen = []

    class PublicOneArg(StaircasePolicy):
        def update(self, scored):
            seen.append("public")
            return super().update(scored)

    class KeywordsOnly(StaircasePolicy):
        def _update(self, scored, **kw):
            seen.append(("kw", sorted(kw)))
            return super()._update(scored, **kw)

    batch = task.generate(8, batch_id=0)
    scored = task.score(batch.y, batch.y, batch.mask, batch.params)
    for cls in (PublicOneArg, KeywordsOnly):
        policy = cls(task, "coherence", start=0.5, step=0.05)
        tell(policy, scored, policy.conditions())
        assert policy.trials == 8
    assert seen == ["public", ("kw", ["drawn"])]
