#!/usr/bin/env bash
# One Apache Kafka broker (KRaft, combined broker+controller) from Maven Central
# jars, on 127.0.0.1, without Docker.
#
#   kafka.sh classpath   resolve the jars (once, cached outside the repo)
#   kafka.sh start       format storage if new, start in the background, wait until ready
#   kafka.sh stop        stop the broker this script started (by pid file)
#   kafka.sh status      exit 0 if our broker runs, 1 if not
#   kafka.sh dump-log F  Kafka's DumpLogSegments over segment files: each batch's codec
#
# Settings (environment): FLEET_TWIN_KAFKA_PORT (9092),
# FLEET_TWIN_KAFKA_CONTROLLER_PORT (9094), FLEET_TWIN_STATE_DIR (./.fleet-twin),
# FLEET_TWIN_CACHE_DIR (~/.cache/fleet-twin), FLEET_TWIN_KAFKA_HEAP (1G),
# FLEET_TWIN_KAFKA_START_TIMEOUT (90 seconds).
#
# Security: FLEET_TWIN_KAFKA_SECURITY_PROTOCOL is PLAINTEXT (default) or
# SASL_SSL. SASL_SSL serves clients SASL/SCRAM-SHA-512 over TLS only, and
# brokers talk to each other the same way as user `admin`; the KRaft controller
# listener stays PLAINTEXT on 127.0.0.1. A local CA and the broker's
# certificate are made once with openssl in <state>/secrets (0700, files 0600).
# The SCRAM users `admin` and FLEET_TWIN_KAFKA_SASL_USERNAME (fleet-twin) are
# created when the storage is formatted, with FLEET_TWIN_KAFKA_ADMIN_PASSWORD and
# FLEET_TWIN_KAFKA_SASL_PASSWORD, or, where unset, passwords generated once into
# <state>/secrets/kafka-admin.password and kafka-client.password (clients read
# the latter). Passwords never appear on a command line. The secure broker
# keeps its data in <state>/kafka-sasl_ssl, apart from the PLAINTEXT one.
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
security=${FLEET_TWIN_KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}
case "$security" in
  PLAINTEXT) home="$state_dir/kafka" ;;
  SASL_SSL) home="$state_dir/kafka-sasl_ssl" ;;
  *) echo "kafka: FLEET_TWIN_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT or SASL_SSL, not $security" >&2; exit 2 ;;
esac
secrets_dir="$state_dir/secrets"
admin_user=admin
client_user=${FLEET_TWIN_KAFKA_SASL_USERNAME:-fleet-twin}
pid_file="$state_dir/run/kafka.pid"
profile_file="$state_dir/run/kafka.security"
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
  [ "$security" = SASL_SSL ] || return 0
  # The secure keys replace their PLAINTEXT namesakes; the file holds the admin password.
  local overlay="$here/server-sasl_ssl.properties" admin_pw rendered
  admin_pw=$(secret admin)
  rendered=$(awk -F= 'NR == FNR { if ($0 !~ /^#/ && NF) keys[$1] = 1; next } !($1 in keys)' \
               "$overlay" "$home/server.properties"
             sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$controller_port|g" \
                 -e "s|@SECRETS_DIR@|$secrets_dir|g" -e "s|@ADMIN_USER@|$admin_user|g" \
                 -e "s|@ADMIN_PASSWORD@|$admin_pw|g" "$overlay")
  (umask 077; printf '%s\n' "$rendered" > "$home/server.properties")
  chmod 600 "$home/server.properties"
}

# The password of `admin` or of the client user: from the environment, else
# generated once into the secrets folder. Characters that would need quoting
# in a SCRAM argument, a JAAS line or a properties file are refused.
secret() {
  local given file value
  if [ "$1" = admin ]; then given=${FLEET_TWIN_KAFKA_ADMIN_PASSWORD:-}; file="$secrets_dir/kafka-admin.password"
  else given=${FLEET_TWIN_KAFKA_SASL_PASSWORD:-}; file="$secrets_dir/kafka-client.password"; fi
  if [ -n "$given" ]; then value=$given
  else
    [ -s "$file" ] || (umask 077; openssl rand -hex 24 > "$file")
    value=$(cat "$file")
  fi
  if ! [[ $value =~ ^[A-Za-z0-9._~+/=@%:!^*-]{12,}$ ]]; then
    say "the $1 password must be 12 or more of A-Z a-z 0-9 . _ ~ + / = @ % : ! ^ * -"
    return 1
  fi
  printf '%s' "$value"
}

