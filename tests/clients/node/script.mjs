// Drives the npm `etcd3` client through a fixed sequence against one
// cluster and prints one line per answer, so that the answers of Shoal and
// etcd 3.4 can be compared line by line (tests/it/node_client.rs).
//
//   node script.mjs http://127.0.0.1:2379[,http://...]
//
// Lines hold what a user sees (values, revisions, counts, error names and
// messages), never what differs between two clusters by design (lease and
// member ids, raft terms).
import { Etcd3 } from 'etcd3';

const hosts = (process.argv[2] || '').split(',').filter(Boolean);
if (hosts.length === 0) {
  console.error('usage: node script.mjs ENDPOINTS');
  process.exit(2);
}
const client = new Etcd3({ hosts });
const lines = [];
const log = (what, value) => lines.push(`${what}: ${JSON.stringify(value)}`);

/** The answer of `promise`, or the error as its class and message. */
async function outcome(promise) {
  try {
    return { ok: await promise };
  } catch (e) {
    return { error: `${e.constructor.name}: ${e.message}` };
  }
}

/** Resolves with `get()` once it holds `n` items, or rejects after `ms`. */
function collect(n, get, ms = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (get().length >= n) return resolve(get());
      if (Date.now() - started > ms) return reject(new Error(`only ${get().length} of ${n} after ${ms} ms`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

const revisionOf = (response) => Number(response.header.revision);

async function kv() {
  log('put a', revisionOf(await client.put('a').value('1')));
  const prev = await client.put('a').value('2').getPrevious();
  log('put a prev', prev && prev.value.toString());
  for (const [k, v] of [['p/1', 'x'], ['p/2', 'y'], ['p/3', 'z']]) await client.put(k).value(v);
  log('get a', await client.get('a').string());
  log('get a at 2', await client.get('a').revision(2).string());
  log('get missing', await client.get('missing').string());
  log('prefix strings', await client.getAll().prefix('p/').strings());
  log('prefix keys, limit 2', await client.getAll().prefix('p/').limit(2).keys());
  log('prefix count', await client.getAll().prefix('p/').count());
  log('sorted by value, descending', await client.getAll().prefix('p/').sort('Value', 'Descend').keys());
  const full = await client.get('a').exec();
  const a = full.kvs[0];
  log('a in full', [a.key.toString(), a.value.toString(), a.create_revision, a.mod_revision, a.version]);
  log('delete p/2 prev', (await client.delete().key('p/2').getPrevious()).map((k) => k.value.toString()));
  log('delete prefix', Number((await client.delete().prefix('p/').exec()).deleted));
  log('get future revision', await outcome(client.get('a').revision(1000).string()));
  log('compact to 3', await outcome(client.kv.compact({ revision: 3 }).then(() => 'compacted')));
  log('get compacted revision', await outcome(client.get('a').revision(2).string()));
  log('empty key', await outcome(client.put('').value('v').exec().then(() => 'put')));
}

async function txn() {
  const yes = await client.if('a', 'Value', '==', '2').then(client.put('t').value('1'), client.get('a')).else(client.put('f').value('1')).commit();
  log('txn taken', [yes.succeeded, yes.responses.map((r) => Object.keys(r).filter((k) => r[k]).join())]);
  const no = await client.if('a', 'Version', '>', 5).then(client.put('t').value('2')).else(client.put('f').value('1')).commit();
  log('txn not taken', no.succeeded);
  log('after txns', await client.getAll().prefix('').keys());
  const cas = await client.if('t', 'Mod', '==', 0).then(client.put('t').value('3')).commit();
  log('compare mod revision 0', cas.succeeded);
}

async function watch() {
  const events = [];
  const watcher = await client.watch().prefix('w/').withPreviousKV().create();
  watcher.on('put', (kv, previous) => events.push(['put', kv.key.toString(), kv.value.toString(), previous ? previous.value.toString() : null]));
  watcher.on('delete', (kv) => events.push(['delete', kv.key.toString()]));
  const first = revisionOf(await client.put('w/1').value('one'));
  await client.put('w/1').value('uno');
  await client.put('w/2').value('two');
  await client.delete().key('w/2');
  log('watched', await collect(4, () => events));
  await watcher.cancel();
  // A new watcher from an earlier revision gets the history again.
  const resumed = [];
  const again = await client.watch().prefix('w/').startRevision(String(first + 1)).create();
  again.on('data', (response) => {
    for (const e of response.events) resumed.push([e.type, e.kv.key.toString(), Number(e.kv.mod_revision)]);
  });
  log('resumed from first + 1', await collect(3, () => resumed));
  await again.cancel();
  const compacted = await outcome(client.watch().key('w/1').startRevision('1').create().then((w) => w.cancel().then(() => 'created')));
  log('watch from a compacted revision', compacted);
}

async function leases() {
  const ttlOf = async (id) => Number((await client.leaseClient.leaseTimeToLive({ ID: id })).TTL);
  const lease = client.lease(60, { autoKeepAlive: false });
  const id = await lease.grant();
  await lease.put('leased').value('v');
  log('leased key', await client.get('leased').string());
  const kept = await lease.keepaliveOnce();
  log('keepalive ttl', Number(kept.TTL));
  const left = await ttlOf(id);
  log('time to live within 60', left <= 60 && left > 50);
  await lease.revoke();
  log('after revoke', await client.get('leased').string());
  log('revoked lease time to live', await ttlOf(id));
  log('lease revoked twice', await outcome(client.leaseClient.leaseRevoke({ ID: id }).then(() => 'revoked')));
  const unknownPut = await outcome(client.put('x').value('1').lease('1234567').exec().then(() => 'put'));
  log('put with an unknown lease', unknownPut);
  const auto = client.lease(2);
  let renewed = 0;
  auto.on('keepaliveSucceeded', () => renewed++);
  const autoId = await auto.grant();
  await collect(2, () => Array(renewed), 15000);
  log('keepalives keep a 2 s lease alive', (await ttlOf(autoId)) > 0);
  await auto.revoke();
}

async function locks() {
  const held = await client.lock('l').ttl(30).acquire();
  log('lock acquired', true);
  log('second acquire while held', await outcome(client.lock('l').ttl(30).acquire().then(() => 'acquired')));
  await held.release();
  const again = await client.lock('l').ttl(30).acquire();
  log('acquire after release', true);
  await again.release();
  log('lock keys left', await client.getAll().prefix('l').keys());
}

async function elections() {
  const election = client.election('e', 30);
  log('leader before any campaign', await election.leader());
  const first = election.campaign('a');
  await first.wait();
  log('leader after campaign a', await election.leader());
  const observer = await election.observe();
  const seen = [];
  observer.on('change', (value) => seen.push(value));
  await first.proclaim('a2');
  const second = election.campaign('b');
  let secondElected = false;
  second.on('elected', () => { secondElected = true; });
  log('leader after proclaim', await election.leader());
  log('b elected while a leads', secondElected);
  await first.resign();
  await second.wait();
  log('leader after a resigns', await election.leader());
  log('proclaim after resign', await outcome(first.proclaim('late')));
  log('observed', await collect(2, () => seen));
  await observer.cancel();
  await second.resign();
  log('leader after both resign', await election.leader());
}

async function namespaces() {
  const ns = client.namespace('ns/');
  await ns.put('a').value('1');
  await ns.put('b').value('2');
  log('namespaced keys', await ns.getAll().keys());
  log('seen from the root', await client.get('ns/a').string());
  log('namespaced txn', (await ns.if('a', 'Value', '==', '1').then(ns.put('c').value('3')).commit()).succeeded);
  log('root keys under ns/', await client.getAll().prefix('ns/').keys());
  log('namespaced delete', Number((await ns.delete().all().exec()).deleted));
}

async function auth() {
  await client.role('root').create();
  await client.user('root').create('rootpw');
  await client.user('root').addRole('root');
  await client.role('reader').create();
  await client.role('reader').grant({ permission: 'Read', range: client.range({ prefix: 'pub/' }) });
  await client.user('alice').create('alicepw');
  await client.user('alice').addRole('reader');
  await client.put('pub/x').value('1');
  log('roles', (await client.getRoles()).map((r) => r.name));
  log('users', (await client.getUsers()).map((u) => u.name));
  log('alice roles', (await client.user('alice').roles()).map((r) => r.name));
  log('reader permissions', (await client.role('reader').permissions()).map((p) => [p.permission, p.range.start.toString(), p.range.end.toString()]));
  await client.auth.authEnable();
  const alice = new Etcd3({ hosts, auth: { username: 'alice', password: 'alicepw' } });
  log('alice reads pub/x', await outcome(alice.get('pub/x').string()));
  log('alice writes pub/x', await outcome(alice.put('pub/x').value('2').exec().then(() => 'put')));
  log('alice reads a', await outcome(alice.get('a').string()));
  alice.close();
  const wrong = new Etcd3({ hosts, auth: { username: 'alice', password: 'nope' } });
  log('wrong password', await outcome(wrong.get('pub/x').string()));
  wrong.close();
  log('no credentials', await outcome(client.get('pub/x').string()));
  const root = new Etcd3({ hosts, auth: { username: 'root', password: 'rootpw' } });
  await root.auth.authDisable();
  root.close();
  log('after disable', await client.get('pub/x').string());
  await client.user('alice').delete();
  await client.role('reader').delete();
  log('users left', (await client.getUsers()).map((u) => u.name));
}

const steps = { kv, txn, watch, leases, locks, elections, namespaces, auth };
for (const [name, step] of Object.entries(steps)) {
  try {
    await step();
  } catch (e) {
    log(`${name} failed`, `${e.constructor.name}: ${e.message}`);
  }
}
client.close();
console.log(lines.join('\n'));
process.exit(0);
