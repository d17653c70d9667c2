#!/usr/bin/env bash
# bench/arena_peers.sh: starts a private h2o or nginx for bench/arena.sh on PORT with its config in DIR,
# in the foreground (exec: the PID the caller gets is the server's, one process, one worker thread).
#
#   arena_peers.sh nginx PORT DIR [DATA]
#       nginx-light: /pipeline "ok"; /baseline11 a fixed "55" (nginx-light cannot add numbers: a lower
#       bound of its cost, not the same work); with DATA, /json/N serves the file DATA/json/N (the entry's
#       own answer to the json-comp request, ?m= ignored) gzip-coded per request by nginx's gzip filter
#       at level 1 (apiary's default; nginx-light has no Brotli filter), min length 1024, Vary on
#   arena_peers.sh h2o PORT DIR [DATA]
#       h2o 2.2.5 (Debian): /pipeline a file "ok" (its native file handler); /baseline11 an mruby handler
#       summing a, b and the body (Debian's h2o has mruby; the arena's h2o entry is C on libh2o, which
#       Debian does not ship built for apps); with DATA, /json/N as nginx's but coded by h2o's compress
#       filter (br quality 1, gzip level 1), and /static/ from DATA/static with file.send-compressed
#       (its .br/.gz siblings, as nginx gzip_static/brotli_static)
# Static files on nginx: bench/static_nginx.sh.
set -euo pipefail
kind=$1 port=$2 dir=$3 data=${4:-}
mkdir -p "$dir/tmp"
case $kind in
nginx)
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 65536; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server {
        listen 127.0.0.1:$port backlog=4096;
        default_type text/plain;
        location = /pipeline { return 200 "ok"; }
        location = /baseline11 { return 200 "55"; }
        $([[ -z $data ]] || echo "location /json/ { root $data; default_type application/json;
            gzip on; gzip_comp_level 1; gzip_types application/json; gzip_min_length 1024; gzip_vary on; }")
    }
}
CONF
    exec /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    ;;
h2o)
    printf ok >"$dir/ok.txt"
    extra=""
    if [[ -n $data ]]; then
        extra="      /json:
        file.dir: $data/json
        file.mime.setdefaulttype: application/json
        compress:
          gzip: 1
          br: 1
        compress-minimum-size: 1024
      /static:
        file.dir: $data/static
        file.send-compressed: ON"
    fi
    user=""
    [[ $(id -u) -eq 0 ]] && user="user: root"
    cat >"$dir/h2o.conf" <<CONF
listen:
  host: 127.0.0.1
  port: $port
num-threads: 1
max-connections: 65536
$user
pid-file: $dir/h2o.pid
error-log: $dir/error.log
http1-request-timeout: 600
hosts:
  default:
    paths:
      /pipeline:
        file.file: $dir/ok.txt
      /baseline11:
        mruby.handler: |
          Proc.new do |env|
            sum = 0
            env["QUERY_STRING"].to_s.split("&").each do |kv|
              k, v = kv.split("=", 2)
              sum += v.to_i if k == "a" || k == "b"
            end
            if env["REQUEST_METHOD"] == "POST" && env["rack.input"]
              body = env["rack.input"].read.to_s.strip
              sum += body.to_i unless body.empty?
            end
            [200, {"content-type" => "text/plain"}, [sum.to_s]]
          end
$extra
CONF
    exec /usr/bin/h2o -c "$dir/h2o.conf"
    ;;
*) echo "usage: arena_peers.sh nginx|h2o PORT DIR" >&2; exit 2 ;;
esac
