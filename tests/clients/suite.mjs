// Today's Node.js clients against redis-sidecar, each scenario of issue 9.
//
//   node suite.mjs CLIENT MODE PORT [PASSWORD_PORT PASSWORD]
//
// CLIENT: ioredis | redis (node-redis); MODE: default (the client's own
// defaults) | resp2 | resp3 (forced). PORT: a sidecar without a password;
// PASSWORD_PORT: one that wants PASSWORD. Prints one line per scenario,
// "ok NAME" or "FAIL NAME: why", and exits 1 if any failed. The reconnect
// scenario prints "READY" and waits for a line on stdin (the test restarts
// the sidecar meanwhile).
import { createInterface } from 'node:readline';
import Redis from 'ioredis';
import { createClient, RESP_TYPES } from 'redis';

const [client, mode, port, pwPort, password] = process.argv.slice(2);
const HOST = '127.0.0.1';
const proto = mode === 'resp2' ? 2 : mode === 'resp3' ? 3 : undefined;

function assert(cond, what) {
  if (!cond) throw new Error(what);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// ioredis names pipeline commands by its method names
const lower = (cmds) => cmds.map(([name, ...args]) => [name.toLowerCase(), ...args]);

// One interface over both libraries; every option not named here stays
// the library's default.
const adapters = {
  ioredis: {
    async open(extra = {}) {
      const opts = { host: HOST, port: Number(extra.port ?? port), lazyConnect: true,
                     maxRetriesPerRequest: 3 };
      if (proto) opts.protocol = proto;
      if (extra.name) opts.connectionName = extra.name;
      if (extra.password !== undefined) opts.password = extra.password;
      if (extra.db !== undefined) opts.db = extra.db;
      if (extra.noRetry) {
        opts.retryStrategy = () => null;
        opts.maxRetriesPerRequest = 0;
      }
      const r = new Redis(opts);
      const errors = [];
      r.on('error', (e) => errors.push(e.message));
      try {
        await r.connect();
      } catch (e) {
        throw new Error([...errors, e.message].join('; '));
      }
      return {
        raw: r,
        cmd: (...a) => r.call(...a),
        cmdBuf: (...a) => r.callBuffer(...a),
        pipeline: async (cmds) => (await r.pipeline(lower(cmds)).exec()).map(([e, v]) => e ?? v),
        multi: async (cmds) => {
          const res = await r.multi(lower(cmds)).exec();
          return res === null ? null : res.map(([e, v]) => e ?? v);
        },
        watch: (k) => r.watch(k),
        evalsha: (sha, keys, args) => r.evalsha(sha, keys.length, ...keys, ...args),
        psubscribe: async (pattern, onMessage) => {
          r.on('pmessage', (p, ch, msg) => onMessage(String(ch), String(msg)));
          await r.psubscribe(pattern);
        },
        close: () => r.quit().catch(() => r.disconnect()),
        kill: () => r.disconnect(),
      };
    },
  },
  redis: {
    async open(extra = {}) {
      const opts = { socket: { host: HOST, port: Number(extra.port ?? port) } };
      if (proto) opts.RESP = proto;
      if (extra.name) opts.name = extra.name;
      if (extra.password !== undefined) opts.password = extra.password;
      if (extra.db !== undefined) opts.database = extra.db;
      if (extra.noRetry) opts.socket.reconnectStrategy = false;
      const r = createClient(opts);
      r.on('error', () => {});
      await r.connect();
      const rb = r.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
      return {
        raw: r,
        cmd: (...a) => r.sendCommand(a.map((x) => (Buffer.isBuffer(x) ? x : String(x)))),
        cmdBuf: (...a) => rb.sendCommand(a),
        pipeline: async (cmds) => {
          const m = r.multi();
          for (const c of cmds) m.addCommand(c.map(String));
          return m.execAsPipeline();
        },
        multi: async (cmds) => {
          const m = r.multi();
          for (const c of cmds) m.addCommand(c.map(String));
          try {
            return await m.exec();
          } catch (e) {
            if (e.name === 'WatchError' || /WATCH|aborted/i.test(e.message)) return null;
            throw e;
          }
        },
        watch: (k) => r.watch(k),
        evalsha: (sha, keys, args) => r.evalSha(sha, { keys, arguments: args }),
        psubscribe: (pattern, onMessage) =>
          r.pSubscribe(pattern, (msg, ch) => onMessage(String(ch), String(msg))),
        close: () => r.close ? r.close() : r.quit(),
        kill: () => r.destroy ? r.destroy() : r.disconnect(),
      };
    },
  },
};
const A = adapters[client];
const tag = `${client}-${mode}`;

const scenarios = {
  async connect_set_get() {
    const c = await A.open();
    assert((await c.cmd('SET', `${tag}:k`, 'v')) === 'OK', 'SET');
    assert((await c.cmd('GET', `${tag}:k`)) === 'v', 'GET');
    await c.close();
  },
  async protocol() {
    // the defaults of both libraries speak RESP3 (HELLO 3); resp2 forces 2
    const c = await A.open();
    const info = String(await c.cmd('CLIENT', 'INFO'));
    const want = proto === 2 ? 'resp=2' : 'resp=3';
    assert(info.includes(want), `CLIENT INFO: ${info.trim()}`);
    await c.close();
  },
  async connection_name() {
    const c = await A.open({ name: `app-${tag}` });
    assert((await c.cmd('CLIENT', 'GETNAME')) === `app-${tag}`, 'CLIENT GETNAME');
    await c.close();
  },
  async pipeline_1000_mixed() {
    const c = await A.open();
    const cmds = [];
    for (let i = 0; i < 250; i++) {
      cmds.push(['SET', `${tag}:p${i}`, String(i)], ['INCR', `${tag}:pc`],
                ['GET', `${tag}:p${i}`], ['HSET', `${tag}:ph`, `f${i}`, String(i)]);
    }
    const res = await c.pipeline(cmds);
    assert(res.length === 1000, `${res.length} replies`);
    for (let i = 0; i < 250; i++) {
      assert(res[4 * i] === 'OK', `SET ${i}: ${res[4 * i]}`);
      assert(Number(res[4 * i + 1]) === i + 1, `INCR ${i}: ${res[4 * i + 1]}`);
      assert(String(res[4 * i + 2]) === String(i), `GET ${i}: ${res[4 * i + 2]}`);
    }
    await c.close();
  },
  async multi_exec_and_watch() {
    const c = await A.open(), other = await A.open();
    const res = await c.multi([['SET', `${tag}:m`, '1'], ['INCR', `${tag}:m`]]);
    assert(res && res[0] === 'OK' && Number(res[1]) === 2, `EXEC: ${JSON.stringify(res)}`);
    await c.watch(`${tag}:w`);
    await other.cmd('SET', `${tag}:w`, 'theirs');
    const aborted = await c.multi([['SET', `${tag}:w`, 'mine']]);
    assert(aborted === null, `EXEC after a WATCHed change ran: ${JSON.stringify(aborted)}`);
    assert((await other.cmd('GET', `${tag}:w`)) === 'theirs', 'WATCH conflict kept theirs');
    await c.close();
    await other.close();
  },
  async lua_eval_and_evalsha() {
    const c = await A.open();
    const script = "return redis.call('SET', KEYS[1], ARGV[1])";
    const sha = await c.cmd('SCRIPT', 'LOAD', script);
    await c.cmd('SCRIPT', 'FLUSH');
    let noscript = false;
    try {
      await c.evalsha(sha, [`${tag}:l`], ['x']);
    } catch (e) {
      noscript = /NOSCRIPT/.test(e.message);
    }
    assert(noscript, 'EVALSHA of a flushed script gives NOSCRIPT');
    assert((await c.cmd('EVAL', script, '1', `${tag}:l`, 'y')) === 'OK', 'EVAL');
    assert((await c.evalsha(sha, [`${tag}:l`], ['z'])) === 'OK', 'EVALSHA after EVAL');
    assert((await c.cmd('GET', `${tag}:l`)) === 'z', 'value set by the script');
    await c.close();
  },
  async lock_set_nx_px_compare_and_delete() {
    const c = await A.open(), other = await A.open();
    const key = `${tag}:lock`;
    assert((await c.cmd('SET', key, 'token-a', 'NX', 'PX', '5000')) === 'OK', 'acquire');
    assert((await other.cmd('SET', key, 'token-b', 'NX', 'PX', '5000')) === null,
           'second acquire refused');
    const unlock = "if redis.call('GET', KEYS[1]) == ARGV[1] then " +
                   "return redis.call('DEL', KEYS[1]) else return 0 end";
    assert(Number(await other.cmd('EVAL', unlock, '1', key, 'token-b')) === 0,
           'wrong token does not release');
    assert(Number(await c.cmd('EVAL', unlock, '1', key, 'token-a')) === 1, 'release');
    assert((await other.cmd('SET', key, 'token-b', 'NX', 'PX', '5000')) === 'OK', 'reacquire');
    await c.close();
    await other.close();
  },
  async pubsub_patterns() {
    const sub = await A.open(), pub = await A.open();
    const got = [];
    await sub.psubscribe(`${tag}:ev:*`, (ch, msg) => got.push(`${ch}=${msg}`));
    // RESP3: normal commands on the subscribed connection itself
    const resp3 = proto === 3 || (proto === undefined);
    if (resp3) {
      assert((await sub.cmd('SET', `${tag}:ps`, 'v')) === 'OK', 'SET while subscribed');
      assert((await sub.cmd('GET', `${tag}:ps`)) === 'v', 'GET while subscribed');
    }
    for (let i = 0; i < 3; i++)
      await pub.cmd('PUBLISH', `${tag}:ev:${i}`, `m${i}`);
    for (let t = 0; t < 100 && got.length < 3; t++) await sleep(20);
    assert(got.join(',') === [0, 1, 2].map((i) => `${tag}:ev:${i}=m${i}`).join(','),
           `messages: ${got.join(',')}`);
    sub.kill();
    await pub.close();
  },
  async blpop_does_not_block_others() {
    const c = await A.open(), other = await A.open();
    const started = Date.now();
    const pop = c.cmd('BLPOP', `${tag}:q`, '2');
    await sleep(50);
    let worst = 0;
    for (let i = 0; i < 50; i++) {
      const t = Date.now();
      await other.cmd('GET', `${tag}:k`);
      worst = Math.max(worst, Date.now() - t);
    }
    assert(worst < 200, `a GET took ${worst} ms while BLPOP waited`);
    await other.cmd('RPUSH', `${tag}:q`, 'item');
    const res = await pop;
    assert(res && String(res[1]) === 'item', `BLPOP: ${JSON.stringify(res)}`);
    assert(Date.now() - started < 2000, 'BLPOP returned when pushed');
    await c.close();
    await other.close();
  },
  async select_database() {
    const c = await A.open({ db: 1 }), d0 = await A.open();
    assert((await c.cmd('SET', `${tag}:db`, 'one')) === 'OK', 'SET in db 1');
    assert((await d0.cmd('GET', `${tag}:db`)) === null, 'db 0 does not see db 1');
    assert((await c.cmd('GET', `${tag}:db`)) === 'one', 'db 1 sees it');
    await c.close();
    await d0.close();
  },
  async binary_10mb_and_binary_keys() {
    const c = await A.open();
    const big = Buffer.alloc(10 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff;
    const key = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x24, 0x2a, 0x80]);
    assert(String(await c.cmd('SET', key, big)) === 'OK', 'SET 10 MB');
    const back = await c.cmdBuf('GET', key);
    assert(Buffer.isBuffer(back) && back.equals(big),
           `10 MB value back intact: got ${Buffer.isBuffer(back) ? back.length : typeof back}`);
    await c.close();
  },
  async auth_right_wrong_missing() {
    if (!pwPort) return;
    const ok = await A.open({ port: pwPort, password });
    assert((await ok.cmd('SET', `${tag}:a`, 'v')) === 'OK', 'right password');
    await ok.close();
    let wrong = null;
    try {
      const w = await A.open({ port: pwPort, password: 'wrong', noRetry: true });
      await w.cmd('GET', `${tag}:a`);
      w.kill();
    } catch (e) {
      wrong = e.message;
    }
    assert(wrong && /WRONGPASS|invalid|password/i.test(wrong), `wrong password: ${wrong}`);
    let missing = null;
    try {
      const m = await A.open({ port: pwPort, noRetry: true });
      await m.cmd('GET', `${tag}:a`);
      m.kill();
    } catch (e) {
      missing = e.message;
    }
    assert(missing && /NOAUTH/.test(missing), `missing password: ${missing}`);
  },
};

async function reconnect() {
  const c = await A.open();
  assert((await c.cmd('SET', `${tag}:r`, 'before')) === 'OK', 'SET before restart');
  console.log('READY');
  const rl = createInterface({ input: process.stdin });
  await new Promise((r) => rl.once('line', r));
  rl.close();
  let last;
  for (let i = 0; i < 50; i++) {
    try {
      if ((await c.cmd('GET', `${tag}:r`)) === 'before') {
        await c.close();
        return;
      }
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`no reconnect: ${last}`);
}

const only = process.env.SCENARIO;
let failed = 0;
if (only === 'reconnect') {
  try {
    await reconnect();
    console.log('ok reconnect');
  } catch (e) {
    console.log(`FAIL reconnect: ${e.message}`);
    failed++;
  }
} else {
  for (const [name, fn] of Object.entries(scenarios)) {
    if (only && only !== name) continue;
    try {
      await fn();
      console.log(`ok ${name}`);
    } catch (e) {
      console.log(`FAIL ${name}: ${e.stack || e.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
