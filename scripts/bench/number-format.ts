// Number formatting shared by the progress lines (runs.ts) and the summary (report.ts).

export function fmt(n: number | undefined, decimals: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function pct(share: number): string {
  return Number.isFinite(share) ? `${Math.round(share * 100)}%` : '-';
}
