# aks-egress: every cluster read of one check in one run command (lib.sh says how the
# output is framed). Raw API JSON, as the bot's direct reads get it.
. ./lib.sh
section nodes get --raw /api/v1/nodes
section pods get --raw /api/v1/pods
section node-metrics get --raw /apis/metrics.k8s.io/v1beta1/nodes
section pod-metrics get --raw /apis/metrics.k8s.io/v1beta1/pods
if [ -s target ]; then
    namespace=$(sed -n 1p target)
    name=$(sed -n 2p target)
    section target get --raw "/api/v1/namespaces/$namespace/pods/$name"
fi
header end
