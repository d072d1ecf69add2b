"""The domain every part of Annexa shares; it depends on nothing else of ours."""
