"""``tfconf train --tensorboard``: TensorBoard event files in the run folder.

    tfconf train configs/lenet_mnist.yaml --out runs/lenet --tensorboard
    tensorboard --logdir runs          # every run folder is one run in TensorBoard

What is written (with tensorboardX, which needs only numpy and protobuf):

- scalars, tagged ``PHASE/NAME`` exactly as metrics.jsonl records them: ``train/loss`` (the smoothed
  total loss, at every ``display`` iteration), ``train/lr``, and each test metric (``test/accuracy``,
  ``test/loss``, one tag per loss top) at every test pass; the step is the iteration;
- the graph of the run (train and test nets, gradients and updates): one node per engine op with
  its type, inputs (``^name`` for control inputs), device and output shapes.

Event files are named ``events.out.tfevents.TIME.HOST.iterN`` (N: the iteration the run started
at). A fresh run removes the run folder's old event files, as it rewrites metrics.jsonl; a resumed
run (``--resume``) adds a file with ``purge_step`` one past the snapshot's iteration, so TensorBoard
hides what the interrupted run logged after the snapshot.
"""

from __future__ import annotations

import os

from tfconf.errors import UserError
from ..train.runner import Callback

__all__ = ["TensorBoardUnavailable", "TensorBoardWriter", "graph_def"]


class TensorBoardUnavailable(UserError, RuntimeError):
    """tensorboardX is not installed."""


def _tensorboardx():
    try:
        import tensorboardX
    except ImportError:
        raise TensorBoardUnavailable("--tensorboard needs tensorboardX: pip install 'tfconf[tensorboard]' "
                                     "(or pip install tensorboardX)") from None
    return tensorboardX


def graph_def(graph):
    """A TensorBoard GraphDef of an engine Graph: one NodeDef per op (name, type, inputs, device,
    output shapes and dtypes)."""
    _tensorboardx()
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboardX.proto.versions_pb2 import VersionDef

    def shape_proto(t):
        dims = t.shape.as_list() if t.shape.ndims is not None else None
        if dims is None:
            return TensorShapeProto(unknown_rank=True)
        return TensorShapeProto(dim=[TensorShapeProto.Dim(size=-1 if d is None else int(d)) for d in dims])

    nodes = []
    for op in graph.get_operations():
        inputs = [t.op.name if t.value_index == 0 else t.name for t in op.inputs]
        inputs += ["^" + c.name for c in op.control_inputs]
        attr = {}
        if op.outputs:
            attr["_output_shapes"] = AttrValue(list=AttrValue.ListValue(shape=[shape_proto(t) for t in op.outputs]))
            attr["dtypes"] = AttrValue(s=", ".join(t.dtype.name for t in op.outputs).encode())
        nodes.append(NodeDef(name=op.name, op=op.type, input=inputs, device=op.device or "", attr=attr))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


class TensorBoardWriter(Callback):
    """A training callback writing scalars and the graph into the run folder."""

    def __init__(self, flush_secs=10):
        _tensorboardx()  # fail before training starts, not at its first metric
        self.flush_secs = flush_secs
        self.writer = None

    def on_train_begin(self, solver, run_dir):
        from tensorboardX import SummaryWriter
        from tensorboardX.proto import event_pb2

        it = solver.iteration
        if it == 0:  # a fresh run rewrites metrics.jsonl: so it replaces the old event files
            for name in os.listdir(run_dir):
                if name.startswith("events.out.tfevents."):
                    os.remove(os.path.join(run_dir, name))
        # A resumed run keeps what was logged up to its snapshot's iteration and hides the rest.
        self.writer = SummaryWriter(run_dir, purge_step=it + 1 if it else None, flush_secs=self.flush_secs,
                                    filename_suffix=f".iter{it}")
        graph = getattr(solver, "graph", None)  # (a solver without one locally: no graph tab)
        if graph is not None:
            # (tensorboardX's add_graph traces PyTorch modules; a GraphDef goes in as an event)
            event = event_pb2.Event(graph_def=graph_def(graph).SerializeToString())
            self.writer.file_writer.add_event(event)

    def on_metrics(self, iteration, phase, values):
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{phase}/{name}", float(value), iteration)

    def on_train_end(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_callbacks(enabled: bool) -> list:
    """The training callbacks ``tfconf train --tensorboard`` asks for (none without it); a missing
    tensorboardX is a TensorBoardUnavailable, a user error."""
    return [TensorBoardWriter()] if enabled else []
