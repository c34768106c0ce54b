// The control client: one TLS session through a PROXY header that echoes a random payload
// every ~100 ms for the whole run and times each round trip. The daemon may end its session
// (its worker killed, or the idle timeout if the loop stalls): it reconnects and counts that
// separately; a wrong byte is a mismatch and is never expected.

import type tls from 'node:tls';
import { SERVER_NAME, type DaemonUnderTest } from './daemon';
import type { Prng } from './prng';
import { connectProxiedTls } from './proxy-client';

const INTERVAL_MS = 100;
/** A round trip not answered within this is counted as a stall, and the session reopened. */
const ROUND_TRIP_TIMEOUT_MS = 5000;

export interface ControlStats {
  roundTrips: number;
  mismatches: number;
  /** Sessions the daemon ended under us (expected around a kill -9), and reconnects. */
  reconnects: number;
  stalls: number;
  /** Round-trip times (ms), in order. */
  readonly latenciesMs: number[];
}

export class ControlClient {
  readonly stats: ControlStats = { roundTrips: 0, mismatches: 0, reconnects: 0, stalls: 0, latenciesMs: [] };
  private running = true;
  private loop: Promise<void> | undefined;
  private socket: tls.TLSSocket | undefined;

  constructor(
    private readonly daemon: DaemonUnderTest,
    private readonly prng: Prng,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.socket?.end();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const ok = await this.roundTrip();
      if (!ok) {
        this.socket?.destroy();
        this.socket = undefined;
        if (this.running) this.stats.reconnects++;
      }
      await new Promise((r) => setTimeout(r, INTERVAL_MS));
    }
  }

  private connect(): Promise<tls.TLSSocket | undefined> {
    return new Promise((resolve) => {
      const socket = connectProxiedTls({ port: this.daemon.ports.main, client: '127.100.0.1' }, { ca: this.daemon.files.ca, servername: SERVER_NAME });
      socket.on('error', () => undefined);
      socket.once('secureConnect', () => resolve(socket));
      socket.once('close', () => resolve(undefined));
    });
  }

  /** One payload out and back; false when the session is gone (or was wrong) and must be reopened. */
  private async roundTrip(): Promise<boolean> {
    this.socket ??= await this.connect();
    const socket = this.socket;
    if (socket === undefined) return false;
    const payload = this.prng.bytes(this.prng.int(1, 4096));
    const started = performance.now();
    const answer = await new Promise<'ok' | 'mismatch' | 'closed' | 'stall'>((resolve) => {
      let received = 0;
      const onData = (chunk: Buffer): void => {
        if (!chunk.equals(payload.subarray(received, received + chunk.length))) return finish('mismatch');
        received += chunk.length;
        if (received === payload.length) finish('ok');
      };
      const onClose = (): void => finish('closed');
      const timer = setTimeout(() => finish('stall'), ROUND_TRIP_TIMEOUT_MS);
      const finish = (result: 'ok' | 'mismatch' | 'closed' | 'stall'): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', onClose);
        resolve(result);
      };
      socket.on('data', onData);
      socket.once('close', onClose);
      if (socket.destroyed) finish('closed');
      else socket.write(payload);
    });
    if (answer === 'ok') {
      this.stats.roundTrips++;
      this.stats.latenciesMs.push(performance.now() - started);
      return true;
    }
    if (answer === 'mismatch') this.stats.mismatches++;
    if (answer === 'stall') this.stats.stalls++;
    return false;
  }
}
