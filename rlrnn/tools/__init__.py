"""The tools that look at trained agents and run many of them; built on :mod:`rlrnn.runs` and
:mod:`rlrnn.learning`, never imported by them. One sub-package per family:

- ``compare``: plan, train and evaluate agents x seeds (``compare``), its statistics, tables and
  figure (``report``), the suites (``suites``), worker processes (``workers``), cells shared
  through a storage (``claims``);
- ``tune``: Optuna trials (``tune``), objectives (``setup``), the report (``report``), local
  worker processes (``workers``, ``python -m rlrnn.tools.tune.workers``);
- ``common``: what compare and tune share: shared studies (``storage``), does a run stay solved
  (``stability``), statistics over seeds (``seed_stats``);
- ``probe``: a linear probe of the hidden state (``probe``) and its report (``report``);
- ``gradflow``: gradient norms through time, clipping runs (``gradflow``), its report;
- ``render``: episodes played to a window or a file (``rendering``), the sinks (window, MP4,
  GIF), the text on each frame (``overlay``);
- ``export``: a trained policy as ONNX and TorchScript files (``export``), the graph (``graph``).
"""
