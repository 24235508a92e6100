// Authentication and topic ACLs with the real browser clients: MQTT.js (3.1.1 and 5) with
// username/password and with a JWT in the WebSocket URL (`?token=`, as a browser page must
// send it), @stomp/stompjs with login/passcode and with a JWT as passcode, and ACL denials as
// each client library reports them. Anonymous clients are refused (`allow_anonymous = false`).
//
// Tokens are HS256 JWTs signed here with node:crypto, independent of the broker's library.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';

import WebSocket from 'ws';

import { eventually, hashPassword, unique, useBroker } from '../broker.js';
import { closeAll, mqttConnect, stompConnect, stompSubscribe } from '../clients.js';

const SECRET = 'node-test-secret-0123456789abcdef';
const AUDIENCE = 'diglot';

const broker = useBroker({
  extraConfig: () => `
[server]
allow_anonymous = false

[auth]
users = [
  { username = "alice", password_hash = "${hashPassword('alice-pw')}", roles = ["admin"] },
  { username = "bob", password_hash = "${hashPassword('bob-pw')}" },
]

[auth.jwt]
hs256_secret = "${SECRET}"
audience = "${AUDIENCE}"

[[auth.acl]]
role = "admin"
publish = ["#"]
subscribe = ["#"]

[[auth.acl]]
everyone = true
publish = ["users/%u/#"]
subscribe = ["users/%u/#", "public/#"]
`,
});

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for `sub`, valid for `secs` seconds. */
function jwt(sub, { secs = 600, secret = SECRET, aud = AUDIENCE } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub, aud, iat: now, exp: now + secs })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** Resolves to the error MQTT.js reports when its CONNECT is refused. */
async function mqttRefusal(url, opts) {
  try {
    const { client } = await mqttConnect(url, opts);
    await closeAll(client);
  } catch (e) {
    return e;
  }
  assert.fail(`MQTT connect to ${url} with ${JSON.stringify(opts)} was accepted`);
}

/** Resolves to the STOMP ERROR frame @stomp/stompjs receives for a refused CONNECT. */
async function stompRefusal(url, connectHeaders) {
  const { Client } = await import('@stomp/stompjs');
  const client = new Client({ brokerURL: url, reconnectDelay: 0, debug: () => {}, connectHeaders });
  try {
    return await eventually('STOMP ERROR for a refused CONNECT', (res, rej) => {
      client.onStompError = res;
      client.onConnect = () => rej(new Error('STOMP CONNECT was accepted'));
      client.activate();
    });
  } finally {
    await client.deactivate({ force: true });
  }
}

