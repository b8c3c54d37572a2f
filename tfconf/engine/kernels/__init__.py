"""Array kernels written once against ``xp`` (numpy or cupy)."""
