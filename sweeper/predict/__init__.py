"""Prediction stage: the study's findings as features (forecast from a short profile,
energy estimated from model size). Fitting is numpy; loading from a store is separate."""
