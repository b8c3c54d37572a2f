"""Every error class of tfconf is either the user's to fix (a ``tfconf.errors.UserError``: the CLI
prints its message as one line, exit code 2) or named here with the reason it is not. A new error
class that is neither fails this test, so the choice is made when the class is written, not when a
user first meets a traceback."""

import importlib
import inspect
import pkgutil

import tfconf
from tfconf.errors import UserError

#: error classes that are not user errors, and why
NOT_USER_ERRORS = {
    # TF1's run-time error types (tc.errors.*): the TF1 API raises them as TensorFlow does; the
    # config commands turn the ones a config can cause into located ConfigErrors
    "tfconf.errors.OpError": "TF1 API",
    "tfconf.errors.InvalidArgumentError": "TF1 API",
    "tfconf.errors.FailedPreconditionError": "TF1 API",
    "tfconf.errors.ResourceExhaustedError": "TF1 API",
    "tfconf.errors.InternalError": "TF1 API: a bug of tfconf's",
    "tfconf.engine.graph.GraphError": "TF1 API (graph building)",
    "tfconf.engine.autodiff.GradientError": "TF1 API (tc.gradients)",
    "tfconf.frontend.compiler.NetBuildError": "becomes a located ConfigError in frontend/config.py",
    "tfconf.engine.kernels.onednn.lib.DnnlError": "a oneDNN call failed: a bug, or a kernel declined at plan time",
    "tfconf.engine.kernels.onednn.lib.Unavailable": "no oneDNN here: the numpy kernels run instead",
    "tfconf.engine.kernels.onednn.norm.ReferenceOnly": "a primitive that would run oneDNN's reference code: declined",
    "tfconf.distributed.worker.RemoteOpError": "a worker's op error, re-raised on the master as the engine's",
    "tfconf.distributed.worker.StepAborted": "control flow between a worker's threads",
    # module-private control flow, never leaving their module
    "tfconf.engine.partition._Aborted": "private",
    "tfconf.engine.rewrite.cse._Unhashable": "private",
    "tfconf.frontend.compose._NotAFile": "private",
    "tfconf.frontend.compose._TooLarge": "private",
    "tfconf.interop.caffe.fields._Bad": "private",
    "tfconf.interop.caffe.fields._Reported": "private",
}


def _error_classes():
    for info in pkgutil.walk_packages(tfconf.__path__, "tfconf."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                yield f"{obj.__module__}.{obj.__qualname__}", obj


def test_every_error_class_is_a_user_error_or_says_why_not():
    found = dict(_error_classes())
    assert "tfconf.frontend.errors.ConfigError" in found and "tfconf.data.errors.DataError" in found
    undecided = sorted(name for name, cls in found.items()
                       if not issubclass(cls, UserError) and name not in NOT_USER_ERRORS)
    assert not undecided, f"derive these from tfconf.errors.UserError or list them in NOT_USER_ERRORS: {undecided}"
    both = sorted(name for name in NOT_USER_ERRORS if name in found and issubclass(found[name], UserError))
    assert not both, f"listed as not user errors but derive from UserError: {both}"
    gone = sorted(set(NOT_USER_ERRORS) - set(found))
    assert not gone, f"NOT_USER_ERRORS names classes that no longer exist: {gone}"


def test_the_cli_reports_every_user_error_in_one_line_with_exit_code_2():
    from tfconf.cli import describe_error
    from tfconf.frontend.errors import ConfigError
    from tfconf.train.solver import DivergenceError

    for name, cls in _error_classes():
        if not issubclass(cls, UserError) or cls is ConfigError:
            continue
        init = next((k.__init__ for k in cls.__mro__ if "__init__" in vars(k)), None)
        own = init is not None and not isinstance(init, type(object.__init__))  # a Python __init__
        required = [p for p in inspect.signature(init).parameters.values() if p.default is p.empty][1:] if own else [0]
        e = cls(*["the message"] * len(required))
        message, code = describe_error(e)
        assert code == 2 and "the message" in message and "\n" not in message, name
    assert describe_error(DivergenceError("loss is nan at conv1"))[0] == "error: training diverged: loss is nan at conv1"
    assert describe_error(ConfigError.at(None, "must be > 0", path=("solver", "base_lr")))[1] == 2
