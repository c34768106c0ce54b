// Every test-peer scenario as python3's ssl module sees it, against the real daemon: the
// exception class and its verify_code or OpenSSL reason, the version and cipher, how the
// connection ended, and the timing. Run against --workers 0 and --workers 2, with the daemon's
// log showing that the supervisor serves the scenario listener in both.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { issueClient, tryEcho } from '../helpers/client-certs';
import { which } from '../helpers/external-tools';
import { HANDSHAKE_TIMEOUT_MS, SCENARIO_DELAY_MS, assertCoversCatalogue, startScenarioDaemon } from '../helpers/scenario-daemon';

/** One connection the python script makes. */
interface Job {
  readonly label: string;
  /** The scenario, or undefined for the unknown-name jobs. */
  readonly scenario: string | undefined;
  /** SNI and the name checked; null sends none (and checks none). */
  readonly server_name: string | null;
  /** legacy: TLS 1.0 and SECLEVEL=0 allowed; min1.3 / max1.2: the version range. Default: create_default_context's. */
  readonly mode?: 'legacy' | 'min1.3' | 'max1.2';
  readonly cert?: string;
  readonly key?: string;
  /** The socket timeout, in seconds (default 5). */
  readonly timeout?: number;
  /** Send this many bytes instead of b'ping'. */
  readonly size?: number;
  /** After the echo, read once more and report how the connection ended. */
  readonly read_next?: boolean;
}

/** What the script prints for a job (one JSON line). */
interface Outcome {
  readonly label: string;
  readonly ok: boolean;
  /** 'handshake' or 'read': where the exception came from. */
  readonly stage?: string;
  readonly error?: string;
  readonly reason?: string | null;
  readonly verify_code?: number | null;
  readonly verify_message?: string | null;
  readonly version?: string;
  readonly cipher?: string;
  readonly echoed?: string;
  readonly echoed_bytes?: number;
  readonly echo_intact?: boolean;
  /** recv() returned b'' with suppress_ragged_eofs=False: a close_notify came. */
  readonly eof?: string;
  /** The next read after the echo: 'close_notify', the bytes, or the exception class. */
  readonly next?: string;
  readonly handshake_ms?: number;
  readonly echo_ms?: number;
  readonly elapsed_ms: number;
}

const PYTHON_CLIENT = String.raw`
import json, socket, ssl, sys, time, warnings
warnings.simplefilter('ignore', DeprecationWarning)  # ssl.TLSVersion.TLSv1, on purpose
port, cafile = int(sys.argv[1]), sys.argv[2]
for job in json.loads(sys.argv[3]):
    r = {'label': job['label'], 'ok': False}
    ctx = ssl.create_default_context(cafile=cafile)
    mode = job.get('mode')
    if mode == 'legacy':
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    elif mode == 'min1.3':
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    elif mode == 'max1.2':
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if job.get('cert'):
        ctx.load_cert_chain(job['cert'], job['key'])
    name = job['server_name']
    if name is None:
        ctx.check_hostname = False
    payload = b'x' * job['size'] if job.get('size') else b'ping'
    started = time.monotonic()
    ms = lambda: round((time.monotonic() - started) * 1000)
    s = None
    stage = 'handshake'
    try:
        raw = socket.create_connection(('127.0.0.1', port), timeout=job.get('timeout', 5))
        s = ctx.wrap_socket(raw, server_hostname=name, suppress_ragged_eofs=False)
        r.update(handshake_ms=ms(), version=s.version(), cipher=s.cipher()[0])
        stage = 'read'
        s.sendall(payload)
        got = b''
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                r['eof'] = 'close_notify'
                break
            got += chunk
        r.update(echo_ms=ms(), echoed_bytes=len(got), echo_intact=got == payload)
        if len(got) <= 16:
            r['echoed'] = got.decode()
        if job.get('read_next'):
            stage = 'next'
            try:
                more = s.recv(100)
                r['next'] = 'close_notify' if more == b'' else repr(more)
            except Exception as e:
                r['next'] = type(e).__name__
        r['ok'] = True
    except Exception as e:
        r.update(stage=stage, error=type(e).__name__, reason=getattr(e, 'reason', None),
                 verify_code=getattr(e, 'verify_code', None), verify_message=getattr(e, 'verify_message', None))
    finally:
        if s is not None:
            s.close()
    r['elapsed_ms'] = ms()
    print(json.dumps(r), flush=True)
`;

