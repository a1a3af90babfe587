// Watches the prefix "r/" with the npm `etcd3` client and prints every put
// as "put KEY MOD_REVISION" until it sees "r/done" (tests/it/node_client.rs
// kills and restarts members meanwhile: the client must resume the watch
// on another member from where it was, losing and repeating nothing).
//
//   node watch_resume.mjs http://127.0.0.1:2379,http://...
import { Etcd3 } from 'etcd3';

const hosts = (process.argv[2] || '').split(',').filter(Boolean);
if (hosts.length === 0) {
  console.error('usage: node watch_resume.mjs ENDPOINTS');
  process.exit(2);
}
const client = new Etcd3({ hosts, dialTimeout: 2000 });
const watcher = await client.watch().prefix('r/').create();
watcher.on('disconnected', () => console.log('disconnected'));
watcher.on('connected', () => console.log('connected'));
watcher.on('error', (e) => console.log(`error ${e.constructor.name}: ${e.message}`));
watcher.on('put', (kv) => {
  const key = kv.key.toString();
  console.log(`put ${key} ${kv.mod_revision}`);
  if (key === 'r/done') {
    process.exit(0);
  }
});
console.log('watching');