# A local CA and the broker's certificate (127.0.0.1, localhost), made once.
make_certificates() {
  (umask 077; mkdir -p "$secrets_dir")
  chmod 700 "$secrets_dir"
  [ -s "$secrets_dir/broker.keystore.pem" ] && return 0
  say "making a local CA and the broker's TLS certificate in $secrets_dir"
  (
    umask 077; cd "$secrets_dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -keyout ca.key -out ca.pem \
      -subj "/CN=fleet-twin local CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile broker.ext -out broker.pem 2>/dev/null
    cat broker.key broker.pem > broker.keystore.pem.tmp
    mv broker.keystore.pem.tmp broker.keystore.pem
    rm -f broker.csr broker.ext
  )
}

format_storage() {
  [ -f "$home/data/meta.properties" ] && return 0
  local cp; cp=$(cat "$(classpath)")
  local cluster_id; cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  say "formatting KRaft storage in $home/data (cluster $cluster_id)"
  # The arguments go through a java @argfile (0600, removed after): SCRAM
  # passwords must not show on a command line.
  local args="$state_dir/run/format.args"
  (umask 077; printf '%s\n' kafka.tools.StorageTool format -t "$cluster_id" -c "$home/server.properties" \
     --ignore-formatted > "$args")
  if [ "$security" = SASL_SSL ]; then
    local admin_pw client_pw
    admin_pw=$(secret admin) && client_pw=$(secret client) || { rm -f "$args"; return 1; }
    if [ "$client_user" = "$admin_user" ]; then
      rm -f "$args"; say "FLEET_TWIN_KAFKA_SASL_USERNAME must not be $admin_user (the broker's own user)"; return 1
    fi
    printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$admin_user,password=$admin_pw]" \
      --add-scram "SCRAM-SHA-512=[name=$client_user,password=$client_pw]" >> "$args"
  fi
  local status=0
  # shellcheck disable=SC2046
  java -Xmx512M $(java_opts | sed "s/-Xms$heap -Xmx$heap//") -cp "$cp" "@$args" \
    >>"$log_dir/format.log" 2>&1 || status=$?
  rm -f "$args"
  return $status
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
  if running; then
    local theirs; theirs=$(cat "$profile_file" 2>/dev/null || echo PLAINTEXT)
    if [ "$theirs" != "$security" ]; then
      say "the broker of this state folder runs $theirs, not $security: stop it first (make down)"
      return 1
    fi
    say "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0
  fi
  if port_open "$port"; then
    say "port $port is taken by a process this script did not start; set FLEET_TWIN_KAFKA_PORT"
    return 1
  fi
  if [ "$security" = SASL_SSL ]; then make_certificates; fi
  render_config
  format_storage
  local cp; cp=$(cat "$(classpath)")
  : > "$log_dir/server.log"
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$cp" kafka.Kafka "$home/server.properties" \
    >"$log_dir/stdout.log" 2>&1 </dev/null &
  echo $! > "$pid_file"
  echo "$security" > "$profile_file"
  wait_ready
  say "ready on 127.0.0.1:$port, $security (pid $(cat "$pid_file"), logs in $log_dir)"
}

stop() {
  if ! running; then rm -f "$pid_file" "$profile_file"; say "not running"; return 0; fi
  local pid; pid=$(cat "$pid_file")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "pid $pid did not stop in 30s; killing"; kill -9 "$pid"; fi
  rm -f "$pid_file" "$profile_file"
  say "stopped"
}

# Kafka's own reader of log segments (kafka-dump-log.sh): one line per record batch, with its
# offsets, size and codec ("compresscodec: zstd"). Arguments: segment files (.log).
dump_log() {
  [ $# -gt 0 ] || { echo "usage: $0 dump-log SEGMENT.log..." >&2; return 2; }
  local cp files; cp=$(cat "$(classpath)"); files=$(IFS=,; echo "$*")
  java -Xmx256M -Djava.awt.headless=true -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -Dkafka.logs.dir="$log_dir" -cp "$cp" kafka.tools.DumpLogSegments --files "$files"
}

case "${1:-}" in
  classpath) classpath ;;
  dump-log) shift; dump_log "$@" ;;
  start) start ;;
  stop) stop ;;
  status) running ;;
  *) echo "usage: $0 classpath|start|stop|status|dump-log SEGMENT.log..." >&2; exit 2 ;;
esac
