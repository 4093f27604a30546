#!/bin/sh
# One-shot: create Tideflow's namespace and register its search attributes, once the Temporal
# frontend answers. Idempotent. Tideflow's worker also registers the attributes at start
# (starter.server.ensure_search_attributes), so a namespace set up by hand works too; doing it
# here lets workers start only once the namespace is usable.
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_RETENTION:-7d}"

echo "waiting for the Temporal frontend at ${ADDRESS}"
attempt=0
until temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "Temporal at ${ADDRESS} was not healthy after 120 s" >&2
    exit 1
  fi
  sleep 2
done

if temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace ${NAMESPACE} exists"
else
  echo "creating namespace ${NAMESPACE} (retention ${RETENTION})"
  temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
    --retention "$RETENTION"
fi

# A namespace's cache can lag its creation by a few seconds: retry listing until it answers.
attempt=0
until existing="$(temporal operator search-attribute list --address "$ADDRESS" \
    --namespace "$NAMESPACE" 2>/dev/null)"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 30 ]; then
    echo "cannot list search attributes of ${NAMESPACE}" >&2
    exit 1
  fi
  sleep 2
done

for name in TideflowDefinition TideflowVersion TideflowStatus TideflowRedriveOf; do
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute ${name} exists"
  else
    echo "registering search attribute ${name} (Keyword)"
    temporal operator search-attribute create --address "$ADDRESS" --namespace "$NAMESPACE" \
      --name "$name" --type Keyword
  fi
done
echo "namespace ${NAMESPACE} is ready for Tideflow"
