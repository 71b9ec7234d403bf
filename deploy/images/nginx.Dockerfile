# Base of the gateway image where nginxinc/nginx-unprivileged cannot be pulled (CI, machines
# without registry access): Debian bookworm's NGINX (the same build the gateway tests run on
# the machine), envsubst for the entrypoint's rendering, and dash as /bin/sh (the minimal
# root filesystem build.sh makes with debootstrap has it). gateway/Dockerfile keeps the
# official image as its default; build.sh passes this one as NGINX_IMAGE.
ARG DEBIAN_IMAGE=fleet-local/debian:bookworm
FROM ${DEBIAN_IMAGE}

# Pinned by the Debian release, not by package version (see python.Dockerfile). wget is what
# `helm test gateway` runs in this image (the release image has BusyBox's). The package's
# own site and log files are removed: the gateway renders its whole configuration into /tmp
# and logs to the standard streams.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx gettext-base wget \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /var/log/nginx/* \
    && nginx -v && command -v envsubst && command -v wget

STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