/** Python < 3.10 calls a socket timeout `timeout`; 3.10 on, it is the builtin TimeoutError. */
const TIMEOUT = /^(TimeoutError|timeout)$/;

interface Expectation {
  readonly job: Job;
  readonly expect: (o: Outcome) => void;
}

function echoes(version: string, cipher?: RegExp): (o: Outcome) => void {
  return (o) => {
    assert.equal(o.ok, true, `connected and echoed; got ${JSON.stringify(o)}`);
    assert.equal(o.echoed, 'ping');
    assert.equal(o.version, version);
    if (cipher) assert.match(o.cipher!, cipher);
  };
}

/** SSLCertVerificationError in the handshake, with OpenSSL's X509_V_ERR code and text. */
function refusesCertificate(code: number, message: string): (o: Outcome) => void {
  return (o) => {
    assert.deepEqual(
      { stage: o.stage, error: o.error, reason: o.reason, verify_code: o.verify_code, verify_message: o.verify_message },
      { stage: 'handshake', error: 'SSLCertVerificationError', reason: 'CERTIFICATE_VERIFY_FAILED', verify_code: code, verify_message: message },
    );
  };
}

/** SSLError with OpenSSL's `reason` (an alert received, or the client's own check) at `stage`. */
function sslError(reason: string, stage = 'handshake'): (o: Outcome) => void {
  return (o) => {
    assert.deepEqual({ stage: o.stage, error: o.error, reason: o.reason }, { stage, error: 'SSLError', reason });
  };
}

