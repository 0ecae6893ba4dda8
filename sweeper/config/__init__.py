"""Config stage: a composed Hydra config checked into a RunSpec, the job's mode, the sweep it
belongs to and where its results are stored. Nothing here trains or measures."""
