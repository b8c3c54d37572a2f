"""oneDNN's binary primitive (dst = src0 op src1, src1 broadcast where its dimensions are 1) with
one optional post-op, on plain float32 arrays: the elementwise passes of the parameter updates
(updates.py) and of a matrix product's bias and ReLU (gemm.py)."""

from __future__ import annotations

import ctypes

from . import lib as L

BINARY_ADD = 0x1FFF0  # dnnl_alg_kind_t (oneDNN 3.x)
BINARY_MUL = 0x1FFF1
BINARY_SUB = 0x1FFF5
ARG_SRC_0 = 1
ARG_SRC_1 = 2
ARG_DST = L.ARG_DST
_POST_OP_BASE = 32768  # DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE (oneDNN 3.x; 2.x had 16384)
ARG_POST_OP0_SRC_1 = _POST_OP_BASE * 1 | ARG_SRC_1

_bound = False


def _bind(lib):
    global _bound
    if not _bound:
        vp = ctypes.c_void_p
        f = lib.dll.dnnl_binary_primitive_desc_create
        f.argtypes, f.restype = [ctypes.POINTER(vp), vp, ctypes.c_int, vp, vp, vp, vp], ctypes.c_int
        f = lib.dll.dnnl_post_ops_append_binary
        f.argtypes, f.restype = [vp, ctypes.c_int, vp], ctypes.c_int
        f = lib.dll.dnnl_post_ops_append_sum
        f.argtypes, f.restype = [vp, ctypes.c_float, ctypes.c_int32, ctypes.c_int], ctypes.c_int
        _bound = True


def binary(shape0, shape1, alg, post=None, sum_scale=1.0):
    """A Primitive computing dst [shape0] = src0 [shape0] (alg) src1 [shape1] (of the same rank,
    broadcast where its dimensions are 1), then ``post``:
    None, "add" (+ a third [shape0] array, argument ARG_POST_OP0_SRC_1), "sum" (+ sum_scale·dst,
    dst's value before the call) or "relu"."""
    lib = L.library()
    _bind(lib)
    x = L.MemoryDesc.plain(tuple(shape0))
    s = L.MemoryDesc.plain(tuple(shape1))
    attr, po = ctypes.c_void_p(), ctypes.c_void_p()
    lib.check("primitive_attr_create", lib.primitive_attr_create(ctypes.byref(attr)))
    try:
        lib.check("set_scratchpad_mode", lib.primitive_attr_set_scratchpad_mode(attr, L.SCRATCHPAD_USER))
        if post is not None:
            lib.check("post_ops_create", lib.post_ops_create(ctypes.byref(po)))
            try:
                if post == "add":
                    st = lib.dll.dnnl_post_ops_append_binary(po, BINARY_ADD, x.handle)
                elif post == "sum":
                    st = lib.dll.dnnl_post_ops_append_sum(po, sum_scale, 0, 0)
                elif post == "relu":
                    st = lib.post_ops_append_eltwise(po, L.ELTWISE_RELU, 0.0, 0.0)
                else:
                    raise ValueError(f"unknown post-op {post!r}")
                lib.check(f"post_ops_append {post}", st)
                lib.check("set_post_ops", lib.primitive_attr_set_post_ops(attr, po))
            finally:
                lib.post_ops_destroy(po)
        pd = ctypes.c_void_p()
        lib.check("binary_primitive_desc_create",
                  lib.dll.dnnl_binary_primitive_desc_create(ctypes.byref(pd), lib.engine, alg, x.handle, s.handle,
                                                            x.handle, attr))
    finally:
        lib.primitive_attr_destroy(attr)
    args = [ARG_SRC_0, ARG_SRC_1, ARG_DST] + ([ARG_POST_OP0_SRC_1] if post == "add" else [])
    return L.Primitive(pd, args, "binary", mds={ARG_POST_OP0_SRC_1: x} if post == "add" else None)
