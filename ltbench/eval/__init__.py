"""Metrics of Table 1: FID through torch-fidelity (``fid``), the DenseNet121 head/tail mAP
harness (``classifier``), the phantom's oracle classifier (``oracle``) and label fidelity."""
