"""The base class of ``type: Python`` layers (``tfconf.PythonLayer``).

A config may only name a class that derives from it: checked before anything the config names is
called, so that a config cannot make tfconf call ``os.system`` or ``subprocess.Popen``. Which
configs may import a Python layer's module at all is the trust rule of
:mod:`tfconf.frontend.trust`. This module imports nothing: ``import tfconf`` stays light."""


class PythonLayer:
    """Derive a ``type: Python`` layer from this class and give it ``build(self, bottoms)``
    returning its tops (tfconf tensors; autodiff writes the backward), or ``setup(bottoms)`` and
    ``forward(bottoms)``; either may take ``ctx`` for learned parameters
    (``ctx.param(0, "w", shape, filler)``). The config's ``params`` are the constructor's keyword
    arguments, Caffe's ``param_str`` is set as the attribute of that name::

        import tfconf as tc

        class TimesTwo(tc.PythonLayer):
            def build(self, bottoms):
                return bottoms[0] * 2.0
    """

    param_str = None
