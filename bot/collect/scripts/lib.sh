# aks-egress: shared by the scripts bot/collect/runcommand.py sends through Azure's run
# command (az aks command invoke). Output is read back by runcommand.Sections: each part
# follows a line "<marker> <kind> <name> [<exit status>]"; the marker is random per
# command, so nothing a cluster object holds can pass for one. Values (namespace, names,
# run id) come from the command's context files, never from its command line.
mark=$(cat marker)
# kubectl keeps its discovery cache under $HOME: one fetch for all the calls of a command.
HOME=${HOME:-$PWD}
export HOME

header() {
    printf '\n%s %s\n' "$mark" "$*"
}

# section NAME KUBECTL-ARGS...: kubectl's output, its error output, and its exit status.
section() {
    name=$1
    shift
    kubectl "$@" >section.out 2>section.err
    header out "$name" "$?"
    cat section.out
    header err "$name"
    cat section.err
}
