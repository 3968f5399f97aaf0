"""The technology YAML's area figures are the synthesized ones (``lowbit rtl synth``)."""

from __future__ import annotations

import pytest

from sim.technology import load_technology


@pytest.mark.rtl
def test_technology_area_equals_synthesis(yosys) -> None:
    from rtl.synth import area_table, os_cost, overlap_cost

    table = area_table()
    area = load_technology("45nm").area
    assert area is not None
    fixed = table[table.pe_kind == "fixed"]
    assert {f"w{r.w_bits}a{r.a_bits}": round(r.area_nand2) for r in fixed.itertuples()} == {
        k: round(v) for k, v in area.fixed_pe_nand2.items()
    }
    assert round(table[table.pe_kind == "bitfusion"].area_nand2.iloc[0]) == round(area.bitfusion_pe_nand2)
    assert round(table[table.pe_kind == "requant"].area_nand2.iloc[0]) == round(area.requant_nand2)
    for kind, serial in (("stripes", "activation"), ("loom", "both"), ("stripes_stationary", "activation_stationary")):
        assert round(table[table.pe_kind == kind].area_nand2.iloc[0]) == round(area.bitserial_pe_nand2[serial])
    assert overlap_cost(table) == (area.overlap_per_pe_nand2, area.overlap_per_weight_bit_nand2)
    assert os_cost(table) == area.os_per_pe_nand2
