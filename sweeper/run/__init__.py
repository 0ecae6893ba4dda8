"""Run stage: one Hydra job from validated spec to closed run row (the dispatcher, the one
measured-run skeleton that every mode uses, recording, liveness and early stopping)."""
