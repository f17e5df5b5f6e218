"""Settings for the whole suite."""

from hypothesis import settings

# Hypothesis' per-example deadline (200 ms) measures the machine, not the code: on a 2-core CI
# machine running three broker-test workers an example took 306 ms once and 0.03 ms on replay.
# Tests that care about speed say so in bench/, not here.
settings.register_profile("kstream", deadline=None)
settings.load_profile("kstream")
