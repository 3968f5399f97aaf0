"""yosys synthesis: cell counts, NAND2-equivalent areas, and the area table of docs/rtl.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtl import synth
from rtl.tools import RtlError, ToolMissingError

pytestmark = pytest.mark.rtl

DOC = Path(__file__).resolve().parents[2] / "docs" / "rtl.md"


def _fixed(w: int, a: int) -> synth.SynthResult:
    return synth.synthesize("lowbit_mac_pe", parameters={"W_BITS": w, "A_BITS": a, "ACC_BITS": 32})


def test_synth_fixed_pe_grows_with_bits(yosys: str) -> None:
    r2, r4, r8 = _fixed(2, 2), _fixed(4, 4), _fixed(8, 8)
    for r in (r2, r4, r8):
        assert r.num_cells > 0 and r.area_nand2 > 0
        assert set(r.cells) <= set(synth.CELL_WEIGHTS)
        assert r.area_nand2 == pytest.approx(r.comb_nand2 + r.seq_nand2, abs=0.2)
    assert r2.area_nand2 < r4.area_nand2 < r8.area_nand2
    # weight + activation + psum registers: (w + a + 32) flip-flops
    assert (r2.flops, r4.flops, r8.flops) == (36, 40, 48)


def test_synth_fusion_larger_than_int8(yosys: str) -> None:
    fusion = synth.synthesize("lowbit_fusion_pe", parameters={"ACC_BITS": 32})
    assert fusion.flops == 96
    assert fusion.area_nand2 > _fixed(8, 8).area_nand2
    # ... but per MAC at 2 x 2 bits (16 products per cycle) it beats the fixed 2-bit PE
    assert fusion.area_nand2 / 16 < _fixed(2, 2).area_nand2


def test_synth_requant(yosys: str) -> None:
    r = synth.synthesize("lowbit_requant", parameters={"OUT_BITS": 8})
    assert r.num_cells > 0 and r.area_nand2 > _fixed(8, 8).area_nand2


def test_synth_cache(yosys: str, tmp_path: Path) -> None:
    a = synth.synthesize("lowbit_mac_pe", parameters={"W_BITS": 2, "A_BITS": 2}, cache_dir=tmp_path)
    b = synth.synthesize("lowbit_mac_pe", parameters={"W_BITS": 2, "A_BITS": 2}, cache_dir=tmp_path)
    assert not a.cached and b.cached and a.cells == b.cells and a.area_nand2 == b.area_nand2


def test_synth_errors(yosys: str, tmp_path: Path) -> None:
    with pytest.raises(RtlError, match="parameter"):
        synth.synthesize("lowbit_mac_pe", parameters={"W_BITS": "8"})  # type: ignore[dict-item]
    with pytest.raises(RtlError, match="no such source"):
        synth.synthesize("nope", sources=[tmp_path / "nope.v"])
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b); assign b = ; endmodule\n")
    with pytest.raises(RtlError, match="failed"):
        synth.synthesize("bad", sources=[bad], use_cache=False)


def test_missing_yosys_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match=r"^yosys: not found on PATH; install it with: apt-get install yosys"):
        synth.synthesize("lowbit_mac_pe")


def test_docs_area_table_is_current(yosys: str) -> None:
    """docs/rtl.md carries exactly `python -m rtl.synth --table` (regenerate it with that command)."""
    text = DOC.read_text()
    m = re.search(r"<!-- area-table: (.*?) -->\n(.*?)\n<!-- /area-table -->", text, re.S)
    assert m, "docs/rtl.md lacks the <!-- area-table: ... --> block"
    version = synth._yosys_version(yosys)
    if m.group(1).strip() != version:
        pytest.skip(f"docs/rtl.md table was made with {m.group(1)!r}, this is {version!r}: areas may differ")
    assert m.group(2).strip() == synth.area_markdown(synth.area_table()).strip(), (
        "docs/rtl.md area table is stale: regenerate with `python -m rtl.synth --table`"
    )
