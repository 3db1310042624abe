"""Policy specs shared by the policy tests (one list, readable ids), as lab config files would hold them."""

STAIRCASE = {"kind": "staircase", "knob": "coherence", "start": 0.7, "scale": "log", "bounds": [0.005, 2.0],
             "step": 0.05, "shrink": 0.7, "min_step": 0.005, "max_reversals": 30}

STAGES = {
    "kind": "stages", "window": 64,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7, "stim_noise": 0.05},
         "graduate": {"accuracy": 0.8, "min_trials": 128}},
        {"name": "mixed", "knobs": {"coherence": [0.2, 0.4, 0.7]},
         "graduate": {"per_condition": {"param": "coherence", "accuracy": 0.7, "min_trials": 10},
                      "min_trials": 128}},
        {"name": "staircase", "knobs": {"coherence": {"staircase": {"start": 0.4, "scale": "log",
                                                                    "bounds": [0.01, 2.0], "step": 0.05}}},
         "graduate": {"reversals": 6}},
        {"name": "final", "knobs": {"coherence": {"uniform": [0.05, 0.5]}}},
    ],
    "regress": {"accuracy": 0.6, "min_dwell": 256},
    "max_trials": 6000,
}

CURRICULUM = {"kind": "curriculum", "metric_epoch": 3, "thresholds": [0.85, 0.8, 0.75],
              "tasks": [{"name": "PerceptualDiscrimination", "coherence": 0.7},
                        {"knobs": {"coherence": 0.3}},
                        {"name": "PerceptualDiscrimination", "coherence": 0.1, "stage": "hard"}]}

POLICY_SPECS = {
    "fixed": {"kind": "fixed", "knobs": {"coherence": [0.1, 0.3]}, "max_trials": 2000},
    "staircase-1up2down-log": STAIRCASE,
    "staircase-weighted-noise": {"kind": "staircase", "knob": "stim_noise", "method": "weighted", "target": 0.8,
                                 "start": 0.2, "step": 0.05, "knobs": {"coherence": 0.2}},
    "stages": STAGES,
    "ladder-coherence": {"kind": "ladder", "knob": "coherence", "levels": [0.7, 0.4, 0.2, 0.1], "window": 64,
                         "graduate": {"accuracy": 0.75, "min_trials": 128}, "knobs": {"stim_noise": 0.05},
                         "regress": {"accuracy": 0.55, "min_dwell": 256}, "max_trials": 6000},
    "curriculum": CURRICULUM,
    "bias-thresholded-linear": {"kind": "bias", "policy": STAGES, "repeat": {"min_evidence": 0.3},
                                "side": {"rule": "thresholded_linear", "window": 64, "threshold": 0.1}},
    "bias-ibl-runs": {"kind": "bias", "policy": STAIRCASE, "repeat": True, "side": "ibl", "max_same_side": 3,
                      "side_param": "direction"},
}
