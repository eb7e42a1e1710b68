#!/usr/bin/env bash
# Installs the system packages fleet-twin runs on, if any is missing:
# Java 17 + Maven (the Kafka broker), Prometheus, Alertmanager, kcat.
# With --test, also what only the tests need: Chromium (headless, to open the
# incident report offline). As root it uses apt-get; otherwise it prints the
# exact command to run.
set -euo pipefail

tests=0
for arg in "$@"; do
  case "$arg" in
    --test) tests=1 ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || need+=(prometheus-alertmanager)
command -v kcat >/dev/null || command -v kafkacat >/dev/null || need+=(kafkacat)
if [ "$tests" -eq 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "fleet-twin needs these system packages: ${need[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
