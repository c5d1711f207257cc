"""Export side of cobra-edge (the only package that imports torch): the model in PyTorch, checkpoint
loaders, ONNX export and parity checks. Install with the ``export`` extra."""
