"""Inference: from a built network to fused images.

* :mod:`~mlfuse.inference.fuse`: the pipeline every method shares (``FuseOptions``, ``fuse_pair``,
  ``fuse_folder``: roles, padding, precision, tiling, output rule, colour);
* :mod:`~mlfuse.inference.tiling` and :mod:`~mlfuse.inference.streaming`: exact tiled inference with a
  memory budget. The networks declare their tilings against these two, so they sit below the models
  (see the README's Architecture) and import nothing above them;
* :mod:`~mlfuse.inference.fastpath`: the ``--fast`` optimised copy of a network;
* :mod:`~mlfuse.inference.shard`: folder runs split over processes, GPUs or machines;
* :mod:`~mlfuse.inference.export`: ONNX export and its onnxruntime check.

This ``__init__`` imports nothing, so a network importing the tiling does not load the pipeline.
"""
