"""Training stage: the torch loop, device and precision handling, torchrun (DDP), progress."""
