#!/usr/bin/env bash
# The enrolment ACLs as Kafka's own tool sees them (docs/ENROLMENT.md,
# "Kafka side: listener and ACLs"): what `sluice fleet acl apply` and the
# enrolment service create through librdkafka, plus the transactional ids,
# which librdkafka before 2.6 cannot name.
#
#   deploy/kafka/acls.sh claim NAME  [--remove]   User:claim-NAME
#   deploy/kafka/acls.sh node NODE_ID [--remove]  User:NODE_ID
#
# Environment: KAFKA_ACLS (default kafka-acls.sh), KAFKA_BOOTSTRAP (an
# admin listener), KAFKA_ADMIN_CONFIG (--command-config file, optional),
# FLEET_PREFIX (sluice.fleet.), DATA_PREFIX (sluice.), CHECKPOINT_TOPIC
# (sluice.checkpoints), TXN_PREFIX (sluice-).
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 claim NAME | node NODE_ID [--remove]" >&2; exit 2; }
kind=$1 name=$2 verb=--add
[[ ${3:-} == --remove ]] && verb="--remove --force"
P=${FLEET_PREFIX:-sluice.fleet.}
D=${DATA_PREFIX:-sluice.}
CK=${CHECKPOINT_TOPIC:-sluice.checkpoints}
TX=${TXN_PREFIX:-sluice-}
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP to an admin listener}"
acl() {
  # shellcheck disable=SC2086 # verb is two words with --remove
  "${KAFKA_ACLS:-kafka-acls.sh}" --bootstrap-server "$KAFKA_BOOTSTRAP" \
    ${KAFKA_ADMIN_CONFIG:+--command-config "$KAFKA_ADMIN_CONFIG"} $verb \
    --allow-principal "$principal" "$@"
}
case $kind in
  claim)
    principal="User:claim-$name"
    acl --operation Write --topic "${P}enrol.requests"
    acl --operation Read --topic "${P}enrol.responses"
    acl --operation Read --group sluice-enrol- --resource-pattern-type prefixed
    ;;
  node)
    principal="User:$name"
    acl --operation Write --operation Describe --topic "$D" --resource-pattern-type prefixed
    acl --operation Write --operation Read --topic "$CK"
    for t in status inventory events enrol.requests; do
      acl --operation Write --topic "$P$t"
    done
    acl --operation Read --topic "${P}desired" --topic "${P}enrol.responses"
    acl --operation IdempotentWrite --cluster
    # Literal: a prefix sluice-sl-1 would cover sluice-sl-10 as well.
    acl --operation Write --operation Describe --transactional-id "$TX$name" \
      --transactional-id "$TX$name.1"
    acl --operation Read --group "$TX$name-checkpoint-reader" \
      --group "sluice-fleet-$name" --group "sluice-enrol-$name"
    ;;
  *) echo "usage: $0 claim NAME | node NODE_ID [--remove]" >&2; exit 2 ;;
esac
