// Test helpers for the client-stack scenario tests (test/scenarios/clients-*.test.ts): the real
// CLI with the scenario listener on, and a small pool that runs a few client processes at once.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { SCENARIOS } from '../../src/scenarios/catalogue';
import { spawnDaemon, tempDir, type CliDaemon } from './daemon';

/** --scenario-delay for these tests: the lower bound slow-handshake and slow-echo must respect. */
export const SCENARIO_DELAY_MS = 400;
/** --handshake-timeout for these tests: when the daemon closes stall-handshake. */
export const HANDSHAKE_TIMEOUT_MS = 1500;

export const SCENARIO_NAMES: readonly string[] = SCENARIOS.map((s) => s.name);

export interface ScenarioDaemon {
  readonly daemon: CliDaemon;
  /** The main (echo) listener's port. */
  readonly port: number;
  /** The scenario listener's port, from the `listening` line. */
  readonly scenarioPort: number;
  readonly certDir: string;
  /** The CA a client trusts: <cert-dir>/ca.pem. */
  readonly caFile: string;
}

/** Runs `tls-echod serve --scenarios 127.0.0.1:0` with a fresh --cert-dir, the delays above, and `extraArgs`. */
export async function startScenarioDaemon(t: TestContext, extraArgs: readonly string[] = []): Promise<ScenarioDaemon> {
  const certDir = join(tempDir(t), 'certs');
  const daemon = await spawnDaemon(t, [
    '--scenarios', '127.0.0.1:0',
    '--cert-dir', certDir,
    '--scenario-delay', String(SCENARIO_DELAY_MS),
    '--handshake-timeout', String(HANDSHAKE_TIMEOUT_MS),
    ...extraArgs,
  ]);
  const listening = daemon.lines.find((l) => l.message === 'listening');
  const scenarios = String(listening?.scenarios);
  assert.match(scenarios, /^127\.0\.0\.1:\d+$/, 'the listening line gives the scenario address');
  return {
    daemon,
    port: daemon.port,
    scenarioPort: Number(scenarios.slice(scenarios.lastIndexOf(':') + 1)),
    certDir,
    caFile: join(certDir, 'ca.pem'),
  };
}

/** Maps `items` through `run`, at most `limit` at a time, keeping the order. */
export async function mapConcurrently<T, R>(items: readonly T[], limit: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await run(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** Asserts that the scenarios a file exercised are exactly the catalogue's. */
export function assertCoversCatalogue(tested: Iterable<string>, stack: string): void {
  const names = new Set(tested);
  assert.deepEqual([...names].sort(), [...SCENARIO_NAMES].sort(), `${stack} covers every scenario in SCENARIOS, and no other`);
}
