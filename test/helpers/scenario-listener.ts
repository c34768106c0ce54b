// Test helper: a ScenarioServer on 127.0.0.1 port 0 in this process, the way the daemon will
// stands one up (test/scenarios/listener.test.ts runs the real one), over a --cert-dir whose local CA allows one intermediate (pathLen 1), so that
// every scenario, `intermediate` included, is served as it should be. Stopped by the test's after hook.

import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import type tls from 'node:tls';
import { prepareCertDir, requireGeneratedPair, writePair } from '../../src/certs/cert-dir';
import { createCa, createLeaf } from '../../src/certs/issue';
import { ensureScenarioCertificates } from '../../src/scenarios/scenario-certs';
import { createLogger } from '../../src/ops/logger';
import { ScenarioServer, type ScenarioServerEvents } from '../../src/scenarios/scenario-server';
import { dh1024Parameters, namedScenarioServerNames, scenarioTlsOptions } from '../../src/scenarios/scenario-tls';
import { tempDir } from './daemon';

const DAY_MS = 86_400_000;

export interface ScenarioListener {
  readonly port: number;
  readonly certDir: string;
  /** <certDir>/ca.pem, what clients trust. */
  readonly caFile: string;
  readonly caPem: string;
  readonly server: ScenarioServer;
}

export interface ScenarioListenerOptions {
  readonly domain?: string;
  /** --scenario-delay (ms); default 300. */
  readonly delayMs?: number;
  /** --handshake-timeout (ms); default 5000. */
  readonly handshakeTimeoutMs?: number;
  /** Changes the scenarios' TLS options before the server is made: to break one on purpose. */
  readonly editTls?: (options: Map<string, tls.TlsOptions>) => void;
  /** What the server reports; default: nothing is listened to. */
  readonly events?: Partial<ScenarioServerEvents>;
}

export async function startScenarioListener(t: TestContext, opts: ScenarioListenerOptions = {}): Promise<ScenarioListener> {
  const domain = opts.domain ?? 'localhost';
  const certDir = path.join(tempDir(t, 'tls-echod-scenario-check-'), 'certs');
  prepareCertDir(certDir);
  const now = Date.now();
  const validity = { notBefore: new Date(now - DAY_MS), notAfter: new Date(now + 30 * DAY_MS) };
  writePair(certDir, 'ca', await createCa('ecdsa-p256', validity, { pathLen: 1 }));
  const localCa = requireGeneratedPair(certDir, 'ca');
  const certs = await ensureScenarioCertificates({ certDir, domain });
  const names = namedScenarioServerNames(domain, certs);
  const ecdsa = await createLeaf(localCa, names, 'ecdsa-p256', validity);
  const rsa = await createLeaf(localCa, names, 'rsa-2048', validity);
  const tlsOptions = scenarioTlsOptions({
    certs,
    ecdsa: { key: ecdsa.keyPem, cert: ecdsa.certPem },
    rsa: { key: rsa.keyPem, cert: rsa.certPem },
    localCa: localCa.certPem,
    dh1024: dh1024Parameters(),
  });
  opts.editTls?.(tlsOptions);
  const server = new ScenarioServer(
    {
      domain,
      delayMs: opts.delayMs ?? 300,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 5000,
      limits: { idleTimeoutMs: 0, sessionTimeoutMs: 0, bandwidthBytesPerSec: 0, maxSessionBytes: 0 },
    },
    tlsOptions,
    { onScenario: () => undefined, onOpen: () => undefined, onClosed: () => undefined, ...opts.events },
    createLogger({ level: 'error', format: 'json' }),
  );
  let nextId = 1;
  const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => server.accept(socket, { id: nextId++, ip: '127.0.0.1', port: socket.remotePort ?? 0 }));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => {
    server.closeAll('shutdown');
    listener.close();
  });
  return { port: (listener.address() as net.AddressInfo).port, certDir, caFile: path.join(certDir, 'ca.pem'), caPem: localCa.certPem, server };
}
