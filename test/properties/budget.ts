// How long each property runs. Under `npm test` a property tries a fixed number of cases (its
// own, or TLS_ECHOD_FUZZ_RUNS); under `npm run fuzz` (scripts/fuzz.ts) each one runs for
// TLS_ECHOD_FUZZ_SECONDS with a fresh seed every round. A failure reports fast-check's seed,
// path and shrunk counterexample, and how to replay exactly that case.

import fc from 'fast-check';

export interface Budget {
  /** Cases per property in `npm test`; properties that start processes or sockets ask for fewer. */
  readonly runs: number;
}

function positiveEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return value;
}

/** fast-check's seeds are any 32-bit integer, negative ones included. */
function integerEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name}=${raw}: expected an integer`);
  return value;
}

/** fast-check's parameters for one property, from its budget and the fuzzing environment. */
export function propertyParameters<Ts>(budget: Budget): fc.Parameters<Ts> {
  const seconds = positiveEnv('TLS_ECHOD_FUZZ_SECONDS');
  const seed = integerEnv('TLS_ECHOD_FUZZ_SEED');
  const path = process.env.TLS_ECHOD_FUZZ_PATH || undefined;
  const runs = positiveEnv('TLS_ECHOD_FUZZ_RUNS');
  const parameters: fc.Parameters<Ts> = {
    includeErrorInReport: true,
    numRuns: seconds !== undefined ? Number.MAX_SAFE_INTEGER : (runs ?? budget.runs),
    reporter: (details) => {
      if (!details.failed) return;
      const replay = `TLS_ECHOD_FUZZ_SEED=${details.seed} TLS_ECHOD_FUZZ_PATH=${details.counterexamplePath ?? ''}`;
      throw new Error(`${fc.defaultReportMessage(details)}\nReplay this case: ${replay} node --test <this test file>`);
    },
  };
  if (seconds !== undefined) {
    parameters.interruptAfterTimeLimit = seconds * 1000;
    parameters.markInterruptAsFailure = false;
  }
  if (seed !== undefined) parameters.seed = seed;
  if (path !== undefined) parameters.path = path;
  return parameters;
}

/** fc.assert with this project's budget: `await checkProperty(fc.property(...), { runs: 500 })`. */
export async function checkProperty<Ts>(property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>, budget: Budget): Promise<void> {
  await fc.assert(property as fc.IAsyncProperty<Ts>, propertyParameters<Ts>(budget));
}
