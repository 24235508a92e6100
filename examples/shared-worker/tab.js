// One tab of examples/shared-worker: talks to the shared connection through the worker's port.
// Query parameter `subscribe` subscribes to a filter at once (default "demo/#"; empty for none).
'use strict';

const worker = new SharedWorker('worker.js', { name: 'diglot-shared-mqtt' });
const port = worker.port;
const filters = new Set();
const $ = (id) => document.getElementById(id);

port.onmessage = ({ data }) => {
  if (data.type === 'state') {
    $('state').dataset.state = data.state;
    $('state').textContent = `${data.state} (${data.detail})`;
    $('tabs').textContent = String(data.tabs);
    $('client-id').textContent = data.clientId;
  } else if (data.type === 'message') {
    const li = document.createElement('li');
    const topic = document.createElement('span');
    topic.className = 'topic';
    topic.textContent = data.topic;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = data.text; // text only, never HTML
    li.append(topic, text);
    $('log').append(li);
  }
};
port.start();

function subscribe(filter) {
  if (!filter || filters.has(filter)) return;
  filters.add(filter);
  port.postMessage({ type: 'subscribe', filter });
  $('filters').textContent = [...filters].join(', ');
}

$('sub').addEventListener('submit', (e) => {
  e.preventDefault();
  subscribe(e.target.filter.value.trim());
});
$('pub').addEventListener('submit', (e) => {
  e.preventDefault();
  port.postMessage({ type: 'publish', topic: e.target.topic.value.trim(), text: e.target.text.value });
  e.target.text.value = '';
});
// Tell the worker when this tab goes, so it stops routing to it.
addEventListener('pagehide', () => port.postMessage({ type: 'bye' }));
addEventListener('pageshow', (e) => {
  // Back from the back/forward cache: the worker forgot this tab; subscribe again.
  if (e.persisted) for (const filter of filters) port.postMessage({ type: 'subscribe', filter });
});

subscribe(new URLSearchParams(location.search).get('subscribe') ?? 'demo/#');
