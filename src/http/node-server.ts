import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { NodeMetrics, type MetricsSource } from './metrics.js';

export interface NodeServer {
  url: string;
  close(): Promise<void>;
}

/**
 * A node's own HTTP endpoints, for Prometheus and for supervisors (Kubernetes probes, systemd
 * watchdogs): /metrics, /healthz (the process is alive and serving), /readyz (holds its lease
 * and hears notifications; a standby, a starting or a stopping node says which it is, with
 * 503). Three fixed GET routes with no input: node:http serves them without a framework.
 */
export async function serveNode(node: MetricsSource & { options: { nodeName: string } }, where: { host: string; port: number }, log: Logger): Promise<NodeServer> {
  const metrics = new NodeMetrics(node);
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const pathname = new URL(req.url ?? '/', 'http://node').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'only GET\n');
    if (pathname === '/metrics') {
      metrics.text().then(
        (text) => reply(200, text, metrics.contentType),
        (error: unknown) => reply(500, `metrics failed: ${(error as Error).message}\n`),
      );
    } else if (pathname === '/healthz') {
      reply(200, `ok: node ${node.options.nodeName} is ${node.state}\n`);
    } else if (pathname === '/readyz') {
      const { active, listening } = node.ready;
      const w = node.options.workerId;
      if (active && listening) reply(200, `ready: active, holding the lease of worker ${w}, listening\n`);
      else if (active) reply(503, `not ready: holding the lease of worker ${w}, but the LISTEN connection is down (reconnecting)\n`);
      else if (node.state === 'standby') reply(503, `not ready: standby, worker ${w} is held by another node\n`);
      else reply(503, `not ready: ${node.state}\n`);
    } else {
      reply(404, 'not found: /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log.info({ url: `${url}/metrics` }, 'serving /metrics, /healthz, /readyz');
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
