"""Compare agents over seeds: train, evaluate final weights, report.

Modules: ``compare`` (plan, train and evaluate agents x seeds), ``evaluations`` (the final and
best weights' evaluations, kept in each run folder), ``report`` (statistics, tables, figure),
``suites`` (the memory suites), ``workers`` (worker processes), ``claims`` (cells shared
through a storage).
"""
