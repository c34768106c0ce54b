// Reading the daemon's /metrics: one scrape as a map from series (`name{labels}` as the text
// has it) to value, and the sums the soak needs. A test's strict parser lives in
// test/helpers/exposition.ts; here a line that doesn't parse is skipped.

import http from 'node:http';

export type Scrape = ReadonlyMap<string, number>;

/** `name{labels}` → value, for every sample line of a text exposition. */
export function parseMetricsText(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    const value = Number(line.slice(cut + 1));
    if (cut > 0 && !Number.isNaN(value)) out.set(line.slice(0, cut), value);
  }
  return out;
}

/** The value of one series (`name` or `name{label="value"}`), 0 when absent. */
export function valueOf(scrape: Scrape, series: string): number {
  return scrape.get(series) ?? 0;
}

/** The sum of every series of the family `name` (all its label values). */
export function sumOf(scrape: Scrape, name: string): number {
  let sum = 0;
  for (const [series, value] of scrape) if (series === name || series.startsWith(`${name}{`)) sum += value;
  return sum;
}

/** Per label value of the family `name`: `{reason="x"}` → value, keyed by "x". */
export function byLabel(scrape: Scrape, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, value] of scrape) {
    const m = series.startsWith(`${name}{`) ? /="([^"]*)"\}$/.exec(series) : null;
    if (m) out[m[1]!] = value;
  }
  return out;
}

/** GETs http://host:port/metrics, parsed; rejects after timeoutMs. */
export function scrapeMetrics(host: string, port: number, timeoutMs = 5000): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/metrics', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(parseMetricsText(Buffer.concat(chunks).toString('utf8'))) : reject(new Error(`/metrics: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`/metrics: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}
