#!/usr/bin/env bash
# One Apache Kafka broker (KRaft, combined broker+controller) from Maven Central
# jars, on 127.0.0.1, without Docker.
#
#   kafka.sh classpath   resolve the jars (once, cached outside the repo)
#   kafka.sh start       format storage if new, start in the background, wait until ready
#   kafka.sh stop        stop the broker this script started (by pid file)
#   kafka.sh status      exit 0 if our broker runs, 1 if not
#
# Settings (environment): FLEET_TWIN_KAFKA_PORT (9092),
# FLEET_TWIN_KAFKA_CONTROLLER_PORT (9094), FLEET_TWIN_STATE_DIR (./.fleet-twin),
# FLEET_TWIN_CACHE_DIR (~/.cache/fleet-twin), FLEET_TWIN_KAFKA_HEAP (1G),
# FLEET_TWIN_KAFKA_START_TIMEOUT (90 seconds).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=${FLEET_TWIN_KAFKA_PORT:-9092}
controller_port=${FLEET_TWIN_KAFKA_CONTROLLER_PORT:-9094}
state_dir=$(mkdir -p "${FLEET_TWIN_STATE_DIR:-.fleet-twin}" && cd "${FLEET_TWIN_STATE_DIR:-.fleet-twin}" && pwd)
cache_dir=${FLEET_TWIN_CACHE_DIR:-$HOME/.cache/fleet-twin}
heap=${FLEET_TWIN_KAFKA_HEAP:-1G}
timeout=${FLEET_TWIN_KAFKA_START_TIMEOUT:-90}

kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
classpath_file="$cache_dir/kafka-$kafka_version.classpath"
home="$state_dir/kafka"
pid_file="$state_dir/run/kafka.pid"
log_dir="$state_dir/logs/kafka"

say() { echo "kafka: $*" >&2; }

classpath() {
  if [ ! -s "$classpath_file" ]; then
    mkdir -p "$cache_dir"
    say "resolving Apache Kafka $kafka_version from Maven Central (once)"
    mvn -q -B -Dstyle.color=never -f "$here/pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:build-classpath \
      -Dmdep.includeScope=runtime -Dmdep.outputFile="$classpath_file.tmp" >&2
    mv "$classpath_file.tmp" "$classpath_file"
  fi
  echo "$classpath_file"
}

running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

java_opts() {
  echo "-Xms$heap -Xmx$heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
-Dlog4j2.configurationFile=$here/log4j2.properties -Dkafka.logs.dir=$log_dir"
}

render_config() {
  mkdir -p "$home/data" "$log_dir" "$(dirname "$pid_file")"
  sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
      -e "s|@DATA_DIR@|$home/data|g" "$here/server.properties" > "$home/server.properties"
}

format_storage() {
  [ -f "$home/data/meta.properties" ] && return 0
  local cp; cp=$(cat "$(classpath)")
  local cluster_id; cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  say "formatting KRaft storage in $home/data (cluster $cluster_id)"
  # shellcheck disable=SC2046
  java -Xmx512M $(java_opts | sed "s/-Xms$heap -Xmx$heap//") -cp "$cp" kafka.tools.StorageTool \
    format -t "$cluster_id" -c "$home/server.properties" --ignore-formatted >>"$log_dir/format.log" 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + timeout))
  until grep -qs "Kafka Server started" "$log_dir/server.log" && port_open "$port"; do
    if ! running; then
      say "broker exited during start-up; last lines of $log_dir/stdout.log and server.log:"
      tail -n 20 "$log_dir/stdout.log" "$log_dir/server.log" >&2 2>/dev/null || true
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "not ready after ${timeout}s; see $log_dir/server.log"
      return 1
    fi
    sleep 0.5
  done
}

start() {
  if running; then say "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then
    say "port $port is taken by a process this script did not start; set FLEET_TWIN_KAFKA_PORT"
    return 1
  fi
  render_config
  format_storage
  local cp; cp=$(cat "$(classpath)")
  : > "$log_dir/server.log"
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$cp" kafka.Kafka "$home/server.properties" \
    >"$log_dir/stdout.log" 2>&1 </dev/null &
  echo $! > "$pid_file"
  wait_ready
  say "ready on 127.0.0.1:$port (pid $(cat "$pid_file"), logs in $log_dir)"
}

stop() {
  if ! running; then rm -f "$pid_file"; say "not running"; return 0; fi
  local pid; pid=$(cat "$pid_file")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "pid $pid did not stop in 30s; killing"; kill -9 "$pid"; fi
  rm -f "$pid_file"
  say "stopped"
}

case "${1:-}" in
  classpath) classpath ;;
  start) start ;;
  stop) stop ;;
  status) running ;;
  *) echo "usage: $0 classpath|start|stop|status" >&2; exit 2 ;;
esac
