"""Interoperability with other tools: Caffe import, ONNX export, TensorBoard and plots."""
