# VictoriaMetrics for the compose stack's TSDB writer (profile "tsdb" in
# docker-compose.yml), built FROM scratch with no registry: Debian's
# victoria-metrics binary (apt-get install victoria-metrics) is dynamically
# linked, so scripts/images.sh copies it into the build context with the
# shared libraries ldd lists and the dynamic loader, each at its absolute
# path (under root/), plus an empty data directory for the volume.
FROM scratch
COPY root/ /
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
EXPOSE 8428
ENTRYPOINT ["/usr/bin/victoria-metrics"]
CMD ["-storageDataPath=/data", "-httpListenAddr=:8428"]
