"""The op registry: each op type is one declaration holding all of its rules.

An op declaration is a subclass of ``OpDef`` registered with ``@register``::

    @register
    class MatMul(OpDef):
        '''y = a @ b.   da = dy @ b.T, db = a.T @ dy'''
        def infer(op):                       # -> [(shape, dtype)] per output, at graph-build time
            ...
        def forward(xp, a, b, transpose_a=False, transpose_b=False):   # the kernel, numpy or cupy
            ...
        def grad(op, dy):                    # -> one gradient Tensor (or None) per input, built from ops
            ...

The methods are plain functions (no ``self``): a declaration is a namespace, never instantiated.
``forward`` is called as ``forward(xp, *input_arrays, **op.attrs)``. Ops that need more than that
(variables, random state) override ``make_kernel(op, ctx)`` and return a callable of the inputs.
"""

from __future__ import annotations

from tfconf.registry import Registry

#: every op type's declaration, by type name
_REGISTRY: Registry[type] = Registry("op type", hints=3)


class OpDef:
    type_name = None
    stateful = False  # True: never pruned by CSE/constant folding, may have side effects
    grad = None  # function(op, *output_grads) -> list of input grads; None = not differentiable
    nondifferentiable = False  # True: outputs carry no gradient (integers, shapes, comparisons)
    grad_accepts_none = False  # True: grad gets None for outputs no gradient reaches (else zeros)
    # Host memory (TensorFlow's HostMemory): on an accelerator, ``host_inputs`` (input indices) are
    # read as numpy (shapes, sizes: the kernel turns them into Python ints, which on a GPU array
    # would wait for the device), and ``host_outputs`` ops (Shape, Size, Rank) produce numpy.
    host_inputs = ()
    host_outputs = False
    #: True for ops that read only their input's shape (Shape, Size, Rank): the layout stage lets
    #: such a reader see a provider's blocked value (which has .shape, .size and .ndim)
    reads_only_shape = False
    #: fast kernels beside the reference one: {provider name: kernels.providers.KernelHook}; the
    #: compile pipeline's kernel-choice stage picks one per op and device (engine/kernel_choice.py)
    kernels = {}
    #: ``cost(op) -> FLOPs`` estimated from static shapes for placement's cost model; None: the op
    #: counts as elementwise over its largest output
    cost = None
    #: device types with a kernel for this op
    device_types = ("CPU", "GPU")
    #: an elementwise op's expression for one element, in C++ (``{0}``, ``{1}``...: the inputs;
    #: ``{T}``: the result's C type; ``{zero}``/``{one}``: literals of the first input's type;
    #: ``{alpha}``: that attr). An op with one is fusable: the fusion rewrite may put it into a
    #: FusedElementwise, whose CPU kernel chains the ops' own forwards and whose CUDA kernel is
    #: generated from these expressions (engine/ops/fused.py). None: not elementwise
    elementwise = None
    #: numpy: ``forward_into(*arrays, out=None)`` computes the op into a given buffer; the memory
    #: stage's in-place steps and FusedElementwise's chains write through it (an op whose kernel
    #: is a numpy ufunc needs none: the ufunc takes ``out=``)
    forward_into = None
    #: True when the kernel takes ``donate=i``: it may write into input i, which the executor has
    #: checked nothing else holds (FusedElementwise)
    kernel_takes_donate = False
    #: ``composite(*inputs, **attrs) -> output(s)``: the same function built from other ops, on an
    #: op kept as one op only because it is faster or more stable that way (a fused op: one pass
    #: over memory, a stable formula, a provider's kernel); tests/engine/ops/test_composites.py
    #: checks every op against its composite, in value and gradient. None: a primitive
    composite = None
    #: True for ops whose output is storage they keep (a Variable's value, a constant): a later
    #: step never overwrites it in place
    keeps_output = False

    def infer(op):  # pragma: no cover - every op overrides
        raise NotImplementedError

    def forward(xp, *args, **attrs):  # pragma: no cover
        raise NotImplementedError

    def make_kernel(op, ctx):
        """Build the callable the executor calls with the input arrays (attrs bound here)."""
        fwd = op.op_def.forward
        xp = ctx.xp
        attrs = op.attrs
        if attrs:
            return lambda *a: fwd(xp, *a, **attrs)
        return lambda *a: fwd(xp, *a)


def register(cls):
    """Class decorator: add an op declaration to the registry (duplicates are rejected)."""
    name = cls.__dict__.get("type_name") or cls.__name__
    _REGISTRY.add(name, cls)
    cls.type_name = name
    return cls


def get_op_def(name: str):
    """The declaration of op type ``name`` (a KeyError saying what is close for an unknown one)."""
    return _REGISTRY[name]


def registered_ops() -> dict[str, type]:
    return dict(_REGISTRY)
