"""A new service from one template: ``fleetctl new-service NAME`` (``make service NAME=...``).

``template/`` is every file a service adds to the repository, each named and filled with the
tokens of `render.TOKENS` (``@name@`` and the like): the package with its api, worker and
migrate entry points, first migration, an example resource and event handler, unit and
integration tests; its docs page, Dockerfile, Helm chart and kustomize entries; its event
contract and its subscriptions. Every path holds ``@name@``, so the scaffold writes only files
of the new service and edits no shared one.

The steps: check the name (`names`), write the files (`render`), then regenerate what derives
from them (`regenerate`: the lock file and the installed entry points, the event schemas, the
fleet-wide lists of ``fleetctl registry sync``). `create.new_service` runs them in order.
"""
