# The sandbox's base image where a registry is reachable. base-rootfs.sh makes the same from a
# Debian mirror alone. Only Debian's own python3, numpy and pandas: no pip, no compilers.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-numpy python3-pandas python3-sklearn \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man
CMD ["/usr/bin/python3"]
