"""fleetctl: inspect and repair a Fleet service anywhere, from its own settings.

This package is the part every service image carries: ``status``, ``dlq``, ``token`` and
``migrate``, which work inside a Kubernetes pod from the same environment variables the
services read. The local fleet's commands (``up``, ``down``, ``restart``, ...) come from the
fleet-tools package through the ``fleetctl.commands`` entry points (`cli.installed_commands`).
docs/fleetctl.md describes every command.
"""
