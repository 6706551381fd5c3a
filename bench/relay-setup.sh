# Sourced by bench/relay-vs-postfix.sh and bench/profile-relay.sh, so that the relay a profile
# looks at is configured exactly as the one the comparison measures. Needs `die` and ROOT.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait (at most 30 s) until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 300); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}

# write_relay_config FILE SPOOL PORT SINK_PORT [METRICS_PORT]: the benchmark relay. RSA-2048
# (the dev key), relaxed/relaxed, a `tls: none` listener for 127.0.0.1 (the load client speaks
# neither AUTH nor TLS), delivery to the sink, no rate limits; log.level from LOG (default info:
# two lines per message, as operators run it and as Postfix writes its maillog_file).
write_relay_config() {
  local file=$1 spool=$2 port=$3 sink_port=$4 metrics_port=${5:-}
  cat >"$file" <<CONFIG
hostname: relay.example.com
spool_dir: $spool
listeners:
  - address: "127.0.0.1:$port"
    tls: none
clients:
  - network: 127.0.0.1/32
    allow_from: ["example.com"]
dkim:
  domains:
    example.com:
      - selector: dev2026r
        private_key: $ROOT/config/dev-keys/example.com.dev2026r.pem
  canonicalization: relaxed/relaxed
delivery:
  mode: mx
  tls: none
  routes:
    example.net: "127.0.0.1:$sink_port"
dns:
  check_interval: 0s
limits:
  max_connections: 2048
  max_connections_per_ip: 1100
  messages_per_minute_per_client: 0
log:
  level: ${LOG:-info}
CONFIG
  if [[ -n "$metrics_port" ]]; then
    printf 'metrics:\n  address: "127.0.0.1:%s"\n' "$metrics_port" >>"$file"
  fi
}
