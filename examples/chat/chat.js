// Diglot chat: one room, two panes, two protocols, one WebSocket port.
//
// The MQTT pane (MQTT.js) publishes and subscribes to MQTT topic `chat/<room>` with a persistent
// session (clean = false, a fixed client id, QoS 1). The STOMP pane (stompjs) uses the same topic
// as `/topic/chat/<room>`, with a durable subscription (`durable:true`, a fixed `client-id`,
// `ack:client-individual`) and `persistent:true` sends. The broker keeps what either pane misses
// while it is away (offline, reloading, or the broker restarting) and delivers it, in order,
// when the pane is back. Both reconnect by themselves with exponential backoff.
//
// Query parameters: room (default "lobby"), name (shown as the sender), ws (the WebSocket URL;
// default: this page's host, path /ws), mqttId and stompId (the persistent identities; default: a
// random id kept in localStorage, so a reload resumes the same session).
//
// Everything from the network is shown with textContent, never parsed as HTML.
'use strict';

const params = new URLSearchParams(location.search);
const ROOM = params.get('room') || 'lobby';
const NAME = params.get('name') || 'guest';
const WS_URL = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const TOPIC = `chat/${ROOM}`; // MQTT topic
const DESTINATION = `/topic/${TOPIC}`; // the same topic for STOMP

/** Backoff: first retry after BASE_MS, doubling up to MAX_MS. */
const BASE_MS = 500;
const MAX_MS = 10_000;

/** A persistent id for `kind`, from the URL or kept in localStorage. */
function identity(kind) {
  const given = params.get(`${kind}Id`);
  if (given) return given;
  const key = `diglot-chat-${kind}-id`;
  let id = null;
  try {
    id = localStorage.getItem(key);
  } catch {
    /* storage may be off; a new id then */
  }
  if (!id) {
    id = `chat-${kind}-${Math.random().toString(36).slice(2, 10)}`;
    try {
      localStorage.setItem(key, id);
    } catch {
      /* ignored */
    }
  }
  return id;
}

/** A chat line as sent on the wire: JSON with the sender, the text and the send time. */
function encode(via, text) {
  return JSON.stringify({ from: NAME, via, text, ts: Date.now() });
}

/** Reads a payload; a payload that is not our JSON (a backend's plain text) is shown as is. */
function decode(text) {
  try {
    const m = JSON.parse(text);
    if (m && typeof m === 'object' && typeof m.text === 'string') {
      return { from: String(m.from ?? ''), via: String(m.via ?? ''), text: m.text, ts: Number(m.ts) || null };
    }
  } catch {
    /* plain text */
  }
  return { from: '', via: '', text, ts: null };
}

/** The DOM side of one pane: state badge, counters, message list, send form. */
class PaneView {
  constructor(section, title, detail) {
    section.append(document.getElementById('pane-template').content.cloneNode(true));
    this.el = section;
    section.querySelector('h2').textContent = title;
    section.querySelector('.detail').textContent = detail;
    this.stateEl = section.querySelector('.state');
    this.log = section.querySelector('.log');
    this.input = section.querySelector('input');
    this.sendButton = section.querySelector('button[type=submit]');
    this.toggle = section.querySelector('.toggle');
    this.counts = { received: 0, redelivered: 0, reconnects: 0 };
  }

  /** `state` is connecting | connected | reconnecting | offline; `text` says more. */
  setState(state, text = state) {
    this.stateEl.dataset.state = state;
    this.stateEl.textContent = text;
    this.el.dataset.state = state;
    this.sendButton.disabled = state !== 'connected';
    this.toggle.textContent = state === 'offline' ? 'Go online' : 'Go offline';
  }

  bump(name) {
    this.counts[name] += 1;
    this.el.querySelector(`.${name}`).textContent = String(this.counts[name]);
  }

  /** Appends one message; `late` marks a message that arrived after a reconnect. */
  show(payload, { late, redelivered }) {
    const m = decode(payload);
    const li = document.createElement('li');
    if (late || redelivered) li.classList.add('late');
    const time = document.createElement('time');
    time.textContent = new Date(m.ts ?? Date.now()).toLocaleTimeString();
    const from = document.createElement('span');
    from.className = 'from';
    from.textContent = m.from ? `${m.from}${m.via ? ` (${m.via})` : ''}` : 'backend';
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text; // never innerHTML: "<script>" stays text
    li.append(time, from, text);
    if (late || redelivered) {
      const mark = document.createElement('span');
      mark.className = 'marker';
      mark.textContent = redelivered ? '↻ redelivered' : '↻ after reconnect';
      mark.title = redelivered
        ? 'the broker sent this before and redelivers it'
        : 'published while this pane was away; kept by the broker';
      li.append(mark);
      this.bump('redelivered');
    }
    this.bump('received');
    this.log.append(li);
    li.scrollIntoView({ block: 'nearest' });
  }

  /** Calls `send(text)` on submit and `toggle()` on the online/offline button. */
  bind(send, toggle) {
    this.el.querySelector('form').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.input.value;
      if (text.trim() === '') return;
      send(text);
      this.input.value = '';
    });
    this.toggle.addEventListener('click', toggle);
  }
}

