// Every test-peer scenario as `openssl s_client` (OpenSSL 3.0's command-line client) sees it,
// against the real daemon: the verification error, the alert, the protocol and cipher, how the
// connection ended, and the timing, as s_client prints them. One daemon for the file; a few
// s_client processes at once.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { issueClient } from '../helpers/client-certs';
import { which } from '../helpers/external-tools';
import {
  HANDSHAKE_TIMEOUT_MS,
  SCENARIO_DELAY_MS,
  assertCoversCatalogue,
  mapConcurrently,
  startScenarioDaemon,
} from '../helpers/scenario-daemon';

interface SClientRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  /** From spawn to exit. */
  readonly elapsedMs: number;
  /** From spawn to the echo, when it came. */
  readonly echoMs: number | undefined;
}

interface Case {
  /** The scenario, or undefined for the unknown-name cases. */
  readonly scenario: string | undefined;
  readonly label: string;
  /** The SNI name; null sends none (-noservername). */
  readonly serverName: string | null;
  /** Arguments after the common ones (-cipher, -tls1_3, -cert ...). */
  readonly extra?: readonly string[];
  /** Checks the host name (-verify_hostname); s_client does not unless asked. Default true. */
  readonly verifyHostname?: boolean;
  /** What is written to stdin; default 'ping\n'. */
  readonly payload?: string;
  /** Whether stdout shows the echo of the payload; default: 'ping\n'. */
  readonly echoed?: (stdout: string) => boolean;
  /** End stdin once the echo is in (s_client then sends close_notify and exits). Default true. */
  readonly closeAfterEcho?: boolean;
  /** End stdin this long after the start whatever happened. */
  readonly holdMs?: number;
  readonly expect: (run: SClientRun) => void;
}

// s_client writes the echo straight to fd 1 but its session report through a buffered BIO, so
// the echo may land mid-line (after a ticket's "Session-ID: ..."), not at a line start.
const PING = (stdout: string): boolean => /ping\n/.test(stdout);
/** s_client's own safety net: no case takes this long. */
const KILL_AFTER_MS = 10_000;

function sClient(t: TestContext, port: number, caFile: string, c: Case): Promise<SClientRun> {
  const host = c.serverName;
  const nameArgs = host === null ? ['-noservername'] : ['-servername', host, ...(c.verifyHostname === false ? [] : ['-verify_hostname', host])];
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, ...nameArgs, '-CAfile', caFile, '-verify_return_error', ...(c.extra ?? [])];
  const started = performance.now();
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const echoed = c.echoed ?? PING;
  let stdout = '';
  let stderr = '';
  let echoMs: number | undefined;
  // s_client exits on its own at a failed handshake, when stdin is shut, or when the server closes.
  child.stdin.on('error', () => undefined); // EPIPE when s_client has already exited
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (echoMs === undefined && echoed(stdout)) {
      echoMs = performance.now() - started;
      if (c.closeAfterEcho ?? true) child.stdin.end();
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const hold = c.holdMs === undefined ? undefined : setTimeout(() => child.stdin.end(), c.holdMs);
  const kill = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
  child.stdin.write(c.payload ?? 'ping\n');
  return new Promise((resolve) => {
    child.once('close', (code: number | null) => {
      clearTimeout(hold);
      clearTimeout(kill);
      resolve({ stdout, stderr, code, elapsedMs: performance.now() - started, echoMs });
    });
  });
}

const output = (run: SClientRun): string => `${run.stdout}\n${run.stderr}`;

/** A verifying s_client refused the certificate: error `num` with `text`, and no echo. */
function refusedCertificate(num: number, text: string): (run: SClientRun) => void {
  return (run) => {
    assert.equal(run.code, 1);
    assert.equal(run.echoMs, undefined, 'nothing echoed');
    assert.ok(run.stderr.includes(`verify error:num=${num}:${text}`), `verify error:num=${num}:${text}`);
    assert.ok(run.stdout.includes(`Verify return code: ${num} (${text})`));
    assert.match(run.stderr, /certificate verify failed/);
  };
}

