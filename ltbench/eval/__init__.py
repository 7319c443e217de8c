"""Metrics of Table 1: FID through torch-fidelity (``fid``), the DenseNet121 head/tail mAP
harness (``classifier``) and how its rows train (``training``: the long-tail methods'
contract), the phantom's oracle classifier (``oracle``), label fidelity, and nearest-train
distances of generated images against held-out ones (``memorisation``)."""