/** MQTT.js with a persistent session and our own exponential backoff (MQTT.js retries at a fixed period). */
class MqttPane {
  constructor(view, clientId) {
    this.view = view;
    this.clientId = clientId;
    this.wantOnline = true;
    this.attempt = 0;
    // When the current connection attempt began: a message sent before it was kept by the broker
    // while this pane was away (it cannot be live).
    this.attemptAt = Date.now();
    this.timer = null;
    view.bind(
      (text) => this.client.publish(TOPIC, encode('MQTT', text), { qos: 1 }),
      () => (this.wantOnline ? this.goOffline() : this.goOnline()),
    );
    this.client = mqtt.connect(WS_URL, {
      clientId,
      clean: false, // a persistent session: the broker queues QoS 1 messages while we are away
      protocolVersion: 4,
      reconnectPeriod: 0, // reconnects are scheduled below, with backoff
      connectTimeout: 5_000,
      keepalive: 30,
      resubscribe: false, // the session keeps the subscription
    });
    this.client.on('connect', (connack) => {
      this.attempt = 0;
      this.view.setState('connected', connack.sessionPresent ? 'connected (session resumed)' : 'connected');
      if (!connack.sessionPresent) this.client.subscribe(TOPIC, { qos: 1 });
    });
    this.client.on('message', (topic, payload, packet) => this.receive(payload.toString(), packet.dup));
    this.client.on('close', () => this.closed());
    this.client.on('error', (e) => console.warn('mqtt:', e.message));
  }

  receive(text, dup) {
    const { ts } = decode(text);
    this.view.show(text, { late: ts !== null && ts < this.attemptAt, redelivered: dup });
  }

  closed() {
    clearTimeout(this.timer);
    if (!this.wantOnline) {
      this.view.setState('offline', 'offline');
      return;
    }
    const delay = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt) * (0.75 + Math.random() / 4);
    this.attempt += 1;
    this.view.setState('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.attempt})`);
    this.timer = setTimeout(() => {
      this.view.bump('reconnects');
      this.view.setState('connecting', `connecting (attempt ${this.attempt})`);
      this.attemptAt = Date.now();
      this.client.reconnect();
    }, delay);
  }

  goOffline() {
    this.wantOnline = false;
    clearTimeout(this.timer);
    this.client.end(); // DISCONNECT: the session (and its queue) stays on the broker
    this.view.setState('offline', 'offline');
  }

  goOnline() {
    this.wantOnline = true;
    this.attempt = 0;
    this.view.setState('connecting', 'connecting');
    this.attemptAt = Date.now();
    this.client.reconnect();
  }
}

/** stompjs with a durable subscription and its built-in exponential backoff. */
class StompPane {
  constructor(view, clientId) {
    this.view = view;
    this.attemptAt = Date.now(); // as in MqttPane
    this.attempt = 0;
    view.bind(
      (text) =>
        this.client.publish({
          destination: DESTINATION,
          body: encode('STOMP', text),
          headers: { persistent: 'true' }, // QoS 1 for the MQTT side, stored for durable queues
        }),
      () => (this.client.active ? this.goOffline() : this.goOnline()),
    );
    this.client = new StompJs.Client({
      brokerURL: WS_URL,
      connectHeaders: { 'client-id': clientId }, // names the durable subscription's owner
      reconnectDelay: BASE_MS,
      maxReconnectDelay: MAX_MS,
      reconnectTimeMode: StompJs.ReconnectionTimeMode.EXPONENTIAL,
      heartbeatIncoming: 10_000,
      heartbeatOutgoing: 10_000,
    });
    this.client.onConnect = () => {
      this.attempt = 0;
      this.view.setState('connected', 'connected');
      this.client.subscribe(DESTINATION, (m) => this.receive(m), {
        id: `chat-${ROOM}`, // with client-id, the name of the durable subscription
        durable: 'true',
        ack: 'client-individual',
      });
    };
    this.client.onWebSocketClose = () => {
      if (!this.client.active) {
        this.view.setState('offline', 'offline');
        return;
      }
      // stompjs waits BASE_MS, then doubles each time up to MAX_MS (ReconnectionTimeMode.EXPONENTIAL).
      const delay = Math.min(MAX_MS, BASE_MS * 2 ** this.attempt);
      this.attempt += 1;
      this.view.setState('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.attempt})`);
    };
    this.client.beforeConnect = () => {
      this.attemptAt = Date.now();
      if (this.attempt > 0) {
        this.view.bump('reconnects');
        this.view.setState('connecting', `connecting (attempt ${this.attempt})`);
      }
    };
    this.client.onStompError = (frame) => console.warn('stomp ERROR:', frame.headers.message, frame.body);
    this.client.activate();
  }

  receive(message) {
    const { ts } = decode(message.body);
    const redelivered = message.headers.redelivered === 'true';
    this.view.show(message.body, { late: ts !== null && ts < this.attemptAt, redelivered });
    message.ack(); // only now may the broker forget it
  }

  async goOffline() {
    await this.client.deactivate(); // DISCONNECT: the durable subscription keeps collecting
    this.view.setState('offline', 'offline');
  }

  goOnline() {
    this.attempt = 0;
    this.view.setState('connecting', 'connecting');
    this.client.activate();
  }
}

document.getElementById('room').textContent = ROOM;
document.getElementById('url').textContent = WS_URL;
document.getElementById('mqtt-topic').textContent = TOPIC;
document.getElementById('stomp-destination').textContent = DESTINATION;

const mqttId = identity('mqtt');
const stompId = identity('stomp');
window.chat = {
  mqtt: new MqttPane(new PaneView(document.getElementById('mqtt'), 'MQTT · MQTT.js', `client id ${mqttId}, clean = false, QoS 1`), mqttId),
  stomp: new StompPane(
    new PaneView(document.getElementById('stomp'), 'STOMP · stompjs', `client-id ${stompId}, durable subscription chat-${ROOM}`),
    stompId,
  ),
};
