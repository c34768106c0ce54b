// The `tls-echod check --scenarios` report for a terminal: one row per scenario (scenario,
// expected, observed, match) in columns, then the verdict.

import type { ScenarioCheckReport } from './scenario-check';

const HEADER = { name: 'scenario', expected: 'expected', observed: 'observed', match: 'match' };

/** The table and, unless `verdict` is false, a last line: `ok: all N as expected` or `FAILED: ...`. */
export function formatScenarioReport(report: ScenarioCheckReport, options: { verdict?: boolean } = {}): string {
  const rows = report.scenarios.map((r) => ({ name: r.name, expected: r.expected, observed: r.observed, match: r.ok ? 'yes' : 'NO' }));
  const nameWidth = Math.max(HEADER.name.length, ...rows.map((r) => r.name.length));
  const expectedWidth = Math.max(HEADER.expected.length, ...rows.map((r) => r.expected.length));
  const observedWidth = Math.max(HEADER.observed.length, ...rows.map((r) => r.observed.length));
  const line = (r: typeof HEADER): string =>
    `${r.name.padEnd(nameWidth)}  ${r.expected.padEnd(expectedWidth)}  ${r.observed.padEnd(observedWidth)}  ${r.match}`;
  const lines = [line(HEADER), ...rows.map(line)];
  if (options.verdict !== false) lines.push(report.ok ? `ok: all ${rows.length} as expected` : `FAILED: ${scenarioFailureMessage(report)}`);
  return lines.join('\n');
}

/** What the CLI says on stderr when a scenario did not match. */
export function scenarioFailureMessage(report: ScenarioCheckReport): string {
  const failed = report.scenarios.filter((r) => !r.ok).map((r) => r.name);
  return `${failed.length} of ${report.scenarios.length} scenarios not as expected: ${failed.join(', ')} (is the target a serve --scenarios listener with this --scenario-domain and --scenario-delay, and --ca its ca.pem?)`;
}
