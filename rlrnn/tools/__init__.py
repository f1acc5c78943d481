"""The tools that look at trained agents and run many of them; built on :mod:`rlrnn.core`,
never imported by it.

- ``compare`` (plan, train and evaluate agents x seeds), ``compare_report`` (statistics, tables,
  figure), ``workers`` (the worker processes), ``claims`` (cells shared through a storage);
- ``tune`` (Optuna trials), ``tune_setup`` (objectives), ``tune_report``, ``tune_workers``
  (local processes, ``python -m rlrnn.tools.tune_workers``), ``storage`` (shared studies);
- ``stability``: does a run stay solved (measures over its evaluations);
- ``probe`` (a linear probe of the hidden state) and ``probe_report``;
- ``gradflow`` (gradient norms through time, clipping runs) and ``gradflow_report``;
- ``rendering`` (episodes played to a window or a file), ``sinks`` (window, MP4, GIF),
  ``overlay`` (the text on each frame).
"""
