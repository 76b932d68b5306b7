"""PyTorch definitions of the ISL networks (the ``train`` extra: torch is imported by the submodules).

- :mod:`isl_rt.models.dedn`: the DeDN inpainting generator (EdgeConnect family) and its presets.
- :mod:`isl_rt.models.discriminator`: the PatchGAN discriminator used while training the DeDN.
- :mod:`isl_rt.models.features`: perceptual/style feature networks (VGG-19 or self-supervised).
- :mod:`isl_rt.models.drn`: the DRN encoder of difference images.
"""
