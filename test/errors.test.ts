import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CloseCodes, ErrorCodes, ErrorReasons, HttpCodes } from '../src/protocol/errors.js';
import { decodeJson } from '../src/protocol/json-codec.js';

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

test('every wire error code is documented in docs/PROTOCOL.md and the README', () => {
  const protocol = read('docs/PROTOCOL.md');
  const readme = read('README.md');
  for (const code of Object.keys(ErrorCodes).filter((c) => c !== 'E_CONFIG' && c !== 'E_STARTUP')) {
    assert.match(protocol, new RegExp(`\\b${code}\\b`), `${code} missing from docs/PROTOCOL.md`);
    assert.match(readme, new RegExp(`\\b${code}\\b`), `${code} missing from README.md`);
  }
});

test('every close code the server sends is documented', () => {
  const protocol = read('docs/PROTOCOL.md');
  for (const { close } of Object.values(ErrorCodes)) {
    if (close !== 0) assert.match(protocol, new RegExp(`\\b${close}\\b`), `close ${close} missing`);
  }
  // NORMAL is the client's ordinary close; the server never sends it.
  for (const [name, close] of Object.entries(CloseCodes)) {
    if (name !== 'NORMAL') assert.match(protocol, new RegExp(`\\b${close}\\b`), `close ${close} (${name}) missing`);
  }
});

test('every HTTP body code is documented, with its status, in docs/PROTOCOL.md, and named in the README', () => {
  const protocol = read('docs/PROTOCOL.md');
  const readme = read('README.md');
  for (const [code, { status }] of Object.entries(HttpCodes)) {
    assert.match(protocol, new RegExp(`\\| \`${code}\` \\| ${status} \\|`), `${code} (${status}) missing from docs/PROTOCOL.md`);
    assert.match(readme, new RegExp(`\`${code}\`\\s+\\(${status}\\)`), `${code} (${status}) missing from README.md`);
  }
});

test('every err reason is documented in docs/PROTOCOL.md, and an unknown op carries its reason', () => {
  const protocol = read('docs/PROTOCOL.md');
  for (const reason of Object.keys(ErrorReasons)) assert.match(protocol, new RegExp(`\\b${reason}\\b`), `${reason} missing from docs/PROTOCOL.md`);
  const refusal = decodeJson(new TextEncoder().encode('{"op":"subscribe","ref":"r"}').buffer, false);
  assert.deepEqual(refusal.op === 'err' && [refusal.code, refusal.reason], ['E_BAD_FRAME', 'unknown_op']);
});
