# shellcheck shell=bash
# start_nginx DIR PORT: nginx with 1 worker answering "hello world\n" (12
# bytes) on 127.0.0.1:PORT; pid file DIR/nginx.pid (the caller kills it).
start_nginx() {
  local dir=$1 port=$2
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "hello world\n"; }
  }
}
CONF
  nginx -c "$dir/nginx.conf" -p "$dir"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nginx did not listen on $port" >&2
  return 1
}
