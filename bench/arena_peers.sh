#!/usr/bin/env bash
# bench/arena_peers.sh: starts a private h2o or nginx for bench/arena.sh on PORT with its config in DIR,
# in the foreground (exec: the PID the caller gets is the server's, one process, one worker thread).
#
#   arena_peers.sh nginx PORT DIR   nginx-light: /pipeline "ok"; /baseline11 a fixed "55" (nginx-light
#                                   cannot add numbers: a lower bound of its cost, not the same work)
#   arena_peers.sh h2o PORT DIR     h2o 2.2.5 (Debian): /pipeline a file "ok" (its native file handler);
#                                   /baseline11 an mruby handler summing a, b and the body (Debian's h2o
#                                   has mruby; the arena's h2o entry is C on libh2o, which Debian does not
#                                   ship built for apps)
set -euo pipefail
kind=$1 port=$2 dir=$3
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
    }
}
CONF
    exec /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    ;;
h2o)
    printf ok >"$dir/ok.txt"
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
CONF
    exec /usr/bin/h2o -c "$dir/h2o.conf"
    ;;
*) echo "usage: arena_peers.sh nginx|h2o PORT DIR" >&2; exit 2 ;;
esac
