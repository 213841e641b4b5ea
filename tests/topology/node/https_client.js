// HTTPS load of the TLS tests: N requests, C at a time over keep-alive
// connections; prints one JSON line per request. Usage:
// node https_client.js PORT N C PREFIX
const https = require('https');
const [port, n, c, prefix] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, maxSockets: +c });
let next = 0;
let done = 0;
function one() {
  if (next >= +n) return;
  const i = next++;
  const rid = prefix + String(i).padStart(5, '0');
  const path = `/node/${i}?rid=${rid}` + (i % 10 === 4 ? '&fail=1' : '');
  https.get({ host: '127.0.0.1', port: +port, path, agent, rejectUnauthorized: false }, (res) => {
    res.resume();
    res.on('end', () => {
      console.log(JSON.stringify({ rid, n: i, status: res.statusCode }));
      if (++done === +n) agent.destroy();
      else one();
    });
  });
}
for (let k = 0; k < +c; k++) one();
