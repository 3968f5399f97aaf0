"""The CLI's examples (experiments.examples): shown by every verb's --help, listed in the README, and runnable as a
chain, in order, from an empty directory."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli_run import run_cli

from experiments.examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
VERBS = list(dict.fromkeys(verb for verb, _ in EXAMPLES))


def test_every_verb_has_an_example_and_the_chain_reads_only_what_it_wrote() -> None:
    assert set(VERBS) >= {
        "sim",
        "sweep",
        "sensitivity",
        "solve",
        "pareto",
        "quantize",
        "train",
        "quant-table",
        "demo",
        "rtl synth",
        "rtl gemm",
        "rtl verify",
    }
    written: set[str] = set()
    for _, line in EXAMPLES:
        argv = shlex.split(line)
        assert argv[0] == "lowbit"
        for flag in ("--costs", "--sensitivity", "--export"):
            if flag in argv:
                path = argv[argv.index(flag) + 1]
                assert path in written, f"{line!r} reads {path}, which no earlier example writes"
        if "--out" in argv:
            written.add(argv[argv.index("--out") + 1])


@pytest.mark.parametrize("verb", VERBS)
def test_help_shows_the_examples(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([*verb.split(), "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for v, line in EXAMPLES:
        if v == verb:
            assert line in flat, f"{line!r} missing from `lowbit {verb} --help`"


def test_root_help_lists_the_verbs_in_chain_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    listed = re.findall(r"^  ([a-z-]+)\s", out.split("Commands:")[1], flags=re.M)
    top = [v for v in dict.fromkeys(v.split()[0] for v in VERBS)]
    assert listed == top


def test_readme_lists_the_examples_in_order() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    positions = []
    for _, line in EXAMPLES:
        assert line in readme, f"README does not show {line!r}"
        positions.append(readme.index(line))
    assert positions == sorted(positions), "README lists the examples out of chain order"


@pytest.mark.slow
@pytest.mark.rtl
def test_the_examples_run_as_a_chain_from_an_empty_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for _, line in EXAMPLES:
        code, out, err = run_cli(shlex.split(line)[1:], capsys)
        assert code == 0, f"{line!r} exited {code}: {err[-2000:]}"
        argv = shlex.split(line)
        if "--out" in argv:
            assert (tmp_path / argv[argv.index("--out") + 1]).exists(), line
