#!/usr/bin/env bash
# bench/static_nginx.sh: starts a private nginx for bench/static.sh serving DATA/static under /static/ on
# PORT, config in DIR, in the foreground (exec: the PID the caller gets is the one serving; one process).
#
#   static_nginx.sh br|gz PORT DIR DATA [ofc]
#     br   gzip_static on + brotli_static on (Debian's libnginx-mod-http-brotli-static): sends NAME.br
#          when the client accepts br, else NAME.gz, else NAME
#     gz   gzip_static on only (nginx-light as packaged): NAME.gz or NAME
#     ofc  adds open_file_cache (max=1000, valid 1s, errors cached): descriptors and metadata kept for up
#          to a second, as an nginx tuned for files would run
# The rest is the arena's nginx entry's file settings: sendfile, tcp_nopush, tcp_nodelay, keep-alive
# without limit; ETag and Last-Modified left on (apiary sends both).
set -euo pipefail
mode=$1 port=$2 dir=$3 data=$4 ofc=${5:-}
mkdir -p "$dir/tmp"
load="" brotli=""
if [[ $mode == br ]]; then
    mod=/usr/lib/nginx/modules/ngx_http_brotli_static_module.so
    [[ -f $mod ]] || { echo "static_nginx.sh: $mod missing: apt-get install -y libnginx-mod-http-brotli-static" >&2; exit 2; }
    load="load_module $mod;"
    brotli="brotli_static on;"
fi
cache=""
[[ $ofc != ofc ]] || cache="open_file_cache max=1000 inactive=20s; open_file_cache_valid 1s; open_file_cache_errors on;"
cat >"$dir/nginx.conf" <<CONF
$load
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 65536; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    $cache
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /v1/hello { return 200 "ok"; }
        location /static/ {
            root $data;
            gzip_static on;
            $brotli
        }
    }
}
CONF
exec /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
