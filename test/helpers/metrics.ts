// Reads one sample out of Prometheus text exposition, for assertions.

import type { Supervisor } from '../../src/daemon/supervisor';

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
