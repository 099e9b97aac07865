# aks-egress: all probe pods of one check in one run command (lib.sh says how the output
# is framed). The pod specs are the bot's own (bot/collect/probe.py), one file per node
# pool (specs.tsv: pool, file); this picks the pools as the direct path does, creates the
# pods, sweeps "$work/leftovers" of killed runs, waits until each pod has finished or cannot run,
# prints the pods and their logs, and deletes its pods whatever happens.
. ./lib.sh
namespace=$(cat namespace)
run=$(cat run-id)
probes="app.kubernetes.io/name=aks-egress-probe"
mine="$probes,aks-egress.io/run-id=$run"
until=$(($(date +%s) + $(cat deadline)))

cleanup() {
    kubectl delete pods -n "$namespace" -l "$mine" --now --wait=false --ignore-not-found \
        >/dev/null 2>&1
    [ "$work" = . ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' HUP INT TERM

# The pools: those of Linux nodes (only the --pod's node's pool when that pod runs).
only=""
if [ -s target ]; then
    only=$(kubectl get pod -n "$(sed -n 1p target)" "$(sed -n 2p target)" \
        -o jsonpath='{.spec.nodeName}' 2>/dev/null)
fi
kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.metadata.labels.kubernetes\.io/os}{"\t"}{.metadata.labels.kubernetes\.azure\.com/agentpool}{"\n"}{end}' \
    >"$work/nodes.tsv" 2>/dev/null
awk -F '\t' -v only="$only" '
    NR == FNR { spec[$1] = $2; next }
    ($2 == "" || $2 == "linux") && $3 != "" && (only == "" || $1 == only) && ($3 in spec) \
        && !($3 in seen) { seen[$3] = 1; print spec[$3] }
' specs.tsv "$work/nodes.tsv" >"$work/chosen"
if [ ! -s "$work/chosen" ] && [ -z "$only" ]; then
    echo unpinned.json >"$work/chosen"
fi

while read -r file; do
    kubectl create -f "$file" --validate=false -o name >/dev/null 2>"$work/create.err" \
        || { header create-failed "$file"; cat "$work/create.err"; }
done <"$work/chosen"

# Leftovers of killed runs, aged by the API server's clock: this run's newest pod is "now".
kubectl get pods -n "$namespace" -l "$probes" -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.metadata.creationTimestamp}{"\t"}{.metadata.labels.aks-egress\.io/run-id}{"\n"}{end}' \
    >"$work/all.tsv" 2>/dev/null
awk -F '\t' -v run="$run" -v age="$(cat leftover-after)" '
    function epoch(t,   y, m, d, era, yoe, doy, doe) {
        y = substr(t, 1, 4) + 0; m = substr(t, 6, 2) + 0; d = substr(t, 9, 2) + 0
        if (m <= 2) y--
        era = int(y / 400); yoe = y - era * 400
        doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
        doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
        return (era * 146097 + doe) * 86400 + substr(t, 12, 2) * 3600 + substr(t, 15, 2) * 60 \
            + substr(t, 18, 2)
    }
    { name[NR] = $1; when[NR] = epoch($2); own[NR] = ($3 == run) }
    own[NR] && (now == "" || when[NR] > now) { now = when[NR] }
    END { if (now != "") for (i = 1; i <= NR; i++) if (!own[i] && when[i] <= now - age) print name[i] }
' "$work/all.tsv" >"$work/leftovers"
while read -r pod; do
    kubectl delete pod -n "$namespace" "$pod" --now --wait=false --ignore-not-found >/dev/null 2>&1
done <"$work/leftovers"

# Wait until every pod has finished or cannot run (stuck: the waiting reasons that will not
# clear without a change), or the deadline.
while :; do
    kubectl get pods -n "$namespace" -l "$mine" -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\t"}{.status.reason}{"\t"}{.status.conditions[?(@.type=="PodScheduled")].reason}{"\t"}{.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' \
        >"$work/state.tsv" 2>/dev/null
    pending=$(awk -F '\t' '
        NR == FNR { stuck[$1] = 1; next }
        !($2 == "Succeeded" || $2 == "Failed" || $3 == "DeadlineExceeded" || $4 == "Unschedulable" \
            || ($5 in stuck)) { n++ }
        END { print n + 0 }
    ' stuck "$work/state.tsv")
    [ "$pending" -eq 0 ] || [ "$(date +%s)" -ge "$until" ] && break
    sleep 0.5 2>/dev/null || sleep 1
done

section pods get pods -n "$namespace" -l "$mine" -o json
# Pod names are DNS subdomains (no blanks, no quotes): safe to split on.
for pod in $(cut -f 1 "$work/state.tsv"); do
    section "log:$pod" logs -n "$namespace" "$pod" -c probe --limit-bytes=65536
done
header end
