"""Demo and test estates, shipped for ``annexa demo`` (the ``[demo]`` extra), never used
by the product.

``annexa_demo.aws`` plants a simulated AWS estate in moto and serves, on 127.0.0.1, the
operations moto lacks. It edits moto's in-process state (ages credentials, adds the
root row of the credential report), so it needs moto — ``pip install 'annexa[demo]'``
— and must stay out of the connectors: ``connectors``, ``core``, ``store`` and
``analyzers`` never import it (tests/test_architecture.py); it may import them.
"""
