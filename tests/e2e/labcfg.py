"""The short lab's config (shared by the e2e tests and their fixture)."""
from __future__ import annotations

import copy

SHORT_LAB = {
    "lab": {"name": "short", "experiment": "short-lab", "seed": 3, "max_restarts": 2},
    "task": {"name": "PerceptualDiscrimination", "dt": 10, "tau": 100, "T": 500, "N_batch": 32},
    "curricula": {
        "shaped": {
            "kind": "stages", "window": 64, "max_trials": 6000,
            "stages": [
                {"name": "easy", "knobs": {"coherence": 0.7, "stim_noise": 0.05},
                 "graduate": {"accuracy": 0.75, "min_trials": 128}},
                {"name": "final", "knobs": {"coherence": [0.3, 0.5, 0.7], "stim_noise": 0.1},
                 "graduate": {"accuracy": 0.75, "min_trials": 128}},
            ],
        },
    },
    "agents": [
        {"name": "free", "curriculum": "shaped", "N_rec": 24, "learning_rate": 0.005, "seed": 1,
         "checkpoint_every": 5},
        {"name": "dale", "curriculum": "shaped", "N_rec": 24, "learning_rate": 0.005, "seed": 2,
         "dale_ratio": 0.75, "autapses": False, "checkpoint_every": 5,
         "regions": {"regions": {"A": 12, "B": 12}, "inputs": ["A"], "outputs": ["B"],
                     "connections": ["A -> A", "A -> B: 0.6", "B -> B", "B -> A: 0.3"]}},
    ],
}


def lab_config(**overrides) -> dict:
    """A copy of the short lab's config with top-level sections replaced by ``overrides``."""
    cfg = copy.deepcopy(SHORT_LAB)
    cfg.update(overrides)
    return cfg
