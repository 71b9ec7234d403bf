# Base of the service images where python:3.11-slim-bookworm cannot be pulled (CI, machines
# without registry access): Debian bookworm's own Python 3.11 on the minimal root filesystem
# that build.sh makes with debootstrap. The service Dockerfiles keep the official image as
# their default; build.sh passes this one as PYTHON_IMAGE. docs/images.md compares the two.
#
# Build context: a directory holding this file and ca-certificates.crt (build.sh makes it).
ARG DEBIAN_IMAGE=fleet-local/debian:bookworm
FROM ${DEBIAN_IMAGE}

# The release pins the Debian release (bookworm), not package versions: the archive keeps
# only each package's current point-release version, so an exact pin would break the build
# at the next point release. python3-venv gives the builder stage `python3 -m venv` (it
# installs uv with pip into one; Debian's own python3 refuses pip installs, PEP 668).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'

# The CA bundle of the machine that builds: Debian's roots plus whatever that machine adds
# (a TLS-inspecting proxy between it and PyPI). Copied after ca-certificates is installed,
# whose own bundle it replaces.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

# As in the official image: UTF-8 whatever the locale (minbase installs none).
ENV LANG=C.UTF-8
CMD ["python3"]
