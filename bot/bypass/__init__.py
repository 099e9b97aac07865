"""The guarded appliance bypass (checklist step 4): route tables written, proven, reverted.

`handlers/bypass.py` decides (the plan, the verdict); this package does the I/O:
`routes.py` writes and reverts route tables through azure-mgmt-network, `state.py` keeps
the record, the per-route-table lock and the audit stream in Redis, `run.py` puts them
together for the terminal, the worker jobs and the reconciler, `policy.py` reads the
configuration's `bypass:` section.
"""
