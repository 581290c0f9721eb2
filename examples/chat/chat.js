// The chat page: groups, direct messages and presence on the ocs-realtime client SDK (its
// browser build, served at /client/). Everything it shows comes from the SDK's events; the
// SDK reconnects, re-joins and drops duplicates by itself.
import { OcsClient } from '/client/ocs-client.js';

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const user = params.get('user') || `guest-${Math.random().toString(36).slice(2, 7)}`;
const config = await (await fetch('/config.json')).json();

/** Conversations by key: `g:GROUP` or `u:PEER`, each a list of {id, from, text, ts, mine}. */
const conversations = new Map();
const unread = new Map();
let current = null;

const client = new OcsClient({
  url: config.ws,
  ...(config.tokens
    ? { token: async () => (await (await fetch(`/token?user=${encodeURIComponent(user)}`)).json()).token }
    : { user }),
  heartbeatMs: 5000,
});

// --- what the SDK tells us ------------------------------------------------------------------

client.on('state', (state) => {
  $('#state').dataset.state = state;
  $('#state').textContent = state;
});
client.on('open', (welcome) => {
  $('#state').dataset.connections = String(client.stats.connections);
  log(welcome.reconnected ? `reconnected (shard ${welcome.shard})` : `connected as ${welcome.user} (shard ${welcome.shard})`);
});
client.on('disconnect', (d) => log(`closed ${d.code}${d.reason ? ` ${d.reason}` : ''}${d.retryInMs !== undefined ? `, retry in ${d.retryInMs} ms` : ''}`));
client.on('joined', (j) => {
  if (j.rejoin) log(`re-joined ${j.group}${j.history ? (j.recovered ? ', nothing missed' : ', some messages missed') : ''}`);
  if (j.group === currentGroup()) void refreshPresence(j.group);
});
client.on('gap', (g) => log(`${g.group}: messages missed (${g.reason})`));
client.on('error', (err) => log(`error ${err.code ?? ''} ${err.message}`));
client.on('message', (msg) => {
  const key = msg.group !== undefined ? `g:${msg.group}` : `u:${msg.from}`;
  add(key, { id: msg.id, from: msg.from, text: textOf(msg.data), ts: msg.ts, mine: msg.from === user });
});
client.on('presence', (p) => {
  const list = presence.get(p.group);
  if (list === undefined) return;
  for (const name of p.joins) list.add(name);
  for (const name of p.leaves) list.delete(name);
  if (p.group === currentGroup()) drawPresence();
});

// --- actions --------------------------------------------------------------------------------

$('#join-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const group = $('#group').value.trim();
  if (group === '') return;
  $('#group').value = '';
  try {
    await client.join(group, { presence: true });
    presence.set(group, new Set());
    conversation(`g:${group}`);
    open(`g:${group}`);
  } catch (err) {
    log(`cannot join ${group}: ${err.code}`);
  }
});

$('#dm-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const peer = $('#dm-to').value.trim();
  if (peer === '') return;
  $('#dm-to').value = '';
  conversation(`u:${peer}`);
  open(`u:${peer}`);
});

$('#compose').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('#text').value;
  if (text.trim() === '' || current === null) return;
  $('#text').value = '';
  const target = current.slice(2);
  try {
    if (current.startsWith('g:')) {
      await client.publish(target, { text });
    } else {
      // A direct message is stored and delivered to the peer only: show our own copy here.
      const id = await client.send(target, { text });
      add(`u:${target}`, { id, from: user, text, ts: Date.now(), mine: true });
    }
  } catch (err) {
    log(`not sent (${err.code}): ${text}`);
  }
});

// --- presence -------------------------------------------------------------------------------

const presence = new Map();

async function refreshPresence(group) {
  try {
    const snapshot = await client.presence(group);
    presence.set(group, new Set(snapshot.users ? snapshot.users.keys() : []));
    $('#presence-note').textContent = snapshot.users ? '' : `${snapshot.total.users} users`;
    $('#presence').dataset.supported = 'true';
  } catch (err) {
    $('#presence-note').textContent = err.code === 'E_BAD_FRAME' ? 'this server does not report presence' : `presence: ${err.code}`;
    $('#presence').dataset.supported = 'false';
  }
  if (group === currentGroup()) drawPresence();
}

function drawPresence() {
  const names = [...(presence.get(currentGroup()) ?? [])].sort();
  $('#presence').replaceChildren(...names.map((name) => li(name, { user: name })));
}

// --- drawing --------------------------------------------------------------------------------

function conversation(key) {
  if (!conversations.has(key)) conversations.set(key, []);
  drawNav();
  return conversations.get(key);
}

function add(key, entry) {
  const list = conversation(key);
  list.push(entry);
  if (key === current) $('#messages').append(messageItem(entry));
  else unread.set(key, (unread.get(key) ?? 0) + 1);
  drawNav();
  $('#messages').scrollTop = $('#messages').scrollHeight;
}

function open(key) {
  current = key;
  unread.delete(key);
  $('#title').textContent = key.startsWith('g:') ? `# ${key.slice(2)}` : `@ ${key.slice(2)}`;
  $('#messages').replaceChildren(...conversations.get(key).map(messageItem));
  for (const control of document.querySelectorAll('#compose input, #compose button')) control.disabled = false;
  $('#text').focus();
  drawNav();
  if (key.startsWith('g:')) void refreshPresence(key.slice(2));
  else $('#presence').replaceChildren();
}

function drawNav() {
  const item = (key) => {
    const element = li(key.slice(2), { key });
    if (key === current) element.className = 'current';
    const count = unread.get(key);
    if (count) element.append(Object.assign(document.createElement('span'), { className: 'unread', textContent: String(count) }));
    element.addEventListener('click', () => open(key));
    return element;
  };
  const keys = [...conversations.keys()];
  $('#groups').replaceChildren(...keys.filter((k) => k.startsWith('g:')).map(item));
  $('#peers').replaceChildren(...keys.filter((k) => k.startsWith('u:')).map(item));
}

function messageItem(entry) {
  const element = li('', { id: entry.id, from: entry.from });
  if (entry.mine) element.className = 'mine';
  element.append(
    Object.assign(document.createElement('span'), { className: 'from', textContent: entry.from }),
    Object.assign(document.createElement('span'), { className: 'text', textContent: entry.text }),
    Object.assign(document.createElement('span'), { className: 'time', textContent: new Date(entry.ts).toLocaleTimeString() }),
  );
  return element;
}

function li(text, data) {
  const element = document.createElement('li');
  element.textContent = text;
  Object.assign(element.dataset, data);
  return element;
}

function log(text) {
  $('#log').append(li(`${new Date().toLocaleTimeString()} ${text}`, {}));
}

const currentGroup = () => (current?.startsWith('g:') ? current.slice(2) : null);
const textOf = (data) => (data !== null && typeof data === 'object' && typeof data.text === 'string' ? data.text : JSON.stringify(data));

$('#me').textContent = user;
window.chat = { client, conversations };
await client.connect();
