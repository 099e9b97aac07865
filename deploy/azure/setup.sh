#!/usr/bin/env bash
# Azure side of an aks-egress deployment, with the az CLI (Cloud Shell has all it needs):
#   1. workload identity on the AKS cluster the bot runs in (OIDC issuer + webhook),
#   2. a user-assigned managed identity for the bot,
#   3. the custom roles (aks-egress-reader.json, aks-egress-cluster-user.json;
#      aks-egress-route-writer.json only if asked),
#   4. role assignments: the reader role at every scope in READ_SCOPES, the cluster-user
#      role (the cluster's kubeconfig) on each cluster of CLUSTER_IDS and nowhere else,
#   5. the federated credential that lets system:serviceaccount:aks-egress:aks-egress
#      sign in as the identity.
# It is safe to run again (each step checks what exists). Set the variables below, or pass
# them in the environment:
#
#   SUBSCRIPTION=... RESOURCE_GROUP=rg-aks CLUSTER_NAME=aks-prod bash deploy/azure/setup.sh
#
# At the end it prints the values your Kubernetes overlay needs (client id, principal id).
set -euo pipefail

SUBSCRIPTION=${SUBSCRIPTION:?set SUBSCRIPTION: the subscription of the AKS cluster the bot runs in}
RESOURCE_GROUP=${RESOURCE_GROUP:?set RESOURCE_GROUP: the resource group of that cluster}
CLUSTER_NAME=${CLUSTER_NAME:?set CLUSTER_NAME: the AKS cluster the bot runs in}
# Where the identity is created (default: beside the cluster).
IDENTITY_RESOURCE_GROUP=${IDENTITY_RESOURCE_GROUP:-$RESOURCE_GROUP}
IDENTITY_NAME=${IDENTITY_NAME:-aks-egress}
# Must match deploy/kubernetes/base (namespace aks-egress, ServiceAccount aks-egress).
NAMESPACE=${NAMESPACE:-aks-egress}
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-aks-egress}
# Space-separated scopes for the read role. A check reads the cluster, its node resource
# group, the VNet and route tables (often in another resource group or a hub
# subscription), lists the subscription's firewalls and NAT gateways and reads its service
# tags: so give every subscription that holds a cluster of the cluster map or its network.
READ_SCOPES=${READ_SCOPES:-/subscriptions/$SUBSCRIPTION}
# Space-separated ARM ids of the clusters the bot checks (its aks-egress.yaml): only these
# hand the bot a kubeconfig (listClusterUserCredential). Default: the cluster it runs in.
CLUSTER_IDS=${CLUSTER_IDS:-/subscriptions/$SUBSCRIPTION/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.ContainerService/managedClusters/$CLUSTER_NAME}
# Route writes for the later appliance-bypass action: empty (the default) keeps the bot
# read-only. Otherwise the route tables' resource groups (or the route tables) to allow.
ROUTE_WRITE_SCOPES=${ROUTE_WRITE_SCOPES:-}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
READER_ROLE="aks-egress reader"
CLUSTER_USER_ROLE="aks-egress cluster user"
WRITER_ROLE="aks-egress route writer"

az account set --subscription "$SUBSCRIPTION"

echo "== 1. workload identity on $CLUSTER_NAME"
issuer=$(az aks show -g "$RESOURCE_GROUP" -n "$CLUSTER_NAME" \
    --query "oidcIssuerProfile.issuerUrl" -o tsv)
wi=$(az aks show -g "$RESOURCE_GROUP" -n "$CLUSTER_NAME" \
    --query "securityProfile.workloadIdentity.enabled" -o tsv)
if [[ -z "$issuer" || "$wi" != "true" ]]; then
    az aks update -g "$RESOURCE_GROUP" -n "$CLUSTER_NAME" \
        --enable-oidc-issuer --enable-workload-identity --output none
    issuer=$(az aks show -g "$RESOURCE_GROUP" -n "$CLUSTER_NAME" \
        --query "oidcIssuerProfile.issuerUrl" -o tsv)
fi

echo "== 2. managed identity $IDENTITY_NAME"
location=$(az aks show -g "$RESOURCE_GROUP" -n "$CLUSTER_NAME" --query location -o tsv)
if ! az identity show -g "$IDENTITY_RESOURCE_GROUP" -n "$IDENTITY_NAME" --output none 2>/dev/null; then
    az identity create -g "$IDENTITY_RESOURCE_GROUP" -n "$IDENTITY_NAME" \
        --location "$location" --output none