/** s_client verified the server, negotiated `protocol`, and got the echo back. */
function echoed(protocol: string, cipher?: RegExp): (run: SClientRun) => void {
  return (run) => {
    assert.notEqual(run.echoMs, undefined, 'the echo came back');
    assert.equal(run.code, 0);
    assert.match(run.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(run.stdout, new RegExp(`^ +Protocol +: ${protocol.replaceAll('.', '\\.')}$`, 'm'));
    if (cipher) assert.match(run.stdout, cipher);
  };
}

/** The server ended the handshake with alert `number` (`text`): no echo. */
function alerted(number: number, text: string): (run: SClientRun) => void {
  return (run) => {
    assert.equal(run.code, 1);
    assert.equal(run.echoMs, undefined, 'nothing echoed');
    assert.ok(run.stderr.includes(`${text}`) && run.stderr.includes(`SSL alert number ${number}`), `alert ${number} (${text}) in ${run.stderr}`);
  };
}

/** The TLS 1.3 application-data records s_client -msg shows coming in: their plaintext lengths. */
function incomingDataRecords(stdout: string): number[] {
  // Header `17 03 03 <length>`, then the inner content type 0x17 (application data), 16-byte AEAD tag and type byte on top.
  const records = stdout.matchAll(/<<< TLS 1\.2, RecordHeader \[length 0005\]\n\s+17 03 03 ([0-9a-f]{2}) ([0-9a-f]{2})\n<<< TLS 1\.3, InnerContent \[length 0001\]\n\s+17\n/g);
  return [...records].map((m) => parseInt(m[1]! + m[2]!, 16) - 17);
}

const SMALL_RECORDS_PAYLOAD = `${'x'.repeat(2047)}\n`;

function cases(client: { certFile: string; keyFile: string }): Case[] {
  const scenario = (name: string, expect: (run: SClientRun) => void, more: Partial<Case> = {}): Case => ({
    scenario: name,
    label: more.label ?? name,
    serverName: `${name}.localhost`,
    expect,
    ...more,
  });
  const legacy = ['-cipher', 'DEFAULT:@SECLEVEL=0'];
  return [
    // Certificates.
    scenario('valid', echoed('TLSv1.3')),
    scenario('expired', refusedCertificate(10, 'certificate has expired')),
    scenario('not-yet-valid', refusedCertificate(9, 'certificate is not yet valid')),
    scenario('wrong-host', refusedCertificate(62, 'hostname mismatch')),
    // s_client checks the name only when told to (-verify_hostname): -servername is the SNI alone.
    scenario('wrong-host', echoed('TLSv1.3'), { label: 'wrong-host, without -verify_hostname: accepted', verifyHostname: false }),
    scenario('self-signed', refusedCertificate(18, 'self-signed certificate')),
    // The untrusted root is sent (as badssl.com does): the chain is whole, its root unknown.
    scenario('untrusted-root', refusedCertificate(19, 'self-signed certificate in certificate chain')),
    scenario('incomplete-chain', refusedCertificate(20, 'unable to get local issuer certificate')),
    scenario('intermediate', (run) => {
      echoed('TLSv1.3')(run);
      assert.match(run.stderr, /^depth=1 CN = tls-echod scenario intermediate CA$/m);
      assert.match(run.stderr, /^depth=2 /m);
    }),
    // OpenSSL falls back to the CN when the certificate has no SAN at all.
    scenario('no-san', (run) => {
      echoed('TLSv1.3')(run);
      assert.match(run.stdout, /^Verified peername: no-san\.localhost$/m);
    }),
    scenario('sha1', refusedCertificate(68, 'CA signature digest algorithm too weak')),
    scenario('rsa-1024', refusedCertificate(66, 'EE certificate key too weak')),
    scenario('wrong-eku', refusedCertificate(26, 'unsuitable certificate purpose')),

    // Protocol. OpenSSL 3.0's s_client offers TLS 1.0 and 1.1 (no MinProtocol in this openssl.cnf),
    // but its security level 1 refuses their MD5+SHA-1 signatures: the versions are shared, the
    // handshake fails at the server's key exchange. Where openssl.cnf sets MinProtocol TLSv1.2
    // (Debian's, Ubuntu's), the server answers with a protocol_version alert instead.
    ...(['tls1.0', 'tls1.1'] as const).flatMap((name) => {
      const protocol = name === 'tls1.0' ? 'TLSv1' : 'TLSv1.1';
      return [
        scenario(name, (run) => {
          assert.equal(run.code, 1);
          assert.equal(run.echoMs, undefined, 'nothing echoed');
          assert.match(output(run), /legacy sigalg disallowed or unsupported|tlsv1 alert protocol version[^\n]*SSL alert number 70/);
          if (/legacy sigalg/.test(run.stderr)) assert.match(run.stdout, new RegExp(`^ +Protocol +: ${protocol.replace('.', '\\.')}$`, 'm'));
        }),
        scenario(name, echoed(protocol, /Cipher is ECDHE-ECDSA-AES256-SHA$/m), { label: `${name}, with -cipher DEFAULT:@SECLEVEL=0: connects`, extra: legacy }),
      ];
    }),
    scenario('tls1.2-only', echoed('TLSv1.2', /Cipher is ECDHE-ECDSA-/)),
    scenario('tls1.2-only', alerted(70, 'tlsv1 alert protocol version'), { label: 'tls1.2-only, with -tls1_3: refused', extra: ['-tls1_3'] }),
    scenario('tls1.3-only', echoed('TLSv1.3')),
    scenario('tls1.3-only', alerted(70, 'tlsv1 alert protocol version'), { label: 'tls1.3-only, with -no_tls1_3: refused', extra: ['-no_tls1_3'] }),
    // s_client's default list still has RSA key exchange: it connects, without a Server Temp Key.
    scenario('static-rsa', (run) => {
      echoed('TLSv1.2', /Cipher is AES128-GCM-SHA256$/m)(run);
      assert.doesNotMatch(run.stdout, /Server Temp Key/);
    }),
    scenario('static-rsa', alerted(40, 'sslv3 alert handshake failure'), { label: 'static-rsa, with -cipher ECDHE:DHE: refused', extra: ['-cipher', 'ECDHE:DHE'] }),
    scenario('dh-1024', (run) => {
      assert.equal(run.code, 1);
      assert.equal(run.echoMs, undefined, 'nothing echoed');
      assert.match(run.stderr, /tls_process_ske_dhe:dh key too small/);
    }),
    scenario('dh-1024', echoed('TLSv1.2', /Cipher is DHE-RSA-AES128-GCM-SHA256$/m), { label: 'dh-1024, with -cipher DEFAULT:@SECLEVEL=0: connects', extra: legacy }),

    // Client certificates. TLS 1.3: the handshake completes, the refusal comes as an alert on the first read.
    scenario('client-cert-required', (run) => {
      alerted(116, 'tlsv13 alert certificate required')(run);
      assert.match(run.stdout, /^Acceptable client certificate CA names\nCN = tls-echod local CA/m);
    }),
    scenario('client-cert-required', echoed('TLSv1.3'), { label: 'client-cert-required, with a `cert client` certificate: echoes', extra: ['-cert', client.certFile, '-key', client.keyFile] }),
    scenario('client-cert-requested', (run) => {
      echoed('TLSv1.3')(run);
      assert.match(run.stdout, /^Acceptable client certificate CA names\nCN = tls-echod local CA/m);
    }),
    scenario('client-cert-requested', echoed('TLSv1.3'), { label: 'client-cert-requested, with a `cert client` certificate: echoes', extra: ['-cert', client.certFile, '-key', client.keyFile] }),

    // Behaviour: stdin stays open, so s_client ends only when the server does.
    scenario('no-close-notify', (run) => {
      assert.notEqual(run.echoMs, undefined, 'the echo came back');
      assert.match(run.stderr, /ssl3_read_n:unexpected eof while reading/);
      assert.doesNotMatch(run.stdout, /^closed$/m);
    }, { closeAfterEcho: false }),
    scenario('reset-after-echo', (run) => {
      assert.notEqual(run.echoMs, undefined, 'the echo came back');
      assert.match(run.stdout + run.stderr, /^read:errno=104$/m); // ECONNRESET
    }, { closeAfterEcho: false }),
    scenario('close-after-handshake', (run) => {
      assert.equal(run.echoMs, undefined, 'nothing echoed');
      assert.equal(run.code, 0);
      assert.match(run.stdout, /Verify return code: 0 \(ok\)/);
      assert.match(run.stdout, /^closed$/m, 'a close_notify: s_client says "closed"');
    }, { closeAfterEcho: false }),
    scenario('no-echo', (run) => {
      assert.equal(run.echoMs, undefined, 'nothing echoed');
      assert.equal(run.code, 0);
      assert.match(run.stdout, /Verify return code: 0 \(ok\)/);
      assert.ok(run.elapsedMs >= 500);
    }, { holdMs: 500, closeAfterEcho: false }),
    scenario('slow-echo', (run) => {
      echoed('TLSv1.3')(run);
      assert.ok(run.echoMs! >= SCENARIO_DELAY_MS, `echo after ${run.echoMs} ms`);
    }),
    // -msg shows each record: the 2048-byte echo arrives as 512-byte records.
    scenario('small-records', (run) => {
      echoed('TLSv1.3')(run);
      const lengths = incomingDataRecords(run.stdout);
      assert.equal(lengths.reduce((a, b) => a + b, 0), SMALL_RECORDS_PAYLOAD.length, `records ${lengths.join(',')}`);
      assert.ok(lengths.every((n) => n <= 512), `records ${lengths.join(',')}`);
      assert.ok(lengths.filter((n) => n === 512).length >= 3, `records ${lengths.join(',')}`);
    }, {
      extra: ['-msg'],
      payload: SMALL_RECORDS_PAYLOAD,
      echoed: (stdout) => incomingDataRecords(stdout).reduce((a, b) => a + b, 0) >= SMALL_RECORDS_PAYLOAD.length,
    }),
    scenario('slow-handshake', (run) => {
      echoed('TLSv1.3')(run);
      assert.ok(run.echoMs! >= SCENARIO_DELAY_MS, `echo after ${run.echoMs} ms`);
    }),
    // No ServerHello ever: s_client waits until the daemon closes at --handshake-timeout.
    scenario('stall-handshake', (run) => {
      assert.equal(run.code, 1);
      assert.equal(run.echoMs, undefined, 'nothing echoed');
      assert.match(run.stderr, /ssl3_read_n:unexpected eof while reading/);
      assert.match(run.stdout, /no peer certificate available/);
      assert.ok(run.elapsedMs >= HANDSHAKE_TIMEOUT_MS, `closed after ${run.elapsedMs} ms`);
      assert.ok(run.elapsedMs < HANDSHAKE_TIMEOUT_MS + 3000, `closed after ${run.elapsedMs} ms`);
    }, { closeAfterEcho: false }),
    scenario('handshake-alert', (run) => {
      alerted(40, 'sslv3 alert handshake failure')(run);
      assert.match(run.stdout, /no peer certificate available/);
    }),

    // Not a scenario: the unrecognized_name alert.
    { scenario: undefined, label: 'nope.localhost: unrecognized_name', serverName: 'nope.localhost', expect: alerted(112, 'tlsv1 unrecognized name') },
    { scenario: undefined, label: 'no SNI: unrecognized_name', serverName: null, expect: alerted(112, 'tlsv1 unrecognized name') },
  ];
}

test('openssl s_client: what it reports for every scenario of a real daemon', { skip: which('openssl') === undefined && 'no openssl' }, async (t) => {
  const { scenarioPort, caFile, certDir } = await startScenarioDaemon(t);
  const client = await issueClient(certDir, 'openssl-client');
  const all = cases(client);
  const runs = await mapConcurrently(all, 4, (c) => sClient(t, scenarioPort, caFile, c));
  for (const [i, c] of all.entries()) {
    const run = runs[i]!;
    await t.test(c.label, () => {
      try {
        c.expect(run);
      } catch (err) {
        (err as Error).message += `\n--- s_client exit ${run.code} after ${Math.round(run.elapsedMs)} ms\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
        throw err;
      }
    });
  }
  await t.test('covers every scenario', () => {
    assertCoversCatalogue(all.flatMap((c) => (c.scenario === undefined ? [] : [c.scenario])), 'openssl s_client');
  });
});
