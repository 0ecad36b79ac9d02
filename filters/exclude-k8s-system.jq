# Every named image except those a Kubernetes distribution runs itself: anything from
# registry.k8s.io or k8s.gcr.io, k3s's rancher/mirrored-*, rancher/klipper-* and
# rancher/local-path-provisioner, and pause, coredns, metrics-server and traefik under any
# registry or organisation (k3s ships them as rancher/mirrored-pause,
# rancher/mirrored-coredns-coredns, rancher/mirrored-metrics-server,
# rancher/mirrored-library-traefik; older k3s as rancher/pause, rancher/coredns-coredns,
# rancher/metrics-server, rancher/library-traefik). Names as the guide's program prints them.
def k8s_system:
  (.Repository | ltrimstr("docker.io/")) as $repo
  | ($repo | split("/") | last) as $last
  | ($repo | startswith("registry.k8s.io/") or startswith("k8s.gcr.io/"))
    or ($repo | startswith("rancher/mirrored-") or startswith("rancher/klipper-"))
    or $repo == "rancher/local-path-provisioner"
    or ($last | test("^(pause|coredns|coredns-coredns|metrics-server|traefik|library-traefik)$"));
select(.Repository != "<none>" and (k8s_system | not))
| if .Tag == "<none>" then .Repository else .Repository + ":" + .Tag end
