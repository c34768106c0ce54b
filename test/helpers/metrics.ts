// Metrics in tests: a Metrics of its own with gauges the test sets (newMetrics), and one sample
// read out of Prometheus text exposition, for assertions (strictly checked: helpers/exposition.ts).

import type { Supervisor } from '../../src/daemon/supervisor';
import type { MetricsOptions } from '../../src/ops/metric-counts';
import { Metrics } from '../../src/ops/metrics';

interface Gauges {
  sessionsActive: number;
  connectionsPending: number;
  workersReady: number;
}

/** A Metrics whose gauges read the returned `gauges` object; `overrides` replace any option. */
export function newMetrics(overrides: Partial<MetricsOptions> = {}): { metrics: Metrics; gauges: Gauges } {
  const gauges: Gauges = { sessionsActive: 0, connectionsPending: 0, workersReady: 0 };
  const metrics = new Metrics({
    sessionsActive: () => gauges.sessionsActive,
    connectionsPending: () => gauges.connectionsPending,
    workersReady: () => gauges.workersReady,
    clientEntries: () => ({ size: 0, holding: 0 }),
    version: '1.2.3-test',
    ...overrides,
  });
  return { metrics, gauges };
}

/** The value of `name{labels}` in `text`, or undefined when the series is absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(pair[1]!, pair[2]!);
    if (wanted.every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

export async function metricOf(supervisor: Supervisor, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { body } = await supervisor.metrics.render();
  return sample(body, name, labels) ?? NaN;
}
