// One MQTT.js connection shared by every tab of this origin that opens the page (a SharedWorker
// lives as long as one of its tabs does).
//
// Tabs talk to the worker over their MessagePort:
//   tab → worker  { type: 'subscribe', filter }    { type: 'unsubscribe', filter }
//                 { type: 'publish', topic, text }  { type: 'bye' } (on pagehide)
//   worker → tab  { type: 'state', state, detail, tabs, clientId }
//                 { type: 'message', topic, text, filter }
// The worker subscribes on the broker once per filter, however many tabs want it, and hands
// each message to the tabs whose filters match its topic. Payloads are treated as text.
'use strict';
importScripts('../chat/vendor/mqtt.min.js');

const url = `${self.location.protocol === 'https:' ? 'wss' : 'ws'}://${self.location.host}/ws`;
const clientId = `shared-worker-${Math.random().toString(36).slice(2, 10)}`;
/** filter → the ports that asked for it */
const routes = new Map();
const ports = new Set();
let state = { state: 'connecting', detail: url };

const client = mqtt.connect(url, { clientId, clean: true, reconnectPeriod: 1000, connectTimeout: 5000 });
client.on('connect', () => {
  setState('connected', url);
  // A clean session forgets subscriptions: ask again for every filter some tab wants.
  if (routes.size) client.subscribe([...routes.keys()], { qos: 0 });
});
client.on('reconnect', () => setState('connecting', `reconnecting to ${url}`));
client.on('close', () => setState('disconnected', 'connection lost; retrying every second'));
client.on('message', (topic, payload) => {
  const text = payload.toString();
  for (const [filter, wanting] of routes) {
    if (!matches(filter, topic)) continue;
    for (const port of wanting) port.postMessage({ type: 'message', topic, text, filter });
  }
});

/** MQTT filter matching: `+` is one level, `#` the rest; `$` topics only for `$` filters. */
function matches(filter, topic) {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && !filter.startsWith('$')) return false;
  for (let i = 0; i < f.length; i += 1) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

function setState(s, detail) {
  state = { state: s, detail };
  broadcast();
}

function broadcast() {
  for (const port of ports) port.postMessage({ type: 'state', ...state, tabs: ports.size, clientId });
}

function subscribe(port, filter) {
  let wanting = routes.get(filter);
  if (!wanting) {
    wanting = new Set();
    routes.set(filter, wanting);
    if (client.connected) client.subscribe(filter, { qos: 0 });
  }
  wanting.add(port);
}

function unsubscribe(port, filter) {
  const wanting = routes.get(filter);
  if (!wanting) return;
  wanting.delete(port);
  if (wanting.size === 0) {
    routes.delete(filter);
    if (client.connected) client.unsubscribe(filter);
  }
}

self.onconnect = (event) => {
  const port = event.ports[0];
  ports.add(port);
  port.onmessage = ({ data }) => {
    if (data.type === 'subscribe') subscribe(port, String(data.filter));
    else if (data.type === 'unsubscribe') unsubscribe(port, String(data.filter));
    else if (data.type === 'publish' && client.connected) client.publish(String(data.topic), String(data.text));
    else if (data.type === 'bye') {
      for (const filter of [...routes.keys()]) unsubscribe(port, filter);
      ports.delete(port);
      broadcast();
    }
  };
  port.start();
  broadcast();
};
