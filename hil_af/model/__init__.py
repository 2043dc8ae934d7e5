"""The position-encoded AF model (Choi et al., ICCV 2023): see docs/model.md.

Run time needs numpy + onnxruntime only: ``encoding`` (the 5-channel input),
``inference`` (``PEPredictor``), ``card``, ``validate``, ``report``,
``simdata``, ``dataset`` never import torch.  Training (``nets``, ``loss``,
``train``) needs the ``[train]`` extra (torch==2.13.0).
"""
