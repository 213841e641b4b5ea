// HTTPS server of the TLS tests (Node.js, its built-in OpenSSL).
// Usage: node https_server.js PORT CERT KEY
const https = require('https');
const fs = require('fs');
const [port, cert, key] = process.argv.slice(2);
https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const body = JSON.stringify({ url: req.url });
    res.writeHead(req.url.includes('fail') ? 503 : 200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  })
  .listen(+port, '127.0.0.1', () => console.log('ready'));
