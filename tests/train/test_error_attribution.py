"""Errors from the engine name the config layer that made the op, also when the plan ran the op
fused with others (train.errors.explain_op_message)."""

from tests.cli.util import SPIRALS, write
from tfconf.frontend.config import load
from tfconf.train.errors import explain_op_message


def test_a_fused_op_is_attributed_to_its_layer_with_its_fusion_kept(tmp_path):
    cfg = load(write(tmp_path, "tiny.yaml", SPIRALS))
    where = cfg.loaded.location(("layers", 3))  # ip2
    plain = "op 'train/ip2/MatMul' (type MatMul) created at /x/tfconf/frontend/layers/core.py:88 produced NaN"
    fused = ("op 'train/ip2/MatMul' (type MatMul, run fused with train/ip2/add (Add) as one FusedMatMul) "
             "created at /x/typer/main.py:1445 produced NaN")
    assert explain_op_message(cfg, plain) == f"op 'train/ip2/MatMul' (type MatMul) of layer 'ip2' ({where}) produced NaN"
    assert explain_op_message(cfg, fused) == (
        "op 'train/ip2/MatMul' (type MatMul, run fused with train/ip2/add (Add) as one FusedMatMul) "
        f"of layer 'ip2' ({where}) produced NaN")
    # an op of no layer keeps its name and type, without the meaningless frame
    other = "op 'Momentum/x' (type Mul, run fused with a (Add) as one FusedElementwise) created at /y.py:3 failed"
    assert explain_op_message(cfg, other) == "op 'Momentum/x' (type Mul, run fused with a (Add) as one FusedElementwise) failed"
