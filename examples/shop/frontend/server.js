// Serves dist/ and forwards /api/* to the backend, with nothing but node's own modules.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');

const port = Number(process.env.PORT || 3000);
const backend = new URL(process.env.BACKEND_URL || 'http://localhost:8000');
const distDir = path.join(__dirname, 'dist');
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

function proxy(req, res) {
  const upstream = http.request(
    { host: backend.hostname, port: backend.port || 80, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', (err) => {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `backend is not reachable: ${err.message}` }));
  });
  req.pipe(upstream);
}

function serveStatic(req, res) {
  const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = path.join(distDir, urlPath === '/' ? 'index.html' : path.normalize(urlPath));
  if (!file.startsWith(distDir + path.sep)) {
    res.writeHead(400).end();
    return;
  }
  fs.readFile(file, (err, data) => {
    if (err) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
    res.end(data);
  });
}

http
  .createServer((req, res) => (req.url.startsWith('/api/') ? proxy(req, res) : serveStatic(req, res)))
  .listen(port, () => console.log(`shop frontend on :${port}, /api → ${backend.origin}`));

process.on('SIGTERM', () => process.exit(0));
