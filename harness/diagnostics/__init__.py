"""What fine-tuning did to each layer group: weight change, gradient norms, update ratios and norm-layer
drift per epoch (:mod:`~harness.diagnostics.weights`), and linear CKA against the start
(:mod:`~harness.diagnostics.cka`). Measures only: they never change a number."""
