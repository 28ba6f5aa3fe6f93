// The cluster from JavaScript (issue 12): connectCluster, leases, the registerSocket gate, lost
// leases and takeovers, the mirror and the fleet view, bad servers. One process here (the
// cluster is process-wide); a second node is a real child process (fixtures/cluster-peer.mjs).
// A real redis-server on a free loopback port, started and stopped by the tests.

import { describe, test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

import { registry, sleep, until, untilStatus, wsClosed } from './support/harness.mjs'
import { redisSkip, startRedis, freePort } from './support/redis.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { BUILDS, loadBaileys, makeTestSocket, recordUpdates, endSocket } from './support/baileys.mjs'

const {
  connectCluster, registerSocket, unregisterSocket, clearAll, getSocket, getSessionState,
  updateSessionState, onStateChange, createSocketWrapper, superviseSession
} = registry

const PEER = fileURLToPath(new URL('./fixtures/cluster-peer.mjs', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const T = 30000

const unhandled = []
process.on('unhandledRejection', (e) => unhandled.push(e))

let prefixes = 0
/** Options for a node of this process: a fresh key prefix per test, short timings. */
const opts = (url, extra = {}) => ({ url, nodeId: 'here', prefix: `t${++prefixes}`, leaseMs: 1500, opTimeoutMs: 300, dataLossGraceMs: 0, ...extra })

/** Options for a peer node on the same cluster as this process's latest connection. */
const peerOpts = (url, nodeId) => ({ url, nodeId, prefix: `t${prefixes}`, leaseMs: 1500, opTimeoutMs: 300, dataLossGraceMs: 0 })

/** Polls the async `check` until it gives a truthy value, which is returned. */
async function eventually (check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** A second node in its own process. */
function startPeer () {
  const child = spawn(process.execPath, [PEER], { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = new Map()
  let seq = 0
  createInterface({ input: child.stdout }).on('line', (line) => {
    const { seq, value, error } = JSON.parse(line)
    const w = waiting.get(seq)
    waiting.delete(seq)
    if (error) w.reject(Object.assign(new Error(error.message), error))
    else w.resolve(value)
  })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  return {
    call (cmd, args = {}) {
      return new Promise((resolve, reject) => {
        waiting.set(++seq, { resolve, reject })
        child.stdin.write(JSON.stringify({ seq, cmd, args }) + '\n')
      })
    },
    async stop () {
      child.stdin.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    }
  }
}

/** Rejection of `promise`, which must reject. */
async function rejection (promise) {
  try {
    await promise
  } catch (e) {
    return e
  }
  assert.fail('expected a rejection')
}

describe('cluster', { skip: redisSkip }, () => {
  let redis
  let baileys
  let server
  let cluster = null
  const peers = []

  const peer = () => {
    const p = startPeer()
    peers.push(p)
    return p
  }
  const connect = async (extra) => {
    cluster = await connectCluster(opts(redis.url, extra))
    return cluster
  }
  const socket = (id, mode = 'open') => makeTestSocket({ baileys, url: server.url(mode, { id }) })

  before(async () => {
    redis = await startRedis()
    baileys = await loadBaileys('7.0.0-rc14')
    server = await startWaServer({ baileys })
  })
  afterEach(async () => {
    if (cluster !== null) await cluster.close().catch(() => {})
    cluster = null
    clearAll()
    await Promise.all(peers.splice(0).map((p) => p.stop()))
  })
  after(async () => {
    await server?.close()
    await redis?.stop()
    assert.deepEqual(unhandled, [], 'no unhandled rejection')
  })

  test('connect, claim, holds, release, close; one cluster per process', { timeout: T }, async () => {
    const c = await connect()
    assert.equal(c.nodeId, 'here')
    assert.equal(c.holds('s1'), false)
    const lease = await c.claim('s1')
    assert.equal(lease.sessionId, 's1')
    assert.equal(lease.nodeId, 'here')
    assert.match(lease.token, /^[1-9]\d*$/)
    assert.equal(c.holds('s1'), true)
    assert.deepEqual(await c.claim('s1'), lease, 'claiming a held session again changes nothing')
    const placed = await c.whereIs('s1')
    assert.equal(placed.nodeId, 'here')
    assert.equal(placed.token, lease.token)
    assert.ok(placed.leaseTtlMs > 0 && placed.leaseTtlMs <= 1500, `${placed.leaseTtlMs}`)
    assert.equal(placed.state, null, 'nothing registered: no state mirrored')

    const again = await rejection(connectCluster(opts(redis.url)))
    assert.equal(again.code, 'ERR_CLUSTER_ALREADY_CONNECTED')

    assert.equal(await c.release('s1'), true)
    assert.equal(c.holds('s1'), false)
    assert.equal(await c.whereIs('s1'), null)
    assert.equal((await rejection(c.release('s1'))).code, 'ERR_CLUSTER_NOT_HELD')
    const next = await c.claim('s1')
    assert.ok(BigInt(next.token) > BigInt(lease.token), 'a new owner gets a larger fencing token')

    await c.close()
    assert.equal(c.close(), c.close(), 'close returns the same promise')
    assert.equal(c.holds('s1'), false)
    assert.equal((await rejection(c.claim('s2'))).code, 'ERR_CLUSTER_CLOSED')
    assert.equal((await rejection(c.whereIs('s2'))).code, 'ERR_CLUSTER_CLOSED')
    assert.throws(() => c.onStateChange(() => {}), { code: 'ERR_CLUSTER_CLOSED' })
    cluster = null
    // Closed: the leases are gone, and a new connection may be made.
    const d = await connect({ nodeId: 'later', prefix: `t${prefixes}` })
    assert.equal(await d.whereIs('s1'), null)
  })

  test('ERR_CLUSTER_HELD names the owner; waitMs times out; a release lets the waiter in', { timeout: T }, async () => {
    const c = await connect()
    const p = peer()
    await p.call('connect', peerOpts(redis.url, 'peer'))
    await p.call('claim', { id: 'h1' })
    const held = await rejection(c.claim('h1'))
    assert.equal(held.code, 'ERR_CLUSTER_HELD')
    assert.equal(held.owner, 'peer')
    assert.match(held.message, /h1.*peer/)
    const late = await rejection(c.claim('h1', { waitMs: 200 }))
    assert.equal(late.code, 'ERR_CLUSTER_CLAIM_TIMEOUT')
    assert.equal(late.owner, 'peer')
    assert.equal((await c.whereIs('h1')).nodeId, 'peer')
    const waiting = c.claim('h1', { waitMs: 5000 })
    await sleep(100)
    assert.equal(await p.call('release', { id: 'h1' }), true)
    assert.equal((await waiting).nodeId, 'here')
    assert.equal(await p.call('holds', { id: 'h1' }), false)
  })

  test('registerSocket refuses an id not held, accepts a held one; unregisterSocket and clearAll release', { timeout: T }, async () => {
    const c = await connect()
    const refused = socket('g1')
    try {
      assert.throws(() => registerSocket('g1', refused), { code: 'ERR_CLUSTER_NOT_HELD', message: /g1/ })
      assert.equal(getSocket('g1'), null)
      assert.equal(getSessionState('g1'), null)
    } finally {
      await endSocket(refused)
    }

    await c.claim('g1')
    const sock = socket('g1')
    registerSocket('g1', sock)
    const open = await untilStatus('g1', 'open')
    assert.equal(open.isConnected, true)
    // The mirror: the state reaches Redis, with the bot's own keys.
    updateSessionState('g1', { plan: 'pro' })
    const mirrored = await eventually(async () => (await c.whereIs('g1'))?.state?.plan === 'pro', 'the mirrored state', 5000)
    assert.ok(mirrored)
    const placed = await c.whereIs('g1')
    assert.equal(placed.state.status, 'open')
    assert.equal(placed.state.isConnected, true)
    assert.equal(typeof placed.updatedAt, 'number')
    const stats = await c.getStats()
    assert.equal(stats.totalSessions, 1)
    assert.deepEqual(stats.connectedSessions, ['g1'])
    assert.equal(stats.activeSessions[0].nodeId, 'here')
    assert.equal(stats.activeSessions[0].status, 'open')
    assert.equal(stats.byStatus.open, 1)
    assert.equal(stats.sessions[0].plan, 'pro')
    assert.deepEqual(stats.nodes.map((n) => [n.nodeId, n.sessions, n.connected]), [['here', 1, 1]])

    assert.equal(unregisterSocket('g1'), true)
    assert.equal(c.holds('g1'), false, 'released here at once')
    assert.throws(() => registerSocket('g1', {}), { code: 'ERR_CLUSTER_NOT_HELD' })
    await eventually(async () => (await c.whereIs('g1')) === null, 'the lease to leave Redis')
    await until(() => wsClosed(sock), 'the socket to end')

    await c.claim('g2')
    await c.claim('g3')
    registerSocket('g2', { end () {} }, { track: false })
    registerSocket('g3', { end () {} }, { track: false })
    clearAll()
    assert.equal(c.holds('g2') || c.holds('g3'), false)
    await eventually(async () => (await c.getStats()).nodes[0].sessions === 0, 'the leases to leave the view')
  })

  test('the gate holds in worker threads and before createSocketWrapper makes a socket', { timeout: T }, async (t) => {
    const c = await connect()
    // Not a Baileys socket: the worker only needs something whose end() it can report.
    const worker = new Worker(`
      const { parentPort } = require('node:worker_threads')
      const r = require(${JSON.stringify(ROOT)})
      parentPort.on('message', (m) => {
        try {
          if (m === 'register') r.registerSocket('w1', { end () { parentPort.postMessage({ ended: true }) } }, { track: false })
          if (m === 'unregister') r.unregisterSocket('w1')
          parentPort.postMessage({ ok: m, has: r.hasSocket('w1') })
        } catch (e) {
          parentPort.postMessage({ code: e.code })
        }
      })`, { eval: true })
    t.after(() => worker.terminate())
    const replies = []
    worker.on('message', (m) => replies.push(m))
    const ask = async (m) => {
      const n = replies.length
      worker.postMessage(m)
      // Its answer (an `ended` report may come first).
      return until(() => replies.slice(n).find((r) => !r.ended), `the worker's answer to ${m}`)
    }
    assert.deepEqual(await ask('register'), { code: 'ERR_CLUSTER_NOT_HELD' })
    await c.claim('w1')
    assert.deepEqual(await ask('register'), { ok: 'register', has: true })
    assert.throws(() => registerSocket('w1', {}), { code: 'ERR_SESSION_OWNED_BY_OTHER_THREAD' })
    // release ends the socket in the thread that holds it.
    assert.equal(await c.release('w1'), true)
    await until(() => replies.some((m) => m.ended), 'the worker to end its socket')
    assert.equal(c.holds('w1'), false)
    // unregisterSocket in a worker releases too.
    await c.claim('w1')
    assert.deepEqual(await ask('register'), { ok: 'register', has: true })
    assert.deepEqual(await ask('unregister'), { ok: 'unregister', has: false })
    assert.equal(c.holds('w1'), false)
    await eventually(async () => (await c.whereIs('w1')) === null, 'the lease to leave Redis')

    let made = 0
    const create = createSocketWrapper(() => { made++; return { end () {} } })
    assert.throws(() => create({ sessionId: 'wr' }), { code: 'ERR_CLUSTER_NOT_HELD' })
    assert.equal(made, 0, 'no socket made for a session not held')
    await c.claim('wr')
    create({ sessionId: 'wr' })
    assert.equal(made, 1)
  })

  test('release ends the local socket silently first; close ends them all and opens the gate', { timeout: T }, async () => {
    const c = await connect()
    await c.claim('r1')
    await c.claim('r2')
    const a = socket('r1')
    const b = socket('r2')
    registerSocket('r1', a)
    registerSocket('r2', b)
    await untilStatus('r1', 'open')
    await untilStatus('r2', 'open')
    const heardA = recordUpdates(a)
    const heardB = recordUpdates(b)
    const released = c.release('r1')
    assert.equal(getSocket('r1'), null, 'unregistered before release resolves')
    assert.equal(await released, true)
    await until(() => wsClosed(a), 'r1 to end')
    await c.close()
    cluster = null
    assert.equal(getSocket('r2'), null)
    await until(() => wsClosed(b), 'r2 to end')
    assert.deepEqual([heardA, heardB].map((h) => h.updates.filter((u) => u.connection !== undefined)), [[], []], 'the bot heard no close')
    const free = { end () {} }
    registerSocket('r3', free, { track: false })
    assert.equal(getSocket('r3'), free, 'no cluster: no gate')
  })

  test('lease lost (Redis paused longer than leaseMs): socket ended silently, status leaseLost, events', { timeout: T }, async () => {
    const c = await connect()
    const local = []
    const offLocal = onStateChange((e) => local.push(e))
    const fleet = []
    c.onStateChange((e) => fleet.push(e))
    const lease = await c.claim('l1')
    const sock = socket('l1')
    registerSocket('l1', sock)
    await untilStatus('l1', 'open')
    const heard = recordUpdates(sock)
    const stoppedAt = Date.now()
    redis.pause()
    try {
      const lost = await untilStatus('l1', 'leaseLost', 4000)
      // Lost a margin before the lease could expire in Redis (1500 ms after the last renewal).
      assert.ok(Date.now() - stoppedAt < 1500, `lost after ${Date.now() - stoppedAt} ms`)
      assert.equal(lost.isConnected, false)
      assert.match(lost.error, /lease/)
      assert.equal(c.holds('l1'), false)
      await until(() => wsClosed(sock), 'the socket to end')
      const event = await until(() => local.find((e) => e.type === 'leaseLost'), 'the local leaseLost event')
      assert.equal(event.sessionId, 'l1')
      assert.equal(event.reason, 'unreachable')
      assert.equal(event.token, lease.token)
      assert.equal(event.previous.status, 'open')
      assert.equal(event.current.status, 'leaseLost')
      const f = await until(() => fleet.find((e) => e.type === 'leaseLost'), 'the cluster leaseLost event')
      assert.deepEqual([f.sessionId, f.nodeId, f.reason, f.token], ['l1', 'here', 'unreachable', lease.token])
      assert.equal(getSocket('l1'), sock, 'the session stays registered, with its status')
      assert.throws(() => registerSocket('l1', {}), { code: 'ERR_CLUSTER_NOT_HELD' })
    } finally {
      redis.resume()
      offLocal()
    }
    await sleep(50)
    assert.deepEqual(heard.updates.filter((u) => u.connection !== undefined), [], 'the bot heard no close')
    assert.equal(getSessionState('l1').status, 'leaseLost', 'the ended socket changed nothing after')
    // After Redis answers again, the lease is claimed anew and a new socket goes in.
    await eventually(async () => (await c.claim('l1').catch(() => null)) !== null, 'a new claim', 5000)
    const next = socket('l1')
    registerSocket('l1', next)
    await untilStatus('l1', 'open')
    assert.equal(unregisterSocket('l1'), true)
  })

  test('a supervised session whose lease is lost stops being supervised: no new socket, reason leaseLost', { timeout: T }, async () => {
    const c = await connect()
    await c.claim('sl1')
    let made = 0
    const handle = superviseSession('sl1', () => { made++; return socket('sl1') })
    await untilStatus('sl1', 'open')
    redis.pause()
    try {
      await untilStatus('sl1', 'leaseLost', 4000)
    } finally {
      redis.resume()
    }
    const stopped = await until(() => handle.supervision.state === 'stopped' && handle.supervision, 'the supervision to stop')
    assert.equal(stopped.reason, 'leaseLost')
    assert.equal(getSessionState('sl1').supervision.state, 'stopped')
    // Longer than any backoff of the default policy's first attempt: nothing reconnects.
    await sleep(1500)
    assert.equal(made, 1, 'makeSocket was called once')
    assert.equal(unregisterSocket('sl1'), true)
  })

  test('Redis restarted without its data: the lease is re-asserted and the session keeps running', { timeout: T }, async (t) => {
    const own = await startRedis()
    t.after(() => own.stop())
    // The grace period on: sessions Redis forgot stay claimable only by their old owner for a lease.
    const c = await connect({ url: own.url, dataLossGraceMs: undefined })
    const lease = await eventually(() => c.claim('rs1').catch((e) => e.code === 'ERR_CLUSTER_RECOVERING' ? null : Promise.reject(e)), 'the first grace period to pass')
    const sock = socket('rs1')
    registerSocket('rs1', sock)
    await untilStatus('rs1', 'open')
    await own.restart()
    // The next renewal (every leaseMs / 3) puts it back with the same token.
    const back = await eventually(() => c.whereIs('rs1').catch(() => null), 'the lease to be re-asserted', 5000)
    assert.deepEqual([back.nodeId, back.token], ['here', lease.token])
    // The mirrored state Redis lost comes back with the re-assert, without a change.
    const mirrored = await eventually(async () => (await c.whereIs('rs1'))?.state, 'the state to be mirrored again', 3000)
    assert.equal(mirrored.status, 'open')
    assert.equal(c.holds('rs1'), true)
    assert.equal(getSessionState('rs1').status, 'open')
    assert.equal(wsClosed(sock), false)
    // A listener that throws is reported, never thrown into the process.
    const warned = new Promise((resolve) => process.once('warning', resolve))
    c.onStateChange(() => { throw new Error('listener exploded') })
    updateSessionState('rs1', { plan: 'x' })
    assert.match((await warned).message, /cluster\.onStateChange listener threw: listener exploded/)
  })

  for (const build of BUILDS) {
    test(`takeover from another process (Baileys ${build.key}): the socket ends silently, then the lease is released`, { timeout: T }, async () => {
      const b = build.key === '7.0.0-rc14' ? baileys : await loadBaileys(build.key)
      const wa = b === baileys ? server : await startWaServer({ baileys: b })
      try {
        const c = await connect()
        const fleet = []
        c.onStateChange((e) => fleet.push(e))
        const lease = await c.claim('k1')
        const sock = makeTestSocket({ baileys: b, url: wa.url('open', { id: 'k1' }) })
        registerSocket('k1', sock)
        await untilStatus('k1', 'open')
        const heard = recordUpdates(sock)
        const p = peer()
        await p.call('connect', peerOpts(redis.url, 'taker'))
        const taken = await p.call('claim', { id: 'k1', options: { takeover: true, waitMs: 5000 } })
        assert.equal(taken.nodeId, 'taker')
        assert.ok(BigInt(taken.token) > BigInt(lease.token))
        assert.equal(wsClosed(sock) || await until(() => wsClosed(sock), 'the socket to end'), true)
        const s = getSessionState('k1')
        assert.equal(s.status, 'leaseLost')
        assert.equal(s.isConnected, false)
        const lost = fleet.find((e) => e.type === 'leaseLost')
        assert.deepEqual([lost.reason, lost.by, lost.token], ['takeover', 'taker', lease.token])
        assert.ok(fleet.some((e) => e.type === 'takeoverRequested' && e.by === 'taker'))
        assert.equal(c.holds('k1'), false)
        assert.equal((await c.whereIs('k1')).nodeId, 'taker')
        await sleep(20)
        assert.deepEqual(heard.updates.filter((u) => u.connection !== undefined), [])
      } finally {
        if (wa !== server) {
          clearAll()
          await wa.close()
        }
      }
    })
  }

  test('a patched Promise.prototype.then cannot leave a cluster call\'s rejection unhandled', { timeout: T }, async () => {
    // Found by the fuzz test: claim, release, whereIs and getStats returned their native
    // promise from an async method, which looks up `then`; a patched `then` that throws left
    // that promise without a handler, and its rejection (here ERR_CLUSTER_CLOSED) unhandled.
    const c = await connect()
    await c.claim('held')
    await c.close()
    cluster = null
    const before = unhandled.length
    const mine = new Error('patched then')
    const calls = { claim: () => c.claim('s1'), release: () => c.release('held'), whereIs: () => c.whereIs('s1'), getStats: () => c.getStats() }
    for (const [name, call] of Object.entries(calls)) {
      const then = Promise.prototype.then
      let p
      // eslint-disable-next-line no-extend-native
      Promise.prototype.then = function () { throw mine }
      try {
        p = call()
      } catch (e) {
        p = Promise.reject(e)
      } finally {
        // eslint-disable-next-line no-extend-native
        Promise.prototype.then = then
      }
      const e = await rejection(p)
      assert.ok(e === mine || e.code === 'ERR_CLUSTER_CLOSED' || e.code === 'ERR_CLUSTER_NOT_HELD', `${name}: ${e}`)
    }
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(unhandled.slice(before).map(String), [], 'no unhandled rejection')
  })

  test('bad options and bad servers: stable codes, quickly, nothing left pending', { timeout: T }, async () => {
    for (const bad of [undefined, null, 'redis://x', {}, { url: '' }, { url: 1 }]) {
      const e = await rejection(connectCluster(bad))
      assert.equal(e.code, 'ERR_CLUSTER_OPTIONS')
      assert.ok(e instanceof TypeError)
    }
    for (const extra of [{ nodeId: 5 }, { leaseMs: -1 }, { leaseMs: 1.5 }, { leaseMs: '1000' }, { prefix: {} }]) {
      assert.equal((await rejection(connectCluster({ url: redis.url, ...extra }))).code, 'ERR_CLUSTER_OPTIONS')
    }
    for (const extra of [{ nodeId: '' }, { nodeId: 'a{b}' }, { leaseMs: 10 }, { url: 'http://127.0.0.1:1' }, { url: 'not a url' }]) {
      assert.equal((await rejection(connectCluster({ url: redis.url, ...extra }))).code, 'ERR_CLUSTER_OPTIONS', JSON.stringify(extra))
    }
    const closed = `redis://127.0.0.1:${await freePort()}`
    const refused = await rejection(connectCluster(opts(closed)))
    assert.equal(refused.code, 'ERR_CLUSTER_CONNECT')

    // Not Redis: a server that answers like a web server, and one that never answers.
    const sockets = new Set()
    const http = createServer((s) => {
      sockets.add(s)
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'))
    })
    const silent = createServer((s) => sockets.add(s))
    await Promise.all([http, silent].map((srv) => new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))))
    try {
      for (const srv of [http, silent]) {
        const started = Date.now()
        const e = await rejection(connectCluster(opts(`redis://127.0.0.1:${srv.address().port}`)))
        assert.equal(e.code, 'ERR_CLUSTER_CONNECT', e.message)
        assert.ok(Date.now() - started < 3000)
      }
    } finally {
      for (const s of sockets) s.destroy()
      http.close()
      silent.close()
    }

    // A wrong password, which the message does not echo.
    const guarded = await startRedis({ args: ['--requirepass', 's3cret-pw'] })
    try {
      for (const url of [`redis://:not-it@127.0.0.1:${guarded.port}`, guarded.url]) {
        const e = await rejection(connectCluster(opts(url)))
        assert.equal(e.code, 'ERR_CLUSTER_CONNECT')
        assert.doesNotMatch(e.message, /not-it|s3cret/)
      }
      const ok = await connectCluster(opts(`redis://:s3cret-pw@127.0.0.1:${guarded.port}`))
      await ok.close()
    } finally {
      await guarded.stop()
    }
    // After all those failures, a good connection still works.
    await connect()
  })

  test('Redis going away mid-claim: ERR_CLUSTER_UNAVAILABLE, and it works again after', { timeout: T }, async () => {
    const c = await connect()
    redis.pause()
    let e
    try {
      const started = Date.now()
      e = await rejection(c.claim('u1'))
      assert.ok(Date.now() - started < 3000)
    } finally {
      redis.resume()
    }
    assert.equal(e.code, 'ERR_CLUSTER_UNAVAILABLE')
    await eventually(async () => (await c.claim('u1').catch(() => null)) !== null, 'a claim after Redis is back', 5000)

    // unregisterSocket while Redis does not answer: done here at once, the failed release in
    // Redis is an event (the lease expires there by itself).
    const events = []
    c.onStateChange((ev) => events.push(ev))
    registerSocket('u1', { end () {} }, { track: false })
    redis.pause()
    try {
      assert.equal(unregisterSocket('u1'), true)
      assert.equal(c.holds('u1'), false)
      const failed = await until(() => events.find((ev) => ev.type === 'releaseFailed'), 'the releaseFailed event', 5000)
      assert.deepEqual([failed.sessionId, failed.nodeId, failed.code], ['u1', 'here', 'ERR_CLUSTER_UNAVAILABLE'])
    } finally {
      redis.resume()
    }

    // Killed for good while a claim is out: the claim rejects, close still ends.
    const own = await startRedis()
    const d = await (async () => {
      await c.close()
      cluster = null
      return connect({ url: own.url })
    })()
    own.kill()
    const gone = await rejection(d.claim('u2'))
    assert.equal(gone.code, 'ERR_CLUSTER_UNAVAILABLE')
    assert.equal((await rejection(d.close())).code, 'ERR_CLUSTER_UNAVAILABLE')
    cluster = null
    await own.stop()
  })

  test('a process with a connected cluster (and one whose Redis stopped answering) can exit', { timeout: T }, async () => {
    const script = (url, pause) => `
      const r = require(${JSON.stringify(ROOT)})
      r.connectCluster({ url: ${JSON.stringify(url)}, nodeId: 'exiting', prefix: 'exit${++prefixes}', leaseMs: 1500, opTimeoutMs: 300, dataLossGraceMs: 0 })
        .then(async (c) => {
          await c.claim('e1')
          r.registerSocket('e1', { end () {} }, { track: false })
          c.onStateChange(() => {})
          ${pause ? "process.send('claimed')" : ''}
        })
        .catch((e) => { console.error(e); process.exitCode = 1 })`
    for (const pause of [false, true]) {
      const child = spawn(process.execPath, ['-e', script(redis.url, pause)], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] })
      let stderr = ''
      child.stderr.on('data', (d) => { stderr += d })
      if (pause) child.once('message', () => redis.pause())
      const code = await new Promise((resolve) => {
        const t = setTimeout(() => { child.kill('SIGKILL'); resolve('hung') }, 10000)
        child.on('close', (c) => { clearTimeout(t); resolve(c) })
      })
      redis.resume()
      assert.equal(code, 0, `${pause ? 'with Redis paused' : 'with Redis up'}\n${stderr}`)
      // The teardown releases the session's lease after the async runtime may be gone: that
      // must not panic (it did, and the rest of the teardown was skipped).
      assert.doesNotMatch(stderr, /panicked/, stderr)
    }
  })
})
