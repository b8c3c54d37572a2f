"""The model zoo: entries (``model_zoo/<name>/`` with model.yaml, card.yaml and checksummed files),
found in the built-in zoo, ``TFCONF_ZOO_PATH`` and ``--zoo DIR``. See docs/zoo.md.

    from tfconf.zoo import registry
    entry = registry.find("lenet")          # card, config path, verified weights via weights_for
    registry.weights_for("zoo:lenet")       # the weights' path, after their sha256 matched the card
"""
