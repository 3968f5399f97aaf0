"""Verilog MAC arrays, cocotb benches and synthesis wrappers; see issue 5."""
