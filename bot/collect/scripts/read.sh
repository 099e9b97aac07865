# aks-egress: the cluster reads of one check in one run command (lib.sh says how the
# output is framed): those the `parts` file names, as the raw API JSON the bot's direct
# reads get (the --pod's own view and coredns-custom as bot/collect/podview.py reads them).
. ./lib.sh
wants() {
    grep -qx "$1" parts
}
wants nodes && section nodes get --raw /api/v1/nodes
wants pods && section pods get --raw /api/v1/pods
wants node-metrics && section node-metrics get --raw /apis/metrics.k8s.io/v1beta1/nodes
wants pod-metrics && section pod-metrics get --raw /apis/metrics.k8s.io/v1beta1/pods
namespace=$(sed -n 1p target)
name=$(sed -n 2p target)
if wants target && [ -n "$name" ]; then
    section target get --raw "/api/v1/namespaces/$namespace/pods/$name"
fi
wants coredns && section coredns get --raw /api/v1/namespaces/kube-system/configmaps/coredns-custom
if wants pod-view && [ -n "$namespace" ]; then
    section namespaces get --raw /api/v1/namespaces
    section dns_services get --raw /api/v1/namespaces/kube-system/services
    section network_policies get --raw \
        "/apis/networking.k8s.io/v1/namespaces/$namespace/networkpolicies"
    section cilium_policies get --raw "/apis/cilium.io/v2/namespaces/$namespace/ciliumnetworkpolicies"
    section cilium_clusterwide get --raw /apis/cilium.io/v2/ciliumclusterwidenetworkpolicies
fi
header end
[ "$work" = . ] || rm -rf "$work"
