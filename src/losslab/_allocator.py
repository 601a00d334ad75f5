"""Transparent huge pages for torch's large CPU tensors, asked for before torch starts.

torch's CPU allocator reads ``THP_MEM_ALLOC_ENABLE`` once, at its first allocation; with it
set, allocations of 2 MiB and more are aligned to 2 MiB and advised ``MADV_HUGEPAGE``. A
Hessian-vector product of ``resnet20`` on 1,536 images in one batch (PyHessian's scheme) frees
and re-allocates GBs of activations: with 4 KiB pages 6.2–6.3 M page faults and 15.2–20.5 s
(2 cores, most of its CPU time in the kernel), with huge pages 0.37 M and 10.8–15.3 s
(``benchmarks/scale.py --part ab_products``, benchmarks/RESULTS.md). losslab's automatic CPU
batches (``objective.CPU_BATCH_BYTES``) keep tensors small enough that glibc reuses them, and
there the setting brought no measured gain; it is for the large batches a user chooses. It
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
