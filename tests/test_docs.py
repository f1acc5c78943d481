"""The docs say what the code does: every generated table matches its result file, every relative
link resolves, every command the README and the docs pages show is one the CLI accepts, and the
README stays a user's guide (at most 300 lines)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shlex
from pathlib import Path

from scripts import load_script

from rlrnn.tools.compare.report import AgentResult

ROOT = Path(__file__).resolve().parents[1]


tables = load_script("tables")
PAGES = tables.pages()
# The pages people write (tool-written reports in docs/*/ hold no commands to check).
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --- generated tables -------------------------------------------------------------------------


def test_every_generated_block_matches_its_result_file():
    assert tables.stale(PAGES) == []


def test_the_readme_shows_the_quick_start_output_and_the_results_table_as_generated_blocks():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert tables.blocks(quick_start) == ["quickstart"]
    assert "summary" in tables.blocks(readme)
    every = [spec.split()[0] for page in PAGES for spec in tables.blocks(page.read_text())]
    assert {"compare", "memory", "speed", "tune", "compile-solve"} <= set(every)


def test_the_check_names_each_block_that_differs_and_the_rewrite_mends_it(
    tmp_path, monkeypatch, capsys
):
    good = tables.render("speed")
    block = f"{tables.OPEN}speed -->\n\n{good}\n\n{tables.END}"
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\n{block}\n\nText after.\n")
    assert tables.stale([page], tmp_path) == []

    page.write_text(page.read_text().replace("21.6×", "25.0×", 1))  # a number typed by hand
    unknown = f"{tables.OPEN}no-such-table -->\n\n{tables.END}"
    other = tmp_path / "other.md"
    other.write_text(f"{unknown}\n\n{tables.OPEN}speed -->\nno end marker\n")
    found = tables.stale([page, other], tmp_path)
    assert found[0] == "page.md: speed"
    assert any("no-such-table (cannot render" in line for line in found)
    assert any("without its" in line for line in found)

    monkeypatch.setattr(tables, "pages", lambda root=tmp_path: [page])
    assert tables.main(["--check"]) == 1
    assert "page.md: speed" in capsys.readouterr().err
    assert tables.main([]) == 0  # rewrites the block from its result file
    assert page.read_text() == f"# A page\n\n{block}\n\nText after.\n"
    assert tables.main(["--check"]) == 0


def test_the_stability_table_reads_what_stability_py_writes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # stability.py imports provenance
    stability = load_script("stability")
    finals = [500.0, 500.0, 480.0, 200.0]
    records = [
        {
            "variant": "defaults",
            "agent": "lstm",
            "budget": 100_000,
            "seed": seed,
            "threshold": 475.0,
            "final": final,
            "solved_at_steps": 36_864,
            "solved_at_seconds": 1.5 + seed,
            "train_seconds": 5.0,
            "stability": {
                "solved_index": 8,
                "after_solve": 10,
                "held": 9,
                "worst_after_solve": 300.0,
            },
        }
        for seed, final in enumerate(finals)
    ]
    files = []
    for path in ("default (DEFAULT)", "automatic (AVX2)"):
        file = tmp_path / f"{path.split()[0]}.json"
        record = {"command": "python benchmarks/stability.py", "float_path": path}
        file.write_text(json.dumps({**record, "rows": stability.table_rows(records)}))
        files.append(str(file))
    one = tables.render(f"stability {files[0]}")
    assert "| final ≥ 475 |" in one and "| lstm | defaults | 100,000 | 3/4 |" in one
    assert "90.0% [" in one and "(36 of 40)" in one and "float path default (DEFAULT)" in one
    both = tables.render(f"stability {files[0]} {files[1]}")
    assert "| lstm | defaults | 100,000 | automatic (AVX2) | 3/4 |" in both


def test_the_time_to_solve_ratio_is_a_lower_bound_while_recurrentppo_has_an_unsolved_seed():
    def run(agent: str, seconds: float | None, steps_per_second: float) -> dict:
        record = {"agent": agent, "solved_at_seconds": seconds, "max_steps": 200_000}
        return record | {"steps_per_second": steps_per_second}

    ours = [run("rlrnn gru", 10.0, 1000.0), run("rlrnn gru", 30.0, 1000.0)]
    solved = [run(tables.SB3, 300.0, 100.0), run(tables.SB3, 500.0, 100.0)]
    assert tables.solve_ratio(ours + solved) == "Median seconds to solve: rlrnn's are 20.0× fewer."
    # An unsolved seed counts at its whole training time (200k steps at 100 steps/s: 2000 s).
    once = tables.solve_ratio([*ours, solved[0], run(tables.SB3, None, 100.0)])
    assert "at least 57.5× fewer" in once and "1 unsolved seed(s)" in once
    never = [run("rlrnn gru", None, 1000.0)] * 2
    assert "no time-to-solve ratio" in tables.solve_ratio(never + solved)


def test_the_suite_table_bolds_only_intervals_apart_and_says_when_one_seed_has_none(tmp_path):
    def result(mean: float, low: float | None, high: float | None) -> dict:
        """A row as compare's summary.json holds it."""
        row = AgentResult(
            "gru", 5, mean, low, high, mean, mean, 1.0, 5, 1e4, 2.0, 0.9, 400.0, 1e3, 99
        )
        return dataclasses.asdict(row)

    results = {"gru": result(300.0, 280.0, 320.0), "framestack-k4": result(100.0, 90.0, 110.0)}
    summary = {"command": "rlrnn compare --suite memory", "episodes": 100}
    for relation, bold in (("above", True), ("overlapping", False)):
        separated = {"best_recurrent": "gru", "framestack-k4": {"relation": relation}}
        folder = tmp_path / relation
        folder.mkdir()
        data = summary | {"results": {"Env-v0": results}, "separated": {"Env-v0": separated}}
        (folder / "summary.json").write_text(json.dumps(data))
        assert ("| gru | **300.0 [280.0, 320.0]** |" in tables.render(f"memory {folder}")) == bold
    one = {"Env-v0": {"gru": result(300.0, None, None) | {"seeds": 1}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary | {"results": one}))
    assert "| gru | 300.0 (1 seed, no interval) |" in tables.render(f"memory {tmp_path}")


