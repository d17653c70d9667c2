// bench/node_sse.js: the Node reference server for bench/sse.sh (memory per idle event stream), on
// Node's plain `http` module (no framework).
//
//   node node_sse.js HOST:PORT
//
// GET /v1/events?count=N&interval_ms=M sends what apiary's /v1/events sends: text/event-stream,
// "retry: 2000", then events `tick` with ids 1..N and data {"seq":i,"count":N}, one every M ms
// (setTimeout per stream). GET /v1/hello answers the TechEmpower body (readiness check).
'use strict';
const http = require('http');

const [host, port] = (() => {
  const a = process.argv[2] || '127.0.0.1:8080';
  const i = a.lastIndexOf(':');
  return [a.slice(0, i), Number(a.slice(i + 1))];
})();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/v1/hello') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"message":"Hello, World!"}');
    return;
  }
  if (url.pathname !== '/v1/events') {
    res.writeHead(404);
    res.end();
    return;
  }
  const count = Number(url.searchParams.get('count') || 10);
  const interval = Number(url.searchParams.get('interval_ms') || 1000);
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
  res.write('retry: 2000\n\n');
  let seq = 0;
  let timer = null;
  const next = () => {
    seq++;
    if (seq > count) {
      res.end();
      return;
    }
    res.write(`event: tick\nid: ${seq}\ndata: {"seq":${seq},"count":${count}}\n\n`);
    timer = setTimeout(next, interval);
  };
  req.on('close', () => clearTimeout(timer));
  next();
});
server.keepAliveTimeout = 600000;
server.requestTimeout = 0;
server.headersTimeout = 600000;
server.listen({ host, port, backlog: 16384 }, () => {
  console.log(`listening on http://${host}:${port} node ${process.version}`);
});
process.on('SIGTERM', () => process.exit(0));
