import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type TestClient } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import { signToken, type TokenOptions } from './helpers/tokens.js';
import type { RunningServer } from '../src/index.js';

const SECRET = 'test-secret-of-reasonable-length-0123456789';

/** A token signed with SECRET unless another secret is given. */
const token = (claims: Record<string, unknown>, options: Partial<TokenOptions> = {}): Promise<string> => signToken(claims, { secret: SECRET, ...options });

async function rejectedWith(port: number, query: string): Promise<number | undefined> {
  try {
    (await connect(port, { query })).close();
    return undefined;
  } catch (err) {
    return (err as { status?: number }).status;
  }
}

describe('JWT authentication', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { auth_timeout: 1 }, auth: { secret: SECRET, allow_anonymous: false } } });
  });
  after(() => server.close());

  test('a valid token in ?token= identifies the user by its sub', async () => {
    const client = await connect(server.port, { query: `token=${await token({}, { sub: 'alice' })}` });
    const welcome = await client.next((f) => f.op === 'welcome');
    assert.equal(welcome.user, 'alice');
    client.close();
  });

  test('a valid token in the first auth frame works too', async () => {
    const client = await connect(server.port);
    client.send({ op: 'auth', token: await token({}, { sub: 'bob' }) });
    assert.equal((await client.next((f) => f.op === 'welcome')).user, 'bob');
    client.close();
  });

  test('bad, expired, wrongly signed or sub-less tokens get 401 before the upgrade', async () => {
    assert.equal(await rejectedWith(server.port, 'token=not.a.jwt'), 401);
    assert.equal(await rejectedWith(server.port, `token=${await token({}, { sub: 'x', exp: Math.floor(Date.now() / 1000) - 3600 })}`), 401);
    assert.equal(await rejectedWith(server.port, `token=${await token({}, { sub: 'x', secret: 'another-secret-another-secret-another' })}`), 401);
    assert.equal(await rejectedWith(server.port, `token=${await token({})}`), 401);
  });

  test('a token without exp is refused unless websocket.auth.require_exp is false', async () => {
    assert.equal(await rejectedWith(server.port, `token=${await token({}, { sub: 'x', exp: null })}`), 401);
    const lenient = await startInProcess({ websocket: { auth: { secret: SECRET, require_exp: false } } });
    try {
      const client = await connect(lenient.port, { query: `token=${await token({}, { sub: 'x', exp: null })}` });
      assert.equal((await client.next((f) => f.op === 'welcome')).user, 'x');
      client.close();
    } finally {
      await lenient.close();
    }
  });

  test('a token whose sub is in the anonymous namespace (anon:) is refused', async () => {
    assert.equal(await rejectedWith(server.port, `token=${await token({}, { sub: 'anon:alice' })}`), 401);
  });

  test("a token whose sub is @server (the sender of the server's own messages) is refused, so no client can pass for it", async () => {
    assert.equal(await rejectedWith(server.port, `token=${await token({}, { sub: '@server' })}`), 401);
    const client = await connect(server.port);
    client.send({ op: 'auth', token: await token({}, { sub: '@server' }) });
    assert.match(String((await client.next((f) => f.op === 'err')).message), /may not be @server/);
    assert.equal((await client.closed).code, 4001);
    const anonymous = await startInProcess({ websocket: { auth: { allow_anonymous: true } } });
    try {
      assert.equal(await rejectedWith(anonymous.port, 'user=@server'), 401);
    } finally {
      await anonymous.close();
    }
  });

  test('anonymous ?user= is refused when anonymous mode is off', async () => {
    assert.equal(await rejectedWith(server.port, 'user=mallory'), 401);
  });

  test('a bad token in the auth frame gets E_UNAUTHORIZED and close 4001', async () => {
    const client = await connect(server.port);
    client.send({ op: 'auth', token: await token({}, { sub: 'x', exp: Math.floor(Date.now() / 1000) - 3600 }) });
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_UNAUTHORIZED');
    assert.match(String(err.message), /expired/);
    assert.equal((await client.closed).code, 4001);
  });

  test('any other first frame gets E_UNAUTHORIZED and close 4001', async () => {
    const client = await connect(server.port);
    client.send({ op: 'join', group: 'g' });
    assert.equal((await client.next((f) => f.op === 'err')).code, 'E_UNAUTHORIZED');
    assert.equal((await client.closed).code, 4001);
  });

  test('a connection that never authenticates is closed with 4001 after auth_timeout', async () => {
    const client = await connect(server.port);
    assert.equal((await client.next((f) => f.op === 'err', 5000)).code, 'E_UNAUTHORIZED');
    assert.equal((await client.closed).code, 4001);
  });

  describe('the groups claim', () => {
    let client: TestClient;
    before(async () => {
      client = await connect(server.port, { query: `token=${await token({ groups: ['lobby', 'team.*'] }, { sub: 'carol' })}` });
      await client.next((f) => f.op === 'welcome');
    });
    after(() => client.close());

    test('allows the named groups and the ones under a prefix.* pattern', async () => {
      for (const group of ['lobby', 'team.red', 'team.blue.ops']) {
        client.send({ op: 'join', group, ref: group });
        assert.equal((await client.next((f) => f.ref === group)).op, 'joined');
      }
    });

    test('refuses every other group with E_FORBIDDEN, keeping the connection', async () => {
      for (const group of ['lobbyist', 'team', 'admin']) {
        client.send({ op: 'join', group, ref: group });
        const reply = await client.next((f) => f.ref === group);
        assert.equal(reply.op, 'err');
        assert.equal(reply.code, 'E_FORBIDDEN');
      }
      client.send({ op: 'pub', group: 'lobby', data: 'ok' });
      assert.equal((await client.next((f) => f.op === 'msg')).data, 'ok');
    });
  });

  test('a malformed groups claim is a bad token', async () => {
    assert.equal(await rejectedWith(server.port, `token=${await token({ groups: 'everything' }, { sub: 'dave' })}`), 401);
  });

  test('a weight claim that is not a positive number of at most 1000000 is a bad token (1e308 overflowed the weighted pick)', async () => {
    for (const weight of [0, -1, '2', 1_000_001, 1e308]) {
      assert.equal(await rejectedWith(server.port, `token=${await token({ weight }, { sub: 'wes' })}`), 401, `weight ${weight}`);
    }
    const heaviest = await connect(server.port, { query: `token=${await token({ weight: 1_000_000 }, { sub: 'wes' })}` });
    assert.equal((await heaviest.next((f) => f.op === 'welcome')).user, 'wes');
    heaviest.close();
  });
});