for (const [label, protocolVersion] of [
  ['MQTT 3.1.1', 4],
  ['MQTT 5', 5],
]) {
  describe(`MQTT.js ${label} logins`, () => {
    test('a good password connects over WebSocket and TCP', async () => {
      for (const url of [broker.wsUrl('/ws'), `mqtt://${broker.mqtt}`]) {
        const { client } = await mqttConnect(url, { protocolVersion, username: 'alice', password: 'alice-pw' });
        assert.equal(client.connected, true, url);
        await closeAll(client);
      }
    });

    test('a wrong password and a missing login are refused with the CONNACK code', async () => {
      const bad = await mqttRefusal(broker.wsUrl('/ws'), { protocolVersion, username: 'alice', password: 'nope' });
      // MQTT.js reports the CONNACK return code (3.1.1: 4 bad user name or password) or reason
      // code (5: 0x86 bad user name or password).
      assert.equal(bad.code, protocolVersion === 5 ? 0x86 : 4, String(bad));
      const anon = await mqttRefusal(`mqtt://${broker.mqtt}`, { protocolVersion });
      assert.equal(anon.code, protocolVersion === 5 ? 0x87 : 5, String(anon));
    });

    test('a JWT in the WebSocket URL (?token=) logs in as its subject', async () => {
      const url = `${broker.wsUrl('/ws')}?token=${encodeURIComponent(jwt('carol'))}`;
      const { client, inbox } = await mqttConnect(url, { protocolVersion });
      try {
        const topic = `users/carol/${unique('t')}`;
        const granted = await client.subscribeAsync(topic, { qos: 1 });
        assert.equal(granted[0].qos, 1, 'carol may subscribe to users/carol/#');
        await client.publishAsync(topic, 'mine', { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.payload.toString(), 'mine');
      } finally {
        await closeAll(client);
      }
    });

    test('a JWT signed with another key is refused at the handshake with 401', async () => {
      const url = `${broker.wsUrl('/ws')}?token=${jwt('carol', { secret: 'x'.repeat(40) })}`;
      // The browser WebSocket API hides the status; the `ws` client (which MQTT.js uses in
      // Node) reports it as an unexpected response.
      const status = await eventually('the handshake answer', (res, rej) => {
        const ws = new WebSocket(url, ['mqtt']);
        ws.on('unexpected-response', (_req, resp) => {
          res(resp.statusCode);
          ws.terminate();
        });
        ws.on('open', () => rej(new Error('the handshake was accepted')));
        ws.on('error', () => {});
      });
      assert.equal(status, 401);
    });

    test('ACLs: a denied subscribe and a denied publish get the protocol answer', async () => {
      const { client: bob, inbox } = await mqttConnect(broker.wsUrl('/ws'), {
        protocolVersion,
        username: 'bob',
        password: 'bob-pw',
      });
      const { client: alice } = await mqttConnect(broker.wsUrl('/ws'), {
        protocolVersion,
        username: 'alice',
        password: 'alice-pw',
      });
      try {
        // MQTT.js rejects a SUBSCRIBE whose SUBACK refuses a filter, and hands over the packet.
        // 3.1.1: return code 0x80 Failure; 5: reason code 0x87 Not authorized.
        const refused = await bob.subscribeAsync({ 'users/alice/#': { qos: 1 }, 'users/bob/#': { qos: 1 } }).then(
          (g) => assert.fail(`SUBSCRIBE accepted: ${JSON.stringify(g)}`),
          (e) => e,
        );
        assert.deepEqual(refused.packet?.granted, [protocolVersion === 5 ? 0x87 : 0x80, 1], String(refused));
        if (protocolVersion === 5) {
          // MQTT 5: the PUBACK carries 0x87 Not authorized, and MQTT.js rejects the publish.
          await assert.rejects(bob.publishAsync('users/alice/x', 'no', { qos: 1 }), (e) => e.code === 0x87);
        } else {
          // MQTT 3.1.1 has no way to say no: the PUBACK comes, the message is dropped.
          await bob.publishAsync('users/alice/x', 'no', { qos: 1 });
        }
        // Nothing denied reached bob's own subscription; the next message bob sees is alice's.
        await alice.publishAsync('users/bob/inbox', 'from alice', { qos: 1 });
        const m = await inbox.next();
        assert.equal(m.topic, 'users/bob/inbox');
        assert.equal(m.payload.toString(), 'from alice');
      } finally {
        await closeAll(bob, alice);
      }
    });
  });
}

describe('@stomp/stompjs logins', () => {
  test('login/passcode connects; a wrong passcode gets ERROR "bad credentials"', async () => {
    const { client } = await stompConnect(broker.wsUrl('/ws'), { connectHeaders: { login: 'bob', passcode: 'bob-pw' } });
    await closeAll(client);
    const err = await stompRefusal(broker.wsUrl('/ws'), { login: 'bob', passcode: 'wrong' });
    assert.equal(err.headers.message, 'bad credentials');
    const anon = await stompRefusal(broker.wsUrl('/ws'), {});
    assert.equal(anon.headers.message, 'not authorized');
  });

  test('a JWT as passcode logs in; ACLs hold for SEND and SUBSCRIBE', async () => {
    const { client: dave } = await stompConnect(broker.wsUrl('/ws'), {
      connectHeaders: { login: 'jwt', passcode: jwt('dave') },
    });
    const { client: alice } = await stompConnect(broker.wsUrl('/ws'), {
      connectHeaders: { login: 'alice', passcode: 'alice-pw' },
    });
    try {
      const { inbox } = await stompSubscribe(dave, '/topic/users/dave/#');
      alice.publish({ destination: '/topic/users/dave/note', body: 'hi dave' });
      const m = await inbox.next();
      assert.equal(m.body, 'hi dave');

      // A SEND outside dave's rules is an ERROR, and the broker closes the connection.
      const error = eventually('STOMP ERROR for a denied SEND', (res) => {
        dave.onStompError = res;
      });
      dave.publish({ destination: '/topic/users/alice/x', body: 'no' });
      const frame = await error;
      assert.match(frame.headers.message, /not authorized/);
    } finally {
      await closeAll(alice);
      await dave.deactivate({ force: true });
    }
  });
});