fi
client_id=$(az identity show -g "$IDENTITY_RESOURCE_GROUP" -n "$IDENTITY_NAME" --query clientId -o tsv)
principal_id=$(az identity show -g "$IDENTITY_RESOURCE_GROUP" -n "$IDENTITY_NAME" --query principalId -o tsv)
tenant_id=$(az identity show -g "$IDENTITY_RESOURCE_GROUP" -n "$IDENTITY_NAME" --query tenantId -o tsv)

# The role files name a placeholder subscription as their assignable scope: replace it with
# the subscriptions the scopes live in.
role_file() {  # role_file FILE SCOPES... -> a temporary role definition with those scopes
    local file=$1; shift
    local subs="" scope sub
    for scope in "$@"; do
        sub=$(cut -d/ -f1-3 <<<"$scope")
        [[ "$subs" == *"\"$sub\""* ]] || subs+="${subs:+, }\"$sub\""
    done
    local out
    out=$(mktemp)
    sed "s|\"/subscriptions/00000000-0000-0000-0000-000000000000\"|$subs|" "$file" >"$out"
    echo "$out"
}

define_role() {  # define_role NAME FILE SCOPES...
    local name=$1 file=$2; shift 2
    local def
    def=$(role_file "$file" "$@")
    if [[ -n $(az role definition list --custom-role-only true --name "$name" --query "[].id" -o tsv) ]]; then
        az role definition update --role-definition "@$def" --output none
    else
        az role definition create --role-definition "@$def" --output none
    fi
    rm -f "$def"
}

assign() {  # assign ROLE SCOPE (retries while a new role definition propagates)
    local role=$1 scope=$2 try
    for try in 1 2 3 4 5 6; do
        if az role assignment create --assignee-object-id "$principal_id" \
            --assignee-principal-type ServicePrincipal --role "$role" --scope "$scope" \
            --output none; then
            return 0
        fi
        echo "   role '$role' not assignable yet at $scope (try $try); waiting 20 s"
        sleep 20
    done
    return 1
}

echo "== 3. custom roles"
read -r -a read_scopes <<<"$READ_SCOPES"
define_role "$READER_ROLE" "$HERE/aks-egress-reader.json" "${read_scopes[@]}"
read -r -a cluster_ids <<<"$CLUSTER_IDS"
define_role "$CLUSTER_USER_ROLE" "$HERE/aks-egress-cluster-user.json" "${cluster_ids[@]}"
write_scopes=()
if [[ -n "$ROUTE_WRITE_SCOPES" ]]; then
    read -r -a write_scopes <<<"$ROUTE_WRITE_SCOPES"
    define_role "$WRITER_ROLE" "$HERE/aks-egress-route-writer.json" "${write_scopes[@]}"
fi

echo "== 4. role assignments"
for scope in "${read_scopes[@]}"; do
    echo "   $READER_ROLE at $scope"
    assign "$READER_ROLE" "$scope"
done
for scope in "${cluster_ids[@]}"; do
    echo "   $CLUSTER_USER_ROLE at $scope"
    assign "$CLUSTER_USER_ROLE" "$scope"
done
for scope in "${write_scopes[@]}"; do
    echo "   $WRITER_ROLE at $scope"
    assign "$WRITER_ROLE" "$scope"
done

echo "== 5. federated credential for system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT"
if ! az identity federated-credential show -g "$IDENTITY_RESOURCE_GROUP" \
    --identity-name "$IDENTITY_NAME" -n "$CLUSTER_NAME" --output none 2>/dev/null; then
    az identity federated-credential create -g "$IDENTITY_RESOURCE_GROUP" \
        --identity-name "$IDENTITY_NAME" -n "$CLUSTER_NAME" \
        --issuer "$issuer" \
        --subject "system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT" \
        --audience api://AzureADTokenExchange --output none
fi

cat <<EOF

Done. For your Kubernetes overlay (deploy/README.md):
  CLIENT_ID=$client_id      # ServiceAccount annotation azure.workload.identity/client-id
  PRINCIPAL_ID=$principal_id   # deploy/kubernetes/target-rbac subject, in other clusters
  TENANT_ID=$tenant_id
EOF
