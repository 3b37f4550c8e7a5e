import net from 'node:net';

/**
 * A TCP proxy in front of the database. pause() cuts every connection through it and holds
 * new ones unanswered (a network partition); resume() lets new connections through again
 * (the held ones are dropped: their clients retry).
 */
export class Proxy {
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private held: net.Socket[] = [];
  private paused = false;
  port = 0;

  constructor(private readonly host: string, private targetPort: number) {
    this.server = net.createServer((client) => {
      client.on('error', () => undefined);
      if (this.paused) {
        this.held.push(client);
        return;
      }
      const upstream = net.connect(this.targetPort, this.host);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      for (const s of [client, upstream]) {
        this.open.add(s);
        s.on('close', () => this.open.delete(s));
      }
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  pause(): void {
    this.paused = true;
    for (const s of this.open) s.destroy();
  }

  resume(): void {
    this.paused = false;
    for (const s of this.held) s.destroy();
    this.held = [];
  }

  /** Cuts every connection; new ones go to `port` (a virtual IP moved to another server). */
  retarget(port: number): void {
    this.pause();
    this.targetPort = port;
    this.resume();
  }

  async close(): Promise<void> {
    this.pause();
    this.resume();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A proxy in front of the server of `url` (started), and `url` rewritten to go through it. */
export async function proxyFor(url: string): Promise<{ proxy: Proxy; url: string }> {
  const target = new URL(url);
  const proxy = new Proxy(target.hostname, Number(target.port || 5432));
  await proxy.listen();
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return { proxy, url: proxied.toString() };
}
