"""Run many rlrnn command lines quickly, each in a process of its own.

``python tests/forkrun.py < cases.json > results.json``: this process imports rlrnn (and torch,
gymnasium, SB3) once, then forks one child per command line, two at a time. Each child is a real
process running the command as its entry point would (``train.py``, ``evaluate.py`` or ``python
-m rlrnn.cli``): its own working directory, environment and ``sys.path``, stdout and stderr, exit
code, imports and signals, and an interpreter exit with its atexit handlers and thread joins.
It skips only the ~3 s of imports a fresh interpreter spends and, at exit, the teardown of those
modules (atexit handlers and thread joins do run), so the bad-input sweep can afford ~100
commands. Each result also gives the child's peak memory (``ru_maxrss``, in KB) and CPU time.

A case: ``{"entry": "train"|"evaluate"|"rlrnn", "args": [...], "cwd": ..., "env": {...},
"path": [...], "stdout": file, "stderr": file}``.
"""

import atexit
import importlib
import json
import os
import resource
import sys
import threading
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PRELOADED = (  # everything the commands import, eagerly or lazily
    "torch", "gymnasium", "matplotlib.pyplot", "PIL.Image", "imageio_ffmpeg",
    "rlrnn.runs.loading", "rlrnn.runs.plots", "rlrnn.runs.sb3", "rlrnn.runs.training",
    "rlrnn.tools.compare.claims", "rlrnn.tools.compare.report", "rlrnn.tools.gradflow.report",
    "rlrnn.tools.probe.report", "rlrnn.tools.render.rendering", "rlrnn.tools.tune.report",
    "rlrnn.tools.tune.workers", "rlrnn.cli",
)  # fmt: skip
for _module in PRELOADED:
    importlib.import_module(_module)
main = sys.modules["rlrnn.cli"].main

ANALYSES = ("compare", "probe", "gradflow")
PARALLEL = 2


def child(case: dict) -> None:
    """In the forked child: become the command, then exit as an interpreter would."""
    os.chdir(case["cwd"])
    os.environ.update(case.get("env", {}))
    args = case["args"]
    if case["entry"] == "rlrnn":  # python -m rlrnn.cli: the working directory comes first
        sys.path[0:1] = [case["cwd"]]
        argv = args
    else:  # python train.py / evaluate.py: the script's folder comes first
        sys.path[0:1] = [ROOT]
        argv = ["train", *args] if case["entry"] == "train" else args
        if case["entry"] == "evaluate" and not (args[:1] and args[0] in ANALYSES):
            argv = ["evaluate", *args]
    sys.path[1:1] = case.get("path", [])
    sys.argv = [case["entry"], *args]
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # what an exiting interpreter does, less the module teardown
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def run(cases: list[dict]) -> list[dict]:
    results: list[dict | None] = [None] * len(cases)
    running: dict[int, int] = {}
    queue = list(range(len(cases)))
    while queue or running:
        while queue and len(running) < PARALLEL:
            index = queue.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(cases[index])  # never returns
            running[pid] = index
        pid, status, usage = os.wait4(-1, 0)
        index = running.pop(pid)
        results[index] = {
            "returncode": os.waitstatus_to_exitcode(status),
            "maxrss_kb": usage.ru_maxrss,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }
    return results


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"runner_maxrss_kb": own, "results": run(cases)}))