function expectations(client: { certFile: string; keyFile: string }): Expectation[] {
  const at = (name: string, expect: (o: Outcome) => void, job: Partial<Job> = {}): Expectation => ({
    job: { label: job.label ?? name, scenario: name, server_name: `${name}.localhost`, ...job },
    expect,
  });
  const withCert = { cert: client.certFile, key: client.keyFile };
  return [
    // Certificates.
    at('valid', echoes('TLSv1.3')),
    at('expired', refusesCertificate(10, 'certificate has expired')),
    at('not-yet-valid', refusesCertificate(9, 'certificate is not yet valid')),
    at('wrong-host', refusesCertificate(62, "Hostname mismatch, certificate is not valid for 'wrong-host.localhost'.")),
    at('self-signed', refusesCertificate(18, 'self-signed certificate')),
    at('untrusted-root', refusesCertificate(19, 'self-signed certificate in certificate chain')),
    at('incomplete-chain', refusesCertificate(20, 'unable to get local issuer certificate')),
    at('intermediate', echoes('TLSv1.3')),
    // Python (OpenSSL underneath) falls back to the CN when a certificate has no SAN at all.
    at('no-san', echoes('TLSv1.3')),
    at('sha1', refusesCertificate(68, 'CA signature digest algorithm too weak')),
    // create_default_context() runs at security level 2.
    at('rsa-1024', refusesCertificate(66, 'EE certificate key too weak')),
    at('wrong-eku', refusesCertificate(26, 'unsuitable certificate purpose')),

    // Protocol. create_default_context() offers TLS 1.2 and 1.3 only: the server answers protocol_version.
    at('tls1.0', sslError('TLSV1_ALERT_PROTOCOL_VERSION')),
    at('tls1.0', echoes('TLSv1', /^ECDHE-ECDSA-AES256-SHA$/), { label: 'tls1.0, TLS 1.0 and SECLEVEL=0 allowed: connects', mode: 'legacy' }),
    at('tls1.1', sslError('TLSV1_ALERT_PROTOCOL_VERSION')),
    at('tls1.1', echoes('TLSv1.1', /^ECDHE-ECDSA-AES256-SHA$/), { label: 'tls1.1, TLS 1.0 and SECLEVEL=0 allowed: connects', mode: 'legacy' }),
    at('tls1.2-only', echoes('TLSv1.2', /^ECDHE-ECDSA-/)),
    at('tls1.2-only', sslError('TLSV1_ALERT_PROTOCOL_VERSION'), { label: 'tls1.2-only, minimum TLS 1.3: refused', mode: 'min1.3' }),
    at('tls1.3-only', echoes('TLSv1.3')),
    at('tls1.3-only', sslError('TLSV1_ALERT_PROTOCOL_VERSION'), { label: 'tls1.3-only, maximum TLS 1.2: refused', mode: 'max1.2' }),
    // Python's default cipher list is forward-secret only: no shared cipher, the server's handshake_failure.
    at('static-rsa', sslError('SSLV3_ALERT_HANDSHAKE_FAILURE')),
    at('static-rsa', echoes('TLSv1.2', /^AES128-GCM-SHA256$/), { label: 'static-rsa, DEFAULT:@SECLEVEL=0 ciphers: connects', mode: 'legacy' }),
    at('dh-1024', sslError('DH_KEY_TOO_SMALL')),
    at('dh-1024', echoes('TLSv1.2', /^DHE-RSA-AES128-GCM-SHA256$/), { label: 'dh-1024, SECLEVEL=0: connects', mode: 'legacy' }),

    // Client certificates. TLS 1.3: the client's handshake completes; the alert comes at the first read.
    at('client-cert-required', (o) => {
      sslError('TLSV13_ALERT_CERTIFICATE_REQUIRED', 'read')(o);
      assert.equal(o.version, 'TLSv1.3');
    }),
    at('client-cert-required', echoes('TLSv1.3'), { label: 'client-cert-required, with a `cert client` certificate: echoes', ...withCert }),
    at('client-cert-requested', echoes('TLSv1.3')),
    at('client-cert-requested', echoes('TLSv1.3'), { label: 'client-cert-requested, with a `cert client` certificate: echoes', ...withCert }),

    // Behaviour.
    at('no-close-notify', (o) => {
      echoes('TLSv1.3')(o);
      assert.equal(o.next, 'SSLEOFError', 'EOF without close_notify: truncation reported');
    }, { read_next: true }),
    at('reset-after-echo', (o) => {
      echoes('TLSv1.3')(o);
      // Measured here: the RST surfaces as ConnectionResetError, or as SSLEOFError when the read sees the EOF first.
      assert.match(o.next!, /^(ConnectionResetError|SSLEOFError)$/);
    }, { read_next: true }),
    at('close-after-handshake', (o) => {
      assert.equal(o.ok, true, JSON.stringify(o));
      assert.equal(o.echoed_bytes, 0);
      assert.equal(o.eof, 'close_notify', "recv() returned b'' although ragged EOFs are not suppressed: a close_notify");
    }),
    at('no-echo', (o) => {
      assert.equal(o.stage, 'read', JSON.stringify(o));
      assert.match(o.error!, TIMEOUT);
      assert.ok(o.elapsed_ms - o.handshake_ms! >= 1000, `timed out after ${o.elapsed_ms} ms`);
    }, { timeout: 1 }),
    at('slow-echo', (o) => {
      echoes('TLSv1.3')(o);
      assert.ok(o.echo_ms! - o.handshake_ms! >= SCENARIO_DELAY_MS, `echo ${o.echo_ms! - o.handshake_ms!} ms after the handshake`);
    }),
    at('small-records', (o) => {
      assert.equal(o.ok, true, JSON.stringify(o));
      assert.deepEqual({ bytes: o.echoed_bytes, intact: o.echo_intact }, { bytes: 4096, intact: true });
    }, { size: 4096 }),
    at('slow-handshake', (o) => {
      echoes('TLSv1.3')(o);
      assert.ok(o.handshake_ms! >= SCENARIO_DELAY_MS, `handshake took ${o.handshake_ms} ms`);
    }),
    at('stall-handshake', (o) => {
      assert.equal(o.stage, 'handshake', JSON.stringify(o));
      assert.match(o.error!, TIMEOUT);
      assert.ok(o.elapsed_ms >= 1000 && o.elapsed_ms < HANDSHAKE_TIMEOUT_MS, `timed out after ${o.elapsed_ms} ms`);
    }, { timeout: 1 }),
    // A client that waits longer sees the daemon close at --handshake-timeout: an EOF mid-handshake.
    at('stall-handshake', (o) => {
      assert.deepEqual({ stage: o.stage, error: o.error, reason: o.reason }, { stage: 'handshake', error: 'SSLEOFError', reason: 'UNEXPECTED_EOF_WHILE_READING' });
      assert.ok(o.elapsed_ms >= HANDSHAKE_TIMEOUT_MS, `closed after ${o.elapsed_ms} ms`);
    }, { label: 'stall-handshake, 5 s timeout: the daemon closes at --handshake-timeout' }),
    at('handshake-alert', sslError('SSLV3_ALERT_HANDSHAKE_FAILURE')),

    // Not a scenario: the unrecognized_name alert.
    { job: { label: 'nope.localhost: unrecognized_name', scenario: undefined, server_name: 'nope.localhost' }, expect: sslError('TLSV1_UNRECOGNIZED_NAME') },
    { job: { label: 'no SNI: unrecognized_name', scenario: undefined, server_name: null }, expect: sslError('TLSV1_UNRECOGNIZED_NAME') },
  ];
}

