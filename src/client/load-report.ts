// The load generator's text output for a terminal: the progress line and the end-of-run summary.

import type { LoadMode, LoadProgress } from './load-options';
import type { LoadResult } from './load-result';

const OPS_UNIT: Readonly<Record<LoadMode, string>> = { handshake: 'handshakes', pingpong: 'msgs', stream: 'chunks', idle: 'conns' };

/** One progress line (for stderr), e.g. `[  3s] measure   2461 handshakes/s  0.16 MB/s  errors 0`. */
export function formatLoadProgress(p: LoadProgress, mode: LoadMode): string {
  const head = `[${Math.round(p.elapsedSec).toString().padStart(3)}s] ${p.phase.padEnd(10)}`;
  if (mode === 'idle') return `${head} established ${p.established}  errors ${p.errors}`;
  return `${head} ${p.opsPerSec.toFixed(0).padStart(8)} ${OPS_UNIT[mode]}/s  ${p.mbPerSec.toFixed(2)} MB/s  errors ${p.errors}`;
}

/** The end-of-run summary for a terminal. */
export function formatLoadResult(r: LoadResult): string {
  const unit = OPS_UNIT[r.mode];
  const l = r.latencyMs;
  const lines = [
    `${r.mode} ${r.target}: ${r.connections} connection(s) in ${r.processes} process(es), ${r.sizeBytes}-byte ${r.mode === 'stream' ? 'writes' : 'echoes'}, ${r.durationSec.toFixed(1)} s ${r.mode === 'idle' ? 'total' : 'measured'}${r.clientCert === null ? '' : `, client cert ${r.clientCert}`}`,
  ];
  if (r.mode === 'idle') {
    lines.push(`  established ${r.established ?? 0} of ${r.connections} (${r.opsPerSec.toFixed(0)} conns/s while opening), still echoing after the hold: ${r.stillAlive ?? 0}`);
    lines.push(`  connect+echo latency ms: p50 ${l.p50.toFixed(2)}  p90 ${l.p90.toFixed(2)}  p99 ${l.p99.toFixed(2)}  max ${l.max.toFixed(2)}`);
  } else {
    lines.push(`  ${r.opsPerSec.toFixed(1)} ${unit}/s (${r.ops} ${unit}), ${r.mbPerSec.toFixed(2)} MB/s echoed`);
    lines.push(`  latency ms: p50 ${l.p50.toFixed(2)}  p90 ${l.p90.toFixed(2)}  p99 ${l.p99.toFixed(2)}  max ${l.max.toFixed(2)}  (${l.count} samples)`);
  }
  lines.push(`  errors ${r.errors} (mismatches ${r.mismatches})`);
  if (r.errors > 0) {
    const kinds = Object.entries(r.errorKinds)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    lines.push(`  errors by kind: ${kinds}`);
    if (r.firstError !== null) lines.push(`  first error: ${r.firstError}`);
  }
  return lines.join('\n');
}
