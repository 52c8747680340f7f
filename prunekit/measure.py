"""Honest measurement of a pruned model: a map of the modules that measure (this module only re-exports).

A pruned weight is still stored as a zero in a dense tensor, so pruning by itself saves nothing.
What it *could* save has to be measured explicitly; each kind of measurement is one module:

==========================  ===============================================================
module                      what it measures
==========================  ===============================================================
:mod:`prunekit.counting`    parameters, nonzeros and multiply-accumulates (dense and
                            effective): ``count_parameters``, ``count_nonzeros``,
                            ``sparsity_table``, ``count_macs``; and ``format_table``
:mod:`prunekit.sizes`       bytes of real files: ``state_dict_bytes``, ``gzip_bytes``,
                            ``encode_sparse``, ``decode_sparse``, ``sparse_bytes``,
                            ``size_report``, ``save_sparse``, ``load_sparse``
:mod:`prunekit.latency`     seconds per batch, models timed alternately: ``measure_latency``,
                            ``compare_latency``, ``latency_ratio``, ``CLOCKS``
==========================  ===============================================================

Every name above can also be imported from here (``from prunekit import measure;
measure.count_macs(...)``), as the labs do.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_layerwise
    >>> model = build_model("lenet300")
    >>> _ = prune_layerwise(model, 0.9)
    >>> macs = count_macs(model, (1, 28, 28))
    >>> macs["dense"], macs["effective"]
    (266200, 26620)
"""
from __future__ import annotations

from .counting import count_macs, count_nonzeros, count_parameters, format_table, sparsity_table
from .latency import CLOCKS, compare_latency, latency_ratio, measure_latency
from .sizes import (decode_sparse, encode_sparse, gzip_bytes, load_sparse, save_sparse, size_report,
                    sparse_bytes, state_dict_bytes)

__all__ = ["count_parameters", "count_nonzeros", "sparsity_table", "format_table", "count_macs",
           "state_dict_bytes", "gzip_bytes", "encode_sparse", "decode_sparse", "sparse_bytes", "size_report",
           "save_sparse", "load_sparse", "CLOCKS", "measure_latency", "compare_latency", "latency_ratio"]

from .language import perplexity  # noqa: E402,F401  (Lab 7: a language model is measured by its perplexity)
