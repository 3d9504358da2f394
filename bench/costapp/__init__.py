"""The models of ``bench/cost.py``: a small ledger for the realistic create, and the floor's keys."""
