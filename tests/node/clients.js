// Thin helpers around the real client libraries: MQTT.js and @stomp/stompjs (on the `ws`
// WebSocket implementation, since Node 20 has no global WebSocket).

import mqtt from 'mqtt';
import { Client as StompClient } from '@stomp/stompjs';
import WebSocket from 'ws';

import { EVENTUALLY_MS, Inbox, eventually, unique } from './broker.js';

// @stomp/stompjs does `new WebSocket(brokerURL, ['v12.stomp', 'v11.stomp', 'v10.stomp'])`.
Object.assign(globalThis, { WebSocket });

/**
 * Connects MQTT.js to `url` (ws://… or mqtt://…). Resolves to { client, inbox } where inbox
 * collects { topic, payload, packet } for every PUBLISH the client receives.
 */
export async function mqttConnect(url, opts = {}) {
  const client = await mqtt.connectAsync(url, {
    clientId: unique('mqttjs-'),
    reconnectPeriod: 0,
    connectTimeout: EVENTUALLY_MS,
    keepalive: 30,
    ...opts,
  });
  const inbox = new Inbox(`MQTT client ${client.options.clientId}`);
  client.on('message', (topic, payload, packet) => inbox.push({ topic, payload, packet }));
  return { client, inbox };
}

/**
 * Connects @stomp/stompjs to `url`. Resolves to { client, connected } (the CONNECTED frame)
 * and fails on ERROR or a closed WebSocket.
 */
export async function stompConnect(url, opts = {}) {
  const client = new StompClient({
    brokerURL: url,
    reconnectDelay: 0,
    debug: () => {},
    ...opts,
  });
  try {
    const connected = await eventually('STOMP CONNECTED', (res, rej) => {
      client.onConnect = res;
      client.onStompError = (f) =>
        rej(new Error(`STOMP ERROR while connecting: ${f.headers.message} ${f.body}`));
      client.onWebSocketClose = (evt) =>
        rej(new Error(`WebSocket closed while connecting: ${evt.code} ${evt.reason}`));
      client.activate();
    });
    client.onWebSocketClose = () => {};
    return { client, connected };
  } catch (e) {
    await client.deactivate({ force: true });
    throw e;
  }
}

/**
 * SUBSCRIBEs with a `receipt` header and waits for the RECEIPT, so the subscription is known
 * to be in place before anything is published. Resolves to { inbox, id, subscription }.
 */
export async function stompSubscribe(client, destination, headers = {}) {
  const inbox = new Inbox(`STOMP subscription to ${destination}`);
  const receipt = unique('sub-receipt-');
  const ready = eventually(`RECEIPT for SUBSCRIBE ${destination}`, (res) =>
    client.watchForReceipt(receipt, res),
  );
  const subscription = client.subscribe(destination, (m) => inbox.push(m), { ...headers, receipt });
  const frame = await ready;
  if (frame.headers['receipt-id'] !== receipt) {
    throw new Error(`RECEIPT has receipt-id ${frame.headers['receipt-id']}, want ${receipt}`);
  }
  return { inbox, id: subscription.id, subscription };
}

/** Publishes with a `receipt` header and resolves to the RECEIPT frame. */
export async function stompPublishWithReceipt(client, params) {
  const receipt = unique('send-receipt-');
  const answered = eventually(`RECEIPT ${receipt} for SEND ${params.destination}`, (res) =>
    client.watchForReceipt(receipt, res),
  );
  client.publish({ ...params, headers: { ...(params.headers || {}), receipt } });
  const frame = await answered;
  return { receipt, frame };
}

/**
 * Ends every client given (MQTT.js or stompjs) gracefully: MQTT DISCONNECT, or STOMP DISCONNECT
 * with a receipt followed by the WebSocket close handshake. A client that cannot finish within
 * the "eventually" bound is torn down and reported, since that is a broker fault.
 */
export async function closeAll(...clients) {
  const stuck = [];
  await Promise.all(
    clients.filter(Boolean).map(async (c) => {
      const isMqtt = typeof c.endAsync === 'function';
      try {
        await eventually(isMqtt ? 'MQTT.js end' : 'stompjs deactivate', (res, rej) => {
          (isMqtt ? c.endAsync() : c.deactivate()).then(res, rej);
        });
      } catch (e) {
        stuck.push(e.message);
        if (isMqtt) c.end(true);
        else await c.deactivate({ force: true }).catch(() => {});
      }
    }),
  );
  if (stuck.length) throw new Error(`clients did not close cleanly: ${stuck.join('; ')}`);
}
