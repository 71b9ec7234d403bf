"""fleetctl: run the whole fleet locally, and inspect or repair one anywhere.

``fleetctl up|down|status|restart`` drive the local supervisor (``local.py``); ``status``,
``dlq``, ``token`` and ``migrate`` also work inside a Kubernetes pod from the same environment
variables the services read. docs/fleetctl.md describes every command.
"""
