"""Tensor initializers and their math, in the style of ``torch.nn.init``: layouts and fans
(:mod:`~weightinit.initializers.layout`), activations' Gaussian moments and gains
(:mod:`~weightinit.initializers.activations`), elementwise fills
(:mod:`~weightinit.initializers.fills`), variance scaling
(:mod:`~weightinit.initializers.variance`), structured matrices
(:mod:`~weightinit.initializers.structured`) and the catalog of names
(:mod:`~weightinit.initializers.catalog`). Nothing here knows models or schemes.
"""
