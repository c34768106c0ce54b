// The scenario catalogue: the names the issue made public, each once, and the server-name lookup
// the scenario listener will route by.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SCENARIOS, scenarioForServerName, scenarioServerName } from '../../src/scenarios/catalogue';

const PUBLIC_NAMES = [
  'valid', 'expired', 'not-yet-valid', 'wrong-host', 'self-signed', 'untrusted-root', 'incomplete-chain', 'intermediate', 'no-san', 'sha1', 'rsa-1024', 'wrong-eku',
  'tls1.0', 'tls1.1', 'tls1.2-only', 'tls1.3-only', 'static-rsa', 'dh-1024',
  'client-cert-required', 'client-cert-requested',
  'no-close-notify', 'reset-after-echo', 'close-after-handshake', 'no-echo', 'slow-echo', 'small-records', 'slow-handshake', 'stall-handshake', 'handshake-alert',
];

test('scenario catalogue: exactly the public names, each once, each described', () => {
  assert.deepEqual(SCENARIOS.map((s) => s.name), PUBLIC_NAMES);
  for (const s of SCENARIOS) {
    assert.ok(s.serverDoes.length > 0 && s.clientSees.length > 0, s.name);
    // Each becomes DNS labels of its server name.
    assert.match(s.name, /^[a-z0-9]+([.-][a-z0-9]+)*$/, s.name);
  }
});

test('scenario catalogue: a server name picks its scenario under the domain, case-insensitively; anything else picks none', () => {
  for (const s of SCENARIOS) assert.equal(scenarioForServerName(scenarioServerName(s.name, 'localhost'), 'localhost'), s);
  assert.equal(scenarioForServerName('EXPIRED.LocalHost', 'localhost')?.name, 'expired');
  assert.equal(scenarioForServerName('tls1.0.test.example', 'test.example')?.name, 'tls1.0');
  for (const miss of [undefined, '', 'localhost', '.localhost', 'expired', 'expired.example', 'nope.localhost', 'x.expired.localhost', 'expiredlocalhost']) {
    assert.equal(scenarioForServerName(miss, 'localhost'), undefined, String(miss));
  }
});
