"""Reference solutions of the graded pieces (models, configs). Instructor material only.

``REFERENCE_RUNS`` names each reference training run: ``name -> (model class, TrainConfig)``;
``course train NAME`` runs one.
"""
from .session2 import SEED_CONFIG, SESSION2_CONFIG, SPEED_CONFIG, SeedNet, Session2Net, SpeedNet

REFERENCE_RUNS = {
    "session2": (Session2Net, SESSION2_CONFIG),
    "speed": (SpeedNet, SPEED_CONFIG),
    "seed-style": (SeedNet, SEED_CONFIG),
}
