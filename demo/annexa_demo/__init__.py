"""Demo and test estates, shipped for ``annexa demo`` by a distribution of their own
(``annexa-demo``, demo/ of the repository), never used by the product.

``annexa_demo.aws`` plants a simulated AWS estate in moto and serves, on 127.0.0.1, the
operations moto lacks. It edits moto's in-process state (ages credentials, adds the
root row of the credential report), so it needs moto — a dependency of ``annexa-demo``:
``pip install -e ./demo`` — and must stay out of the product: only ``collector.demo``
imports it (tests/test_architecture.py); it may import ``connectors`` and ``core``.
"""
