#!/bin/sh
# The sandbox's base image where no registry is reachable: a minimal Debian rootfs made with
# debootstrap and imported into the engine. Same packages as base.Dockerfile (scikit-learn: two
# problems of the original release import it).
#   usage: base-rootfs.sh TAG MIRROR [SUITE]      (needs root, debootstrap and a running engine)
set -eu
tag=$1
mirror=$2
suite=${3:-bookworm}
# Not /tmp: it may be mounted noexec or nodev, and debootstrap runs the rootfs's own binaries.
dir=$(mktemp -d "${MTPB_ROOTFS_TMP:-/var/tmp}/mtpb-rootfs.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
debootstrap --variant=minbase --include=python3,python3-numpy,python3-pandas,python3-sklearn "$suite" "$dir" "$mirror"
# A container never needs apt's downloads and lists, documentation or translations; dropping them
# halves the image and the import time.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
       "$dir"/usr/share/doc "$dir"/usr/share/man "$dir"/usr/share/info "$dir"/usr/share/locale
tar --numeric-owner -C "$dir" -c . | docker import --change 'CMD ["/usr/bin/python3"]' - "$tag"
