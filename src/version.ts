import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The package version, read from package.json next to dist/ (works from a clone and an install). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
