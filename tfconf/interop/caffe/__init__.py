"""The parts of the Caffe importer (tfconf/interop/caffe_import.py is its entry point): fields.py
reads messages, layers.py the layers, data.py the data layers, solver.py the solver, emit.py
writes the YAML, weights.py reads a .caffemodel."""
