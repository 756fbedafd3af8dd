// Development aid, off unless HEARTH_E2E_UI_DIST names a built UI folder: serves that folder
// and forwards everything else (the API, streams included) to a `hearth serve`, so UI tests
// can run against a UI build before the server binary that embeds it is rebuilt. CI never
// sets it: there the tests use the UI the binary embeds, with its real headers.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { extname, join, normalize } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json',
  '.woff2': 'font/woff2', '.webmanifest': 'application/manifest+json',
};

export async function startDevUiProxy(dist, upstreamUrl) {
  const upstream = new URL(upstreamUrl);
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://proxy').pathname;
    const isApi = /^\/(api|v1|health|metrics)(\/|$)/.test(path);
    if (!isApi && request.method === 'GET') {
      let file = normalize(join(dist, decodeURIComponent(path)));
      if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) file = join(dist, 'index.html');
      response.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      createReadStream(file).pipe(response);
      return;
    }
    const forward = httpRequest(
      {
        host: upstream.hostname, port: upstream.port, method: request.method, path: request.url,
        headers: { ...request.headers, host: upstream.host, ...(request.headers.origin ? { origin: upstream.origin } : {}) },
      },
      (answer) => {
        response.writeHead(answer.statusCode, answer.headers);
        answer.pipe(response);
      },
    );
    forward.on('error', () => response.destroy());
    response.on('close', () => forward.destroy());
    request.pipe(forward);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