describe('anonymous mode beside a secret', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { auth: { secret: SECRET, allow_anonymous: true } } });
  });
  after(() => server.close());

  test('anonymous users live in the anon: namespace and never receive a verified user\'s messages', async () => {
    const impostor = await connect(server.port, { query: 'user=victim' });
    assert.equal((await impostor.next((f) => f.op === 'welcome')).user, 'anon:victim');
    const sender = await connect(server.port, { query: `token=${await token({}, { sub: 'sender' })}` });
    await sender.next((f) => f.op === 'welcome');
    sender.send({ op: 'send', to: 'victim', data: 'for the verified victim only', ref: 's1' });
    assert.equal((await sender.next((f) => f.ref === 's1')).op, 'ack');
    const victim = await connect(server.port, { query: `token=${await token({}, { sub: 'victim' })}` });
    assert.equal((await victim.next((f) => f.op === 'welcome')).pending, 1);
    assert.equal((await victim.next((f) => f.op === 'msg' || f.op === 'batch')).op !== undefined, true);
    await assert.rejects(impostor.next((f) => f.op === 'msg', 300));
    for (const client of [impostor, sender, victim]) client.close();
  });

  // A review's anon:eve joined team.secret and read what alice published there.
  test('anonymous users may use no group by default: join, history and presence are E_FORBIDDEN (a pub E_NOT_MEMBER, checked first)', async () => {
    const eve = await connect(server.port, { query: 'user=eve' });
    await eve.next((f) => f.op === 'welcome');
    eve.send({ op: 'join', group: 'team.secret', ref: 'j' });
    eve.send({ op: 'pub', group: 'team.secret', data: 'x', ref: 'p' });
    eve.send({ op: 'history', group: 'team.secret', ref: 'h' });
    eve.send({ op: 'presence', group: 'team.secret', ref: 'w' });
    const codes = [];
    for (const ref of ['j', 'p', 'h', 'w']) codes.push((await eve.next((f) => f.ref === ref)).code);
    assert.deepEqual(codes, ['E_FORBIDDEN', 'E_NOT_MEMBER', 'E_FORBIDDEN', 'E_FORBIDDEN']);
    eve.close();
  });
});

describe('anonymous mode beside a secret, with websocket.auth.anonymous_groups', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { auth: { secret: SECRET, allow_anonymous: true, anonymous_groups: ['guests.*', 'lobby'] } } });
  });
  after(() => server.close());

  test('anonymous users use the groups listed, verified users may meet them there, and no other group', async () => {
    const guest = await connect(server.port, { query: 'user=guest' });
    await guest.next((f) => f.op === 'welcome');
    for (const group of ['guests.a', 'lobby']) {
      guest.send({ op: 'join', group, ref: group });
      assert.equal((await guest.next((f) => f.ref === group)).op, 'joined', group);
    }
    guest.send({ op: 'join', group: 'lobby.side', ref: 'side' });
    assert.equal((await guest.next((f) => f.ref === 'side')).code, 'E_FORBIDDEN');
    const alice = await connect(server.port, { query: `token=${await token({}, { sub: 'alice' })}` });
    await alice.next((f) => f.op === 'welcome');
    alice.send({ op: 'join', group: 'lobby', ref: 'j' });
    await alice.next((f) => f.ref === 'j');
    alice.send({ op: 'pub', group: 'lobby', data: 'welcome, guest' });
    assert.equal((await guest.next((f) => f.op === 'msg')).data, 'welcome, guest');
    for (const client of [guest, alice]) client.close();
  });
});
