// The admin HTTP listener (--admin): Prometheus metrics and health checks for systemd, load
// balancers and scrapers, and the scenario catalogue for client test suites. Plain HTTP on
// node:http; keep it on loopback. Small and bounded: few connections, short timeouts, request
// bodies never read.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, type HostPort } from '../config/config';
import { describeListenError, ListenError } from '../errors';
import { scenarioCatalogue } from '../scenarios/catalogue';
import type { Logger } from './logger';
import type { Metrics } from './metrics';

export interface AdminServerOptions {
  /** Where to listen; port 0 picks a free port (listen() resolves with it). */
  readonly address: HostPort;
  readonly metrics: Metrics;
  /** True when the daemon takes connections; false while it starts and while it drains. */
  readonly isReady: () => boolean;
  readonly logger: Logger;
  /** --scenario-domain when the scenario listener is on; undefined (scenarios off) makes GET /scenarios a 404. */
  readonly scenarioDomain?: string;
}

/** Scrapers and probes are few; this caps what a misbehaving one can hold open. */
const MAX_CONNECTIONS = 64;
const REQUEST_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 5_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;

const TEXT = 'text/plain; charset=utf-8';
const ALLOW = 'GET, HEAD';
// JSON is UTF-8 by definition (RFC 8259): no charset parameter.
const JSON_TYPE = 'application/json';
const ROUTES = new Set(['/metrics', '/healthz', '/readyz', '/scenarios']);
const SCENARIOS_OFF = 'scenarios are off (start the daemon with --scenarios <host:port> to serve them)\n';

/**
 * Serves GET/HEAD /metrics, /healthz (200 while the process is alive), /readyz (200 or 503) and
 * /scenarios (the catalogue as `tls-echod scenarios --json` prints it, or 404 when scenarios are off).
 */
export class AdminServer {
  private readonly options: AdminServerOptions;
  private readonly server: http.Server;
  private listening: Promise<HostPort> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: AdminServerOptions) {
    this.options = options;
    this.server = http.createServer(
      {
        requestTimeout: REQUEST_TIMEOUT_MS,
        headersTimeout: HEADERS_TIMEOUT_MS,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      },
      (req, res) => this.serverOnRequest(req, res),
    );
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  /** Starts listening; resolves with the bound address, rejects with ListenError. Call once. */
  listen(): Promise<HostPort> {
    if (this.closing !== undefined) return Promise.reject(new ListenError(`${this.flagText()}: admin server is closed`));
    this.listening ??= new Promise<HostPort>((resolve, reject) => {
      const { host, port } = this.options.address;
      const serverOnListenError = (err: Error): void => {
        reject(new ListenError(`${this.flagText()}: ${describeListenError(err, '--admin')}`, { cause: err }));
      };
      this.server.once('error', serverOnListenError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', serverOnListenError);
        // After a successful listen an 'error' is rare (EMFILE on accept) and not fatal.
        this.server.on('error', (err) => this.options.logger.error('admin server error', { error: err.message }));
        const bound = this.server.address() as AddressInfo;
        const address: HostPort = { host: bound.address, port: bound.port };
        this.options.logger.info('admin server listening', { admin: formatHostPort(address.host, address.port) });
        resolve(address);
      });
    });
    return this.listening;
  }

  /** Stops listening and destroys open connections (keep-alive ones too). Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    // A close() during listen() waits for the listen to settle, so the socket it opens is closed.
    if (this.listening !== undefined) await this.listening.catch(() => undefined);
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // server.close() alone waits for keep-alive connections to time out; shutdown shouldn't.
    this.server.closeAllConnections();
    await closed;
  }

  private flagText(): string {
    return `--admin ${formatHostPort(this.options.address.host, this.options.address.port)}`;
  }

  private serverOnRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // No route takes a body, so none is read or buffered. Node discards an unread body after
    // the response (bounded by requestTimeout); closing instead would reset the connection
    // with the body unread, and the client could lose the response to the RST.
    res.setHeader('Cache-Control', 'no-store');

    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (!ROUTES.has(path)) return send(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', ALLOW);
      return send(res, 405, 'method not allowed\n');
    }

    if (path === '/healthz') return send(res, 200, 'ok\n');
    if (path === '/readyz') return this.sendReady(res);
    if (path === '/scenarios') return this.sendScenarios(res);
    this.sendMetrics(res);
  }

  private sendReady(res: http.ServerResponse): void {
    let ready = false;
    try {
      ready = this.options.isReady();
    } catch (err) {
      this.options.logger.error('readiness check threw', { error: err instanceof Error ? err.message : String(err) });
    }
    if (ready) send(res, 200, 'ready\n');
    else send(res, 503, 'not ready\n');
  }

  private sendScenarios(res: http.ServerResponse): void {
    const domain = this.options.scenarioDomain;
    if (domain === undefined) return send(res, 404, SCENARIOS_OFF);
    send(res, 200, JSON.stringify(scenarioCatalogue(domain), null, 2) + '\n', JSON_TYPE);
  }

  private sendMetrics(res: http.ServerResponse): void {
    this.options.metrics.render().then(
      ({ contentType, body }) => send(res, 200, body, contentType),
      (err: unknown) => {
        this.options.logger.error('metrics render failed', { error: err instanceof Error ? err.message : String(err) });
        send(res, 500, 'metrics unavailable\n');
      },
    );
  }
}

/** Ends the response with a fixed-length body (Node leaves the body out for HEAD). */
function send(res: http.ServerResponse, status: number, body: string, contentType = TEXT): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
