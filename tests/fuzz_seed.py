"""The fuzz suite's run seed and hypothesis profile, chosen once per process.

DLKERN_FUZZ_SEED=<int> replays a run; without it every run draws a fresh seed, so CI
keeps finding new cases. DLKERN_FUZZ_PROFILE=dev|ci|smoke picks the example counts.
Kept free of heavy imports: tests/conftest.py reads it for pytest's header.
"""

import os
import random

SEED = int(os.environ.get("DLKERN_FUZZ_SEED") or random.SystemRandom().randrange(2 ** 32))
PROFILE = os.environ.get("DLKERN_FUZZ_PROFILE", "dev")


def describe():
    return (f"dlkern fuzz: seed={SEED} profile={PROFILE} "
            f"(reproduce with DLKERN_FUZZ_SEED={SEED} DLKERN_FUZZ_PROFILE={PROFILE})")
