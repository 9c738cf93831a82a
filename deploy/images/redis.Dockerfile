# Stand-in for redis:7.0.15 where no image registry is reachable: Debian bookworm's
# redis-server (7.0.15) on the debootstrap'ed base, run the way the official image runs it.
FROM fleet-local/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
