# aks-egress: shared by the scripts bot/collect/runcommand.py sends through Azure's run
# command (az aks command invoke). Output is read back by runcommand.Sections: each part
# follows a line "<marker> <kind> <name> [<exit status>]"; the marker is random per
# command, so nothing a cluster object holds can pass for one. Values (namespace, names,
# run id) come from the command's context files, never from its command line.
mark=$(cat marker)
# Scratch files go to a folder of their own (the context's folder may be read-only), and
# kubectl keeps its discovery cache there: one fetch for all the calls of a command.
work=$(mktemp -d 2>/dev/null) || work=.
HOME=$work
export HOME

header() {
    printf '\n%s %s\n' "$mark" "$*"
}

# section NAME KUBECTL-ARGS...: kubectl's output, its error output, and its exit status.
section() {
    name=$1
    shift
    kubectl "$@" >"$work/section.out" 2>"$work/section.err"
    header out "$name" "$?"
    cat "$work/section.out"
    header err "$name"
    cat "$work/section.err"
}
