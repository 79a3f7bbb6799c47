"""The cost plan before a run (`adg plan`): tokens, FLOPs, time, and whether the GPU stages' pods
fit a node."""