# --- links --------------------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """``text`` without its code blocks and code spans (a link there is not a link)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", prose(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        found.add(slug.replace(" ", "-"))
    return found


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading():
    readme = ROOT / "README.md"
    assert "quick-start" in anchors(readme) and "results" in anchors(readme)
    assert "no-such-heading" not in anchors(readme)
    assert LINK.findall(prose("[a](docs/x.md#y) `[b](c.md)` ![i](f.png)")) == [
        "docs/x.md#y",
        "f.png",
    ]


# --- commands -------------------------------------------------------------------------------------


def shown_commands(text: str) -> list[list[str]]:
    """The ``python train.py``, ``python evaluate.py`` and ``rlrnn`` commands in ``text``'s code
    blocks, as the argument lists ``rlrnn`` would get; placeholders like ``<run-name>`` filled."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines()[1:]:
            for part in re.sub(r"<[^>\s]+>", "example", line).split("&&"):
                part = part.strip().removeprefix("$ ")
                if not re.match(r"(python (train|evaluate)\.py|rlrnn)(\s|$)", part):
                    continue  # not a command of ours (output, code, a layout map)
                words = shlex.split(part, comments=True)
                if words[:2] == ["python", "train.py"]:
                    commands.append(["train", *words[2:]])
                elif words[:2] == ["python", "evaluate.py"]:
                    analysis = words[2:3] and words[2] in ("compare", "probe", "gradflow")
                    commands.append(words[2:] if analysis else ["evaluate", *words[2:]])
                elif words[:1] == ["rlrnn"]:
                    commands.append(words[1:])
    return commands


def refusal(argv: list[str]) -> str | None:
    """Why rlrnn's own parser refuses ``argv`` (None: it parses; nothing runs)."""
    from rlrnn.cli import build_parser

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as e:
        return None if e.code in (0, None) else err.getvalue().strip() or f"exit {e.code}"
    return None


def test_every_command_the_readme_and_the_docs_show_parses():
    refused = []
    count = 0
    for page in GUIDES:
        for argv in shown_commands(page.read_text()):
            count += 1
            why = refusal(argv)
            if why is not None:
                refused.append(f"{page.relative_to(ROOT)}: {shlex.join(argv)}: {why}")
    assert refused == []
    readme = shown_commands((ROOT / "README.md").read_text())
    assert ["train"] in readme and len(readme) >= 20 and count > len(readme)


def test_the_command_check_refuses_what_the_cli_refuses():
    text = "```bash\npython train.py --no-such-flag 3   # a comment\nrlrnn evaluate\n```\n"
    argvs = shown_commands(text)
    assert argvs == [["train", "--no-such-flag", "3"], ["evaluate"]]
    assert "unrecognized arguments" in refusal(argvs[0])
    assert refusal(argvs[1]) is not None  # evaluate needs a run
    assert shown_commands("```\npython evaluate.py compare --full\n```") == [["compare", "--full"]]


# --- the README is a guide -----------------------------------------------------------------------


def test_the_readme_is_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
