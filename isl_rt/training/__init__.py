"""Training of the ISL networks on healthy scans (the ``train`` extra).

- :mod:`isl_rt.training.data`: healthy-slice sets prepared once with the runtime's kernels (numpy only).
- :mod:`isl_rt.training.masks`: random training masks from the runtime's partitions.
- :mod:`isl_rt.training.losses`: L1, adversarial, perceptual and style losses.
- :mod:`isl_rt.training.features`: self-supervised training of the fallback feature network.
- :mod:`isl_rt.training.dedn`, :mod:`isl_rt.training.drn`: the training loops.
- :mod:`isl_rt.training.progress`: the progress events the loops report (the CLI renders them).
"""
