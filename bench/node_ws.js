// bench/ws.sh's Node peer: Debian's node-ws (NODE_PATH=/usr/share/nodejs). GET /v1/ws/echo echoes
// every text and binary message; GET /v1/hello answers for the readiness poll. Usage: node_ws.js PORT
const http = require('http');
const { WebSocketServer } = require('ws');

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end('{"message":"Hello, World!"}');
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });
server.on('upgrade', (req, socket, head) => {
  if (!req.url.startsWith('/v1/ws/echo')) { socket.destroy(); return; }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});
server.listen(Number(process.argv[2]), '127.0.0.1');
