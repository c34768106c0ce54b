// The run's pictures: an SVG of RSS (supervisor and workers), descriptors and active sessions
// over time with the chaos events marked, written by hand (no dependency), and a one-line
// Unicode sparkline per series for the terminal.

import type { ChaosEvent, ChaosKind } from './chaos';
import type { Sample } from './sample';

const BARS = '▁▂▃▄▅▆▇█';

/** `values` squeezed into at most `width` bars (each the max of its bucket), scaled min..max. */
export function sparkline(values: readonly number[], width = 60): string {
  if (values.length === 0) return '';
  const buckets = Math.min(width, values.length);
  const per = values.length / buckets;
  const points = Array.from({ length: buckets }, (_, i) => Math.max(...values.slice(Math.floor(i * per), Math.max(Math.floor(i * per) + 1, Math.floor((i + 1) * per)))));
  const lo = Math.min(...points);
  const hi = Math.max(...points);
  return points.map((v) => BARS[hi === lo ? 0 : Math.round(((v - lo) / (hi - lo)) * (BARS.length - 1))]).join('');
}

interface Series {
  readonly label: string;
  readonly colour: string;
  readonly read: (s: Sample) => number;
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
}

const MIB = 1024 * 1024;
const PANELS: readonly Panel[] = [
  {
    title: 'RSS',
    unit: 'MiB',
    series: [
      { label: 'supervisor', colour: '#1f77b4', read: (s) => s.supervisorRss / MIB },
      { label: 'workers (sum)', colour: '#ff7f0e', read: (s) => s.workerRss / MIB },
      { label: 'surviving worker', colour: '#9467bd', read: (s) => s.survivorRss / MIB },
    ],
  },
  {
    title: 'Descriptors',
    unit: 'fds',
    series: [
      { label: 'supervisor', colour: '#1f77b4', read: (s) => s.supervisorFds },
      { label: 'workers (sum)', colour: '#ff7f0e', read: (s) => s.workerFds },
    ],
  },
  { title: 'Sessions active', unit: 'sessions', series: [{ label: 'active', colour: '#2ca02c', read: (s) => s.sessionsActive }] },
];

const CHAOS_COLOURS: Record<ChaosKind, string> = { 'kill-worker': '#d62728', 'rotate-cert': '#9467bd', 'broken-cert': '#8c564b' };
const WIDTH = 900;
const PANEL_HEIGHT = 180;
const MARGIN = { left: 70, right: 20, top: 30, bottom: 30 };

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The SVG document: one panel per quantity, time on x, chaos events as vertical lines. */
export function renderSvg(samples: readonly Sample[], events: readonly ChaosEvent[], title: string): string {
  const endS = Math.max(1, ...samples.map((s) => s.tS));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const x = (t: number): number => MARGIN.left + (t / endS) * plotW;
  const height = MARGIN.top + PANELS.length * (PANEL_HEIGHT + MARGIN.bottom) + 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${MARGIN.left}" y="18" font-size="14">${esc(title)}</text>`,
  ];
  PANELS.forEach((panel, p) => {
    const top = MARGIN.top + p * (PANEL_HEIGHT + MARGIN.bottom);
    const values = panel.series.flatMap((se) => samples.map(se.read));
    const hi = Math.max(1, ...values) * 1.05;
    const y = (v: number): number => top + PANEL_HEIGHT - (v / hi) * PANEL_HEIGHT;
    out.push(`<rect x="${MARGIN.left}" y="${top}" width="${plotW}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`);
    out.push(`<text x="${MARGIN.left + 4}" y="${top + 14}" font-weight="bold">${esc(panel.title)} (${panel.unit})</text>`);
    for (const frac of [0, 0.5, 1]) out.push(`<text x="${MARGIN.left - 6}" y="${y(hi * frac) + 4}" text-anchor="end">${(hi * frac).toFixed(hi < 10 ? 1 : 0)}</text>`);
    for (const e of events) out.push(`<line x1="${x(e.atS).toFixed(1)}" x2="${x(e.atS).toFixed(1)}" y1="${top}" y2="${top + PANEL_HEIGHT}" stroke="${CHAOS_COLOURS[e.kind]}" stroke-opacity="0.5" stroke-dasharray="3,3"/>`);
    panel.series.forEach((se, i) => {
      const points = samples.map((s) => `${x(s.tS).toFixed(1)},${y(se.read(s)).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${se.colour}" stroke-width="1.5" points="${points}"/>`);
      out.push(`<text x="${MARGIN.left + plotW - 4}" y="${top + 14 + i * 13}" text-anchor="end" fill="${se.colour}">${esc(se.label)}</text>`);
    });
    out.push(`<text x="${MARGIN.left + plotW / 2}" y="${top + PANEL_HEIGHT + 20}" text-anchor="middle">seconds</text>`);
    for (const frac of [0, 0.25, 0.5, 0.75, 1]) out.push(`<text x="${x(endS * frac)}" y="${top + PANEL_HEIGHT + 12}" text-anchor="middle">${Math.round(endS * frac)}</text>`);
  });
  const legendY = height - 10;
  let lx = MARGIN.left;
  for (const [kind, colour] of Object.entries(CHAOS_COLOURS)) {
    out.push(`<line x1="${lx}" x2="${lx + 20}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${colour}" stroke-dasharray="3,3"/><text x="${lx + 24}" y="${legendY}">${kind}</text>`);
    lx += 130;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** One sparkline per plotted series, labelled, with its min and max. */
export function sparklines(samples: readonly Sample[]): string[] {
  return PANELS.flatMap((panel) =>
    panel.series.map((se) => {
      const values = samples.map(se.read);
      const lo = values.length ? Math.min(...values) : 0;
      const hi = values.length ? Math.max(...values) : 0;
      return `${`${panel.title} ${se.label}`.padEnd(28)} ${sparkline(values)}  ${lo.toFixed(panel.unit === 'MiB' ? 1 : 0)}..${hi.toFixed(panel.unit === 'MiB' ? 1 : 0)} ${panel.unit}`;
    }),
  );
}
