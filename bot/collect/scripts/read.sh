# aks-egress: the cluster reads of one check in one run command (lib.sh says how the
# output is framed): those the `parts` file names, as the raw API JSON the bot's direct
# reads get.
. ./lib.sh
wants() {
    grep -qx "$1" parts
}
wants nodes && section nodes get --raw /api/v1/nodes
wants pods && section pods get --raw /api/v1/pods
wants node-metrics && section node-metrics get --raw /apis/metrics.k8s.io/v1beta1/nodes
wants pod-metrics && section pod-metrics get --raw /apis/metrics.k8s.io/v1beta1/pods
if wants target && [ -s target ]; then
    namespace=$(sed -n 1p target)
    name=$(sed -n 2p target)
    section target get --raw "/api/v1/namespaces/$namespace/pods/$name"
fi
header end
[ "$work" = . ] || rm -rf "$work"
