// The scenario listener's certificates, made in a short-lived child process: the certificate
// scenarios' leaves (scenario-certs.ts) and one ECDSA and one RSA leaf from the local CA naming
// every other scenario. Like issuing the daemon's own leaf (certs/issuer-process.ts), this needs
// node-forge, which must never load in the serving process; the child answers with PEM text only.

import { X509Certificate } from 'node:crypto';
import { answerInChild, runInChild } from '../certs/one-shot-child';
import { CertError } from '../errors';
import { childrenOf, contextTag, expectTag, integerValue, oidText, readDer, TAG } from '../mtls/der';
import type { KeyCert, NamedKeyCert } from './scenario-tls';

/** Longest the child may take (ms): a 1024-bit and a 2048-bit RSA key, a dozen P-256 leaves. */
const ISSUE_TIMEOUT_MS = 60_000;
const DAY_MS = 86_400_000;
/** The named leaves start an hour back (a client whose clock is a little behind still accepts them) and last 90 days. */
const NAMED_LEAF_BACKDATE_MS = 3_600_000;
const NAMED_LEAF_DAYS = 90;
const BASIC_CONSTRAINTS_OID = '2.5.29.19';

/** Everything the scenario listener serves, as PEM text. */
export interface ScenarioMaterial {
  /** The certificate scenarios', in catalogue order. */
  readonly certs: readonly NamedKeyCert[];
  /** ECDSA and RSA leaves from the local CA for every other scenario's server name. */
  readonly ecdsa: KeyCert;
  readonly rsa: KeyCert;
  /** The local CA certificate: what client certificates must chain to. */
  readonly localCa: string;
  /**
   * Whether the local CA allows an intermediate below it (basicConstraints pathLen ≥ 1 or none).
   * CAs made before pathLen 1 was the default don't: clients then refuse `intermediate` too.
   */
  readonly intermediateAllowed: boolean;
  /** The clock the certificates were made for (ISO 8601): renewal counts from here. */
  readonly issuedAt: string;
}

interface Request {
  readonly certDir: string;
  readonly domain: string;
  readonly now: string;
}

/** Makes the scenario certificates for `domain` from the local CA in `certDir`, in a child process. */
export function makeScenarioMaterial(certDir: string, domain: string, now: Date): Promise<ScenarioMaterial> {
  return runInChild<Request, ScenarioMaterial>(__filename, { certDir, domain, now: now.toISOString() }, {
    timeoutMs: ISSUE_TIMEOUT_MS,
    failure: `making the scenario certificates in --cert-dir ${certDir} failed`,
    role: 'scenario certificate process',
  });
}

/** The child's job: runs with node-forge loaded, answers with text. */
async function issueScenarioMaterial(request: Request): Promise<ScenarioMaterial> {
  const now = new Date(request.now);
  const [{ ensureScenarioCertificates }, { namedScenarioServerNames }, { createLeaf }, { readGeneratedPair }] = await Promise.all([
    import('./scenario-certs'),
    import('./scenario-tls'),
    import('../certs/issue'),
    import('../certs/cert-dir'),
  ]);
  const read = readGeneratedPair(request.certDir, 'ca');
  if (read.pair === undefined) {
    throw new CertError(
      `--scenarios: the scenario certificates come from the local CA in --cert-dir ${request.certDir}, and ${read.problem} (run \`tls-echod cert generate --cert-dir ${request.certDir}\` once; with --cert and --key, serve doesn't make one)`,
    );
  }
  const localCa = read.pair;
  const certs = await ensureScenarioCertificates({ certDir: request.certDir, domain: request.domain, now });
  const names = namedScenarioServerNames(request.domain, certs);
  const notBefore = new Date(Math.floor((now.getTime() - NAMED_LEAF_BACKDATE_MS) / 1000) * 1000);
  const validity = { notBefore, notAfter: new Date(notBefore.getTime() + NAMED_LEAF_DAYS * DAY_MS) };
  const ecdsa = await createLeaf(localCa, names, 'ecdsa-p256', validity);
  const rsa = await createLeaf(localCa, names, 'rsa-2048', validity);
  return {
    certs: certs.map((c) => ({ name: c.name, key: c.key, cert: c.cert })),
    ecdsa: { key: ecdsa.keyPem, cert: ecdsa.certPem },
    rsa: { key: rsa.keyPem, cert: rsa.certPem },
    localCa: localCa.certPem,
    intermediateAllowed: allowsIntermediate(localCa.cert),
    issuedAt: request.now,
  };
}

/** True when a CA's basicConstraints lets at least one CA sit below it (pathLen absent or ≥ 1). */
export function allowsIntermediate(ca: X509Certificate): boolean {
  const tbs = childrenOf(childrenOf(readDer(ca.raw))[0]!);
  const extensions = tbs.find((node) => node.tag === contextTag(3));
  if (extensions === undefined) return true;
  for (const ext of childrenOf(expectTag(childrenOf(extensions)[0], TAG.sequence, 'extensions'))) {
    const fields = childrenOf(ext);
    if (oidText(fields[0]!) !== BASIC_CONSTRAINTS_OID) continue;
    const value = expectTag(fields[fields.length - 1], TAG.octetString, 'basicConstraints value').value;
    const pathLen = childrenOf(readDer(value)).find((node) => node.tag === TAG.integer);
    return pathLen === undefined || integerValue(pathLen) >= 1n;
  }
  return true;
}

answerInChild(module, issueScenarioMaterial, 'making the scenario certificates failed');
