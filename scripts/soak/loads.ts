// The soak's load mix, each part a bounded number of loops that open one connection after
// another until stopped: echo of every size (1 B to 1 MiB, with and without a client
// certificate), idle sessions left to the idle timeout, slowloris (a PROXY header or a
// ClientHello trickled and never finished), floods of short connections from thousands of
// carried addresses (IPv4 and IPv6; refusals expected), half-closes, resumptions (TLS 1.2 and
// 1.3 tickets), scenario connections, and direct connections from untrusted 127.0.0.x.

import net from 'node:net';
import type tls from 'node:tls';
import { SCENARIOS } from '../../src/scenarios/catalogue';
import type { DaemonUnderTest } from './daemon';
import { SCENARIO_DOMAIN, SERVER_NAME } from './daemon';
import type { Prng } from './prng';
import { connectProxiedTcp, connectProxiedTls } from './proxy-client';
import { LIFETIME_BOUND_MS } from './settings';
import { runSession, type Outcome, type SessionResult } from './tls-session';

export const ECHO_SIZES = [1, 100, 1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024] as const;

export interface LoadCounts {
  started: number;
  ok: number;
  cut: number;
  refused: number;
  timeout: number;
  mismatch: number;
  /** Connections the daemon ended later than LIFETIME_BOUND_MS after the client went quiet. */
  late: number;
  /** Sessions resumed from a ticket (resumption load). */
  reused: number;
}

export type LoadStats = Record<string, LoadCounts>;

const zero = (): LoadCounts => ({ started: 0, ok: 0, cut: 0, refused: 0, timeout: 0, mismatch: 0, late: 0, reused: 0 });

/** Echo sizes that came back byte-exact at least once, by size. */
export type EchoedSizes = Map<number, number>;

export class LoadMix {
  readonly stats: LoadStats = {};
  readonly echoedSizes: EchoedSizes = new Map();
  private running = true;
  private readonly loops: Array<Promise<void>> = [];

  constructor(
    private readonly daemon: DaemonUnderTest,
    private readonly prng: Prng,
  ) {
    this.hot = `127.30.${prng.int(0, 255)}.${prng.int(1, 254)}`;
  }

  start(): void {
    this.spawn('echo', 3, () => this.echo());
    this.spawn('idle', 3, () => this.idle());
    this.spawn('slowloris-header', 2, () => this.slowloris('header'));
    this.spawn('slowloris-hello', 2, () => this.slowloris('hello'));
    this.spawn('half-close', 2, () => this.halfClose());
    this.spawn('resumption', 1, () => this.resumption());
    this.spawn('scenarios', 2, () => this.scenario());
    this.spawn('untrusted', 1, () => this.untrusted());
    this.spawn('flood', 1, () => this.floodBurst());
  }

  /** Stops starting connections and waits for the open ones to end (each is bounded in time). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** The loaded certificate fingerprints seen, for the rotation check (the last one). */
  lastFingerprint: string | undefined;

  private spawn(name: string, concurrency: number, one: () => Promise<Outcome | void>): void {
    this.stats[name] ??= zero();
    for (let i = 0; i < concurrency; i++) {
      this.loops.push(
        (async () => {
          while (this.running) {
            this.stats[name]!.started++;
            const outcome = await one();
            if (outcome !== undefined) this.stats[name]![outcome]++;
          }
        })(),
      );
    }
  }

  private tlsOptions(withClientCert: boolean, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
    const { ca, clientCert } = this.daemon.files;
    return { ca, servername: SERVER_NAME, ...(withClientCert ? { cert: clientCert.cert, key: clientCert.key } : {}), ...extra };
  }

  /** A carried address for the steady loads: 127.10.<load>.<n>, few enough to stay under the per-IP limits. */
  private steadyAddress(load: number): string {
    return `127.10.${load}.${this.prng.int(1, 8)}`;
  }

  private record(result: SessionResult): Outcome {
    if (result.fingerprint256 !== undefined) this.lastFingerprint = result.fingerprint256;
    return result.outcome;
  }

  private async echo(): Promise<Outcome> {
    const size = this.prng.pick(ECHO_SIZES);
    const payload = this.prng.bytes(size);
    const client = this.steadyAddress(1);
    const result = await runSession(() => connectProxiedTls({ port: this.daemon.ports.main, client, version: this.prng.pick([1, 2] as const) }, this.tlsOptions(this.prng.next() < 0.5)), { payload, timeoutMs: 30_000 });
    if (result.outcome === 'ok') this.echoedSizes.set(size, (this.echoedSizes.get(size) ?? 0) + 1);
    return this.record(result);
  }

  private async idle(): Promise<Outcome> {
    const result = await runSession(() => connectProxiedTls({ port: this.daemon.ports.main, client: this.steadyAddress(2) }, this.tlsOptions(false)), { timeoutMs: LIFETIME_BOUND_MS + 5000 });
    if (result.outcome === 'ok' && result.msAfterHandshake > LIFETIME_BOUND_MS) this.stats.idle!.late++;
    return this.record(result);
  }

  private async halfClose(): Promise<Outcome> {
    const payload = this.prng.bytes(this.prng.int(1, 200_000));
    const result = await runSession(
      () => connectProxiedTls({ port: this.daemon.ports.main, client: this.steadyAddress(3), allowHalfOpen: true }, this.tlsOptions(this.prng.next() < 0.5)),
      { payload, halfClose: true, timeoutMs: 30_000 },
    );
    return this.record(result);
  }

