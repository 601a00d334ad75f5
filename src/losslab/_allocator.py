"""Transparent huge pages for torch's large CPU tensors, asked for before torch starts.

torch's CPU allocator reads ``THP_MEM_ALLOC_ENABLE`` once, at its first allocation; with it
set, allocations of 2 MiB and more are aligned to 2 MiB and advised ``MADV_HUGEPAGE``. A
Hessian-vector product of ``resnet20`` on 1,536 images frees and re-allocates GBs of
activations: with 4 KiB pages each took 5.7–5.9 M page faults and 14.8–19.8 s (2 cores, most
of its CPU time in the kernel), with huge pages 0.38 M and 8.8–9.8 s (``benchmarks/scale.py
--part ab_products``, benchmarks/RESULTS.md). It
changes where tensors live, never what is computed. Set only when torch is not yet imported
(afterwards it would not take effect) and the user has not chosen (``THP_MEM_ALLOC_ENABLE=0``
turns it off). Linux only; elsewhere torch ignores it.
"""

import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    HUGE_PAGES: bool | None = os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
else:
    HUGE_PAGES = None  # torch started before losslab: whatever it read then is unknown here
