"""Run-keeping: a training run around the learner, and the folder that keeps it.

It imports :mod:`rlrnn.learning`, never ``rlrnn.tools`` or ``rlrnn.cli``. Its modules, each
using only the ones listed before it:

- ``folder``: the run folder (``RunFolder``): every file name of a run, who owns the folder
  (marker) and who writes it (lock);
- ``checkpoint``: the file format; ``loading``: agents built and loaded from files; ``sb3``: the
  SB3 reference agents;
- ``schedule``: evaluation and checkpoint intervals in whole iterations; ``safety``: stop signals
  and the divergence guard; ``runlog``: the periodic evaluations; ``logger``: the one sink of a
  run's numbers (TensorBoard and the progress bar); ``plots``: the learning curve;
- ``resume``: the training state in ``RunFolder.last`` and what a resume may change;
- ``start``: the one front door of a run: the checks every caller passes (CLI, Python API,
  compare, tune) and the folder claimed;
- ``training``: the training run (``train``), one screen of loop.
"""
