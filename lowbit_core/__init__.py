"""lowbit's base package: the plumbing every other package shares, importing none of them.

* :mod:`lowbit_core.errors` -- the error root (:class:`~lowbit_core.errors.LowbitError`) and the input error the
  CLI maps to exit status 2;
* :mod:`lowbit_core.files` -- atomic writes and the checks of output paths made before any work starts;
* :mod:`lowbit_core.tables` -- reading and writing tables, CSV or Parquet by suffix;
* :mod:`lowbit_core.yamlio` -- YAML reading that refuses duplicate keys;
* :mod:`lowbit_core.schema` -- the pydantic schema pieces every config uses: strict models, bounded numbers,
  one-line validation errors;
* :mod:`lowbit_core.pairs` -- the (weight bits, activation bits) pair, its parser and its one formatter.
* :mod:`lowbit_core.lazy` -- package exports imported on first use.

Importing this package loads nothing heavy; each module imports what it needs (pandas only in ``tables``, pydantic
only in ``schema``).
"""