/** Runs the python client over `jobs`; resolves with one outcome per job, in order. */
async function runPython(t: TestContext, port: number, caFile: string, jobs: readonly Job[]): Promise<Outcome[]> {
  const child = spawn('python3', ['-c', PYTHON_CLIENT, String(port), caFile, JSON.stringify(jobs)]);
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0, `python3 failed: ${stderr}`);
  const outcomes = stdout.trim().split('\n').map((line) => JSON.parse(line) as Outcome);
  assert.deepEqual(outcomes.map((o) => o.label), jobs.map((j) => j.label));
  return outcomes;
}

for (const workers of [0, 2]) {
  test(`python ssl: what it reports for every scenario, --workers ${workers}`, { skip: which('python3') === undefined && 'no python3' }, async (t) => {
    const { daemon, port, scenarioPort, caFile, certDir } = await startScenarioDaemon(t, ['--workers', String(workers)]);
    assert.equal(daemon.lines.find((l) => l.message === 'listening')?.workers, workers);
    const client = await issueClient(certDir, 'python-client');
    const all = expectations(client);
    const outcomes = await runPython(t, scenarioPort, caFile, all.map((e) => e.job));
    for (const [i, { job, expect }] of all.entries()) {
      await t.test(job.label, () => {
        try {
          expect(outcomes[i]!);
        } catch (err) {
          (err as Error).message += `\n--- python printed ${JSON.stringify(outcomes[i])}`;
          throw err;
        }
      });
    }
    await t.test('covers every scenario', () => {
      assertCoversCatalogue(all.flatMap((e) => (e.job.scenario === undefined ? [] : [e.job.scenario])), 'python ssl');
    });

    await t.test(`the supervisor serves the scenario listener (--workers ${workers})`, async () => {
      // Every scenario python echoed on ends in a session line of the supervisor: a worker's lines carry `worker`.
      const echoedOn = new Set(all.flatMap((e, i) => (outcomes[i]!.ok && e.job.scenario !== undefined ? [e.job.scenario] : [])));
      for (const scenario of echoedOn) {
        const line = await daemon.waitForLine((l) => l.message === 'session ended' && l.scenario === scenario);
        assert.equal(line.worker, undefined, `${scenario}: ${JSON.stringify(line)}`);
      }
      assert.ok(daemon.lines.filter((l) => l.scenario !== undefined).every((l) => l.worker === undefined));
      // The main listener, for contrast: served by a worker when there are workers.
      const main = await tryEcho(port, readFileSync(caFile));
      assert.equal(main.echoed, 'ping');
      const line = await daemon.waitForLine((l) => l.message === 'session ended' && l.scenario === undefined);
      assert.equal(typeof line.worker, workers === 0 ? 'undefined' : 'number', JSON.stringify(line));
    });
  });
}