  private session12: Buffer | undefined;
  private session13: Buffer | undefined;

  private async resumption(): Promise<Outcome> {
    const v13 = this.prng.next() < 0.5;
    const result = await runSession(
      () =>
        connectProxiedTls(
          { port: this.daemon.ports.main, client: this.steadyAddress(4) },
          this.tlsOptions(false, { maxVersion: v13 ? 'TLSv1.3' : 'TLSv1.2', session: v13 ? this.session13 : this.session12 }),
        ),
      { payload: this.prng.bytes(64), timeoutMs: 30_000 },
    );
    if (result.reused) this.stats.resumption!.reused++;
    if (result.session !== undefined) {
      if (v13) this.session13 = result.session;
      else this.session12 = result.session;
    }
    return this.record(result);
  }

  private async scenario(): Promise<Outcome> {
    const name = this.prng.pick(SCENARIOS).name;
    // Scenarios refuse, stall or misbehave on purpose: nothing to verify but that each ends.
    const result = await runSession(
      () => connectProxiedTls({ port: this.daemon.ports.scenarios, client: this.steadyAddress(5) }, { servername: `${name}.${SCENARIO_DOMAIN}`, rejectUnauthorized: false, minVersion: 'TLSv1', ciphers: 'ALL:@SECLEVEL=0' }),
      { payload: this.prng.bytes(32), timeoutMs: LIFETIME_BOUND_MS },
    );
    return result.outcome === 'mismatch' ? 'mismatch' : 'ok';
  }

  /** A PROXY header or a ClientHello trickled a byte every 400 ms, never finished: the daemon must end it. */
  private slowloris(what: 'header' | 'hello'): Promise<Outcome> {
    return new Promise((resolve) => {
      const openedAt = performance.now();
      const socket = what === 'header' ? net.connect({ host: '127.0.0.1', port: this.daemon.ports.main, localAddress: '127.0.0.1' }) : connectProxiedTcp({ port: this.daemon.ports.main, client: this.steadyAddress(6) });
      const bytes = what === 'header' ? Buffer.from('PROXY TCP4 127.10.7.1 127.0.0.1 5000 443\r\n') : Buffer.from('160301020001', 'hex');
      let i = 0;
      const trickle = setInterval(() => {
        if (i < bytes.length - 1) socket.write(bytes.subarray(i, ++i));
      }, 400);
      const deadline = setTimeout(() => socket.destroy(), LIFETIME_BOUND_MS + 5000);
      socket.on('error', () => undefined);
      socket.once('close', () => {
        clearInterval(trickle);
        clearTimeout(deadline);
        const ms = performance.now() - openedAt;
        if (ms > LIFETIME_BOUND_MS) this.stats[`slowloris-${what}`]!.late++;
        resolve('ok');
      });
    });
  }

  /** A direct connection from 127.0.0.2-9, outside --trusted-proxy: must be reset at once. */
  private untrusted(): Promise<Outcome> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: this.daemon.ports.main, localAddress: `127.0.0.${this.prng.int(2, 9)}` });
      let gotData = false;
      socket.on('data', () => (gotData = true));
      socket.on('error', () => undefined);
      const deadline = setTimeout(() => socket.destroy(), 5000);
      socket.once('close', () => {
        clearTimeout(deadline);
        setTimeout(() => resolve(gotData ? 'mismatch' : 'refused'), 50);
      });
    });
  }

  /** The flood's hot address: one client for the whole run, over its rate and concurrency caps. */
  private readonly hot: string;

  /**
   * A burst of 60 short connections at once, every second: 30 from addresses never seen
   * (IPv4 127.20.x.y, IPv6 2001:db8:<n>:<n>::1, so the per-client table grows and is swept), 30
   * from the hot address (over --conn-rate and --max-conns-per-ip: refused). Half handshake and
   * echo 32 bytes; the other half send the header and reset (a client gone while it waits).
   */
  private async floodBurst(): Promise<void> {
    const burst = Array.from({ length: 60 }, (_, i) => {
      const client = i < 30 ? this.hot : this.prng.next() < 0.5 ? `127.20.${this.prng.int(0, 255)}.${this.prng.int(1, 254)}` : `2001:db8:${this.prng.int(0, 0xffff).toString(16)}:${this.prng.int(0, 0xffff).toString(16)}::1`;
      return this.prng.next() < 0.5 ? this.floodEcho(client) : this.floodReset(client);
    });
    const outcomes = await Promise.all(burst);
    const counts = this.stats.flood!;
    counts.started += outcomes.length - 1;
    for (const o of outcomes) counts[o]++;
    await new Promise((r) => setTimeout(r, 1000));
  }

  private async floodEcho(client: string): Promise<Outcome> {
    const result = await runSession(() => connectProxiedTls({ port: this.daemon.ports.main, client, version: this.prng.pick([1, 2] as const) }, this.tlsOptions(false)), {
      payload: this.prng.bytes(32),
      timeoutMs: LIFETIME_BOUND_MS,
    });
    return this.record(result);
  }

  private floodReset(client: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const socket = connectProxiedTcp({ port: this.daemon.ports.main, client });
      socket.on('error', () => undefined);
      socket.once('connect', () => setTimeout(() => socket.resetAndDestroy(), this.prng.int(0, 50)));
      socket.once('close', () => resolve('cut'));
    });
  }
}
