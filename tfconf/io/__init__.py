"""Shared file formats and writes, below every package that reads or writes files: atomic writes
(:mod:`.atomic`) and Caffe's protobuf wire format (:mod:`.caffemodel`: .caffemodel weights and
.binaryproto mean files)."""
