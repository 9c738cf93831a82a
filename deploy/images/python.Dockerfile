# Stand-in for python:3.11-slim-bookworm where no image registry is reachable: Debian
# bookworm's own Python 3.11 on the debootstrap'ed base. Tagged with the official name so
# deploy/Dockerfile builds unchanged; on a machine that can pull, the official image is used.
FROM fleet-local/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 # the official image's pip installs into the system Python; Debian's marks it managed
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
