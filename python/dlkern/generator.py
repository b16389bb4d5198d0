"""dlkern's random generator: one process-wide NumPy Generator, seeded by manual_seed.

It feeds randn/rand/randint, parameter init, dropout and the CUDA device's counter-based
samplers (which draw their seeds from it). It is a leaf module so the device namespaces
can read it without importing the tensor modules.
"""

import numpy as np


class RNG:
    """Holds the generator; replaced as a whole by manual_seed, so readers look it up here
    on every use (RNG.generator) rather than keeping a reference."""

    generator = np.random.default_rng()


def manual_seed(seed):
    """Seed dlkern's random generator (randn/rand, init, dropout)."""
    RNG.generator = np.random.default_rng(int(seed))
    return RNG.generator


def default_generator():
    return RNG.generator
