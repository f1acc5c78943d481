"""Run-keeping: a training run around the learner, and the folder that keeps it.

It imports :mod:`rlrnn.learning`, never ``rlrnn.tools`` or ``rlrnn.cli``. Its modules, each
using only the ones listed before it:

- ``folder``: the run folder (``RunFolder``): every file name of a run, and who owns the folder
  (rlrnn's marker, the links it refuses); ``lock``: who writes it (one process at a time);
- ``checkpoint``: the file format; ``sb3``: the SB3 reference agents' models and checkpoints;
  ``loading``: agents built and loaded from files;
- ``schedule``: evaluation and checkpoint intervals in whole iterations; ``safety``: stop signals
  and the divergence guard; ``logger``: the one sink of a run's numbers (TensorBoard, the
  progress bar); ``runlog``: the periodic evaluations and the summary; ``plots``: the learning
  curve;
- ``resume``: the training state in the resume checkpoint and what a resume may change;
- ``start``: the front door: the checks every run passes (the command line, the Python API,
  compare, tune) before anything is written, with typed errors;
- ``trainer``: the learner with its clocks, guard, evaluations and checkpoints;
  ``sb3_training``: an SB3 agent trained into the same folder;
- ``training``: ``train``: the front door, the folder locked, and the loop on one screen.
"""
