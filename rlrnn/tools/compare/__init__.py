"""Compare agents over seeds: train, evaluate final weights, report."""
