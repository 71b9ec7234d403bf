"""Fleet's development and operations tools: everything a checkout needs and an image does not.

- the local fleet: configuration (`config`), process plan (`plan`), databases and roles
  (`provision`), preflight checks (`prereqs`), the supervisor (`supervisor`) and the
  ``fleetctl`` commands that drive them (`commands`: ``up``, ``down``, ``restart``, and the
  local-fleet side of ``status``, ``migrate`` and ``token``);
- the gateway renderer (`gateway`), the Python twin of the gateway image's entrypoint;
- the pytest plugin (`testing`) the repository's tests load.

It depends on fleet-shared; nothing in fleet-shared or in a service depends on it, and no
image installs it (tests/deploy/test_dockerfiles.py checks both).
"""
