"""Thread budgets: what rewardgym runs at the same time, how many threads each may use, the knobs.

Learning here is bound by CPU cores (2 on the machines this project targets). A thread
pool larger than the cores it gets does not just share them: OpenMP, OpenBLAS and rayon
workers spin while they wait for each other, so on a machine where other work competes
for the cores every small operation pays for a descheduled peer. Measured on 2 cores with
two CPU-burning processes beside it, PPO on NetHack with 2 torch threads fell to ~4
steps/s, 1/10 of its speed with 1 thread (``benchmarks/contention.py``). So everything
rewardgym starts computes on one thread unless told otherwise:

=========================================  ========  ===========================================
who                                        threads   knob
=========================================  ========  ===========================================
the learner (rollout inference, update)    1 (CPU)   ``PPOConfig.num_threads`` (``--config``
                                                     file key ``num_threads``); torch's own
                                                     setting on CUDA
BLAS pools of the training process         1         :func:`limit_process` (``rewardgym train``
(numpy's OpenBLAS / MKL)                             sets the learner's ``num_threads``)
ONI's annotation and refit threads         1 each    none (their torch ops and the sentence
                                                     encoder run on 1 intra-op thread)
the caption tokenizer (HF tokenizers)      1         ``TOKENIZERS_PARALLELISM`` (set to
                                                     ``false`` unless already set)
reward worker (untrusted programs)         1         none: torch and BLAS limited after fork
``rewardgym check`` / critic child         1         none (torch limited after fork)
synthesis / seed training workers          1 each    ``--workers`` processes, each a learner
numba prelude kernels                      0         none: serial kernels (no ``parallel=True``),
                                                     so numba never starts its thread pool
off-screen rendering (OSMesa llvmpipe)     1         ``LP_NUM_THREADS`` (rewardgym sets 1 when it
                                                     picks OSMesa itself)
``torch.compile`` (PPO ``compile``)        compile   ``TORCHINDUCTOR_COMPILE_THREADS`` (compile
                                           time      workers exist only while compiling)
=========================================  ========  ===========================================

``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` set before Python starts still bound every
pool of the process as usual; the calls here work after the libraries are loaded
(threadpoolctl for BLAS and OpenMP, ``torch.set_num_threads`` for torch). This module
imports nothing from rewardgym, so every layer may use it.
"""

from __future__ import annotations

import sys

__all__ = ["limit_process", "limit_this_thread"]


def limit_this_thread(n: int = 1) -> None:
    """Run this thread's torch operations on ``n`` intra-op threads.

    With GNU OpenMP (torch's CPU build) the setting belongs to the calling thread: a
    background thread calls this for itself and leaves the learner's setting alone. torch is
    not imported by this call.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def limit_process(n: int = 1) -> None:
    """Bound the BLAS pools (OpenBLAS, MKL, BLIS) of this process and this thread's OpenMP and
    torch threads to ``n``.

    For a training process and for forked workers: in a child that may not create threads
    (the reward worker's system-call filter forbids ``clone``), OpenBLAS would otherwise try
    to start its pool on the first large matrix product and never return.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # not used as a context: the limits stay for the process's lifetime
    limit_this_thread(n)
