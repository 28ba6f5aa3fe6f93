// Supervised sessions (issue 10), measured: `npm run bench:supervise` (about 7 minutes;
// `-- --quick` for a smoke run that judges nothing). Not a test: it prints numbers.
//
// 1. Time from a drop to the session being open again, p50/p99 over 1,000 drops (5 or 10 real
//    Baileys 7.0.0-rc14 sessions on the loopback server, each dropped in turn once open and
//    stable, at staggered moments): with a policy that reconnects at once (what the machinery costs: the close
//    reaching the supervisor, its decision, makeSocket, the handshake and login) and with the
//    default backoff (base 1 s, full jitter: a wait in [0, 1 s) comes first).
// 2. Connect attempts per minute per session under a flapping server (every connection
//    dropped 0-1.5 s after it connects; 50 sessions, __test__/fixtures/supervise-flap-child.mjs),
//    for the spec's policy and for the default backoff, against the policy's bound.
// 3. What supervision costs per session: V8 heap and RSS of 10,000 supervised sessions
//    against 10,000 registered ones (stand-in socket objects: the registry's cost, not
//    Baileys'), and timers: none while a socket is running, one per session while waiting.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

import { startWaServer } from '../__test__/support/wa-server.mjs'
import { loadBaileys, makeTestSocket, makeCreds } from '../__test__/support/baileys.mjs'

const registry = createRequire(import.meta.url)('..')
const { superviseSession, registerSocket, clearAll } = registry

const quick = process.argv.includes('--quick')
// `--only=cost,drop,flap`: some of the three parts.
const onlyArg = process.argv.find((a) => a.startsWith('--only='))
const parts = new Set(onlyArg ? onlyArg.slice(7).split(',') : ['cost', 'drop', 'flap'])
const DROPS = quick ? 100 : 1000
// Few sessions at a time, dropped at staggered moments: the latency of one reconnect, not of
// a queue of handshakes competing for the CPU (2 shared cores here).
const SESSIONS = { immediate: 5, defaultBackoff: 10 }
const FLAP_SECONDS = quick ? 5 : 20
const COST_SESSIONS = quick ? 1000 : 10_000
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function percentile (sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** Drops `DROPS` times in all, over `sessions` supervised sessions; returns the latencies (ms). */
async function dropToOpen (baileys, server, policy, label, sessions) {
  const latencies = []
  const perSession = Math.ceil(DROPS / sessions)
  const handles = []
  await Promise.all(Array.from({ length: sessions }, async (_, i) => {
    const id = `${label}_${i}`
    const creds = makeCreds(baileys)
    let opened = null
    const handle = superviseSession(id, () => {
      const sock = makeTestSocket({ baileys, url: server.url('open', { id }), creds, connectTimeoutMs: 3000, defaultQueryTimeoutMs: 1500 })
      // The bot's own listener: when this socket opens.
      sock.ev.on('connection.update', (u) => { if (u.connection === 'open' && opened) opened(performance.now()) })
      return sock
    }, policy)
    handles.push(handle)
    const nextOpen = () => new Promise((resolve) => { opened = resolve })
    await nextOpen()
    for (let k = 0; k < perSession; k++) {
      // Past stableAfterMs (100 ms): each drop is a first failure.
      await sleep(150 + Math.random() * 150)
      const open = nextOpen()
      const t0 = performance.now()
      server.drop(id)
      latencies.push((await open) - t0)
    }
  }))
  for (const h of handles) h.stop()
  latencies.sort((a, b) => a - b)
  return { drops: latencies.length, p50: +percentile(latencies, 0.5).toFixed(1), p99: +percentile(latencies, 0.99).toFixed(1), max: +latencies[latencies.length - 1].toFixed(1) }
}

/** Expected attempts in `ms` by a session whose every socket fails at once: full jitter waits half the ceiling on average. */
function expectedAttempts (backoff, ms, jitter = true) {
  let t = 0
  let n = 1
  for (let failures = 1; ; failures++) {
    const ceiling = Math.min(backoff.maxMs, backoff.baseMs * backoff.factor ** (failures - 1))
    t += jitter ? ceiling / 2 : ceiling
    if (t > ms) return n
    n++
  }
}

function flap (policy) {
  const child = fileURLToPath(new URL('../__test__/fixtures/supervise-flap-child.mjs', import.meta.url))
  const json = JSON.stringify(policy, (k, v) => v === Infinity ? 'Infinity' : v)
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, '7.0.0-rc14', String(FLAP_SECONDS * 1000), json], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    p.stdout.on('data', (d) => { out += d })
    p.on('exit', (code) => code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`flap child exited with ${code}`)))
  })
}

function heap () {
  for (let i = 0; i < 4; i++) globalThis.gc()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, rss: m.rss }
}

function fakeSocket () {
  return { ev: { on () {}, off () {}, emit () {}, removeAllListeners () {} }, end () {} }
}

function timers () {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

async function cost () {
  const ids = Array.from({ length: COST_SESSIONS }, (_, i) => `cost_${i}`)
  const sockets = ids.map(fakeSocket)
  const base = heap()
  ids.forEach((id, i) => registerSocket(id, sockets[i]))
  const registered = heap()
  clearAll()
  const cleared = heap()
  const timersBefore = timers()
  let handles = ids.map((id, i) => superviseSession(id, () => sockets[i]))
  const supervised = heap()
  const timersRunning = timers() - timersBefore
  clearAll()
  handles = null
  const beforeWaiting = heap()
  // makeSocket fails: each supervisor waits 60 s, with no socket and no session record.
  let failing = ids.map((id) => superviseSession(id, () => { throw new Error('offline') }, { backoff: { baseMs: 60_000, jitter: 'none' } }))
  const timersWaiting = timers() - timersBefore
  const waiting = heap()
  clearAll()
  const timersAfter = timers() - timersBefore
  failing = null
  const per = (a, b) => Math.round((a - b) / COST_SESSIONS)
  return {
    sessions: COST_SESSIONS,
    heapPerSession: {
      registered: per(registered.heap, base.heap),
      supervised: per(supervised.heap, cleared.heap),
      waitingWithoutSocket: per(waiting.heap, beforeWaiting.heap)
    },
    rssPerSession: { registered: per(registered.rss, base.rss), supervised: per(supervised.rss, cleared.rss) },
    timers: { running: timersRunning, waiting: timersWaiting, afterClearAll: timersAfter },
    handlesLeft: [handles, failing].filter(Boolean).length
  }
}

const results = { date: new Date().toISOString(), node: process.version, quick }

if (parts.has('cost')) {
  console.log(`Supervision cost (${COST_SESSIONS} sessions, stand-in sockets) ...`)
  results.cost = await cost()
  console.log(JSON.stringify(results.cost, null, 2))
}

if (parts.has('drop')) {
  const baileys = await loadBaileys('7.0.0-rc14')
  const server = await startWaServer({ baileys })
  try {
  console.log(`\nDrop -> open again, ${DROPS} drops each, real Baileys 7.0.0-rc14 sessions ...`)
  results.dropToOpen = {
    immediate: await dropToOpen(baileys, server, { stableAfterMs: 100, reasons: { connectionClosed: 'now' } }, 'now', SESSIONS.immediate),
    defaultBackoff: await dropToOpen(baileys, server, { stableAfterMs: 100 }, 'def', SESSIONS.defaultBackoff)
  }
  console.log(JSON.stringify(results.dropToOpen, null, 2))
  } finally {
    clearAll()
    await server.close()
  }
}

if (parts.has('flap')) console.log(`\nFlapping server, ${FLAP_SECONDS} s, 50 sessions ...`)
const flapPolicy = { backoff: { baseMs: 50, factor: 2, maxMs: 1000 }, maxAttempts: Infinity, stableAfterMs: 500 }
const defaultPolicy = { maxAttempts: Infinity }
const DEFAULT_BACKOFF = { baseMs: 1000, factor: 2, maxMs: 60_000 }
results.flapping = {}
const flaps = parts.has('flap') ? [['spec policy (base 50 ms, max 1 s, stable 500 ms)', flapPolicy, flapPolicy.backoff], ['default backoff (base 1 s, max 60 s, stable 30 s)', defaultPolicy, DEFAULT_BACKOFF]] : []
const perMinute = (attempts) => +(attempts / (FLAP_SECONDS / 60)).toFixed(1)
for (const [name, policy, backoff] of flaps) {
  const r = await flap(policy)
  results.flapping[name] = {
    attemptsPerMinutePerSession: r.attemptsPerMinutePerSession,
    // The policy's rate over the same window if every socket failed at once: each wait the
    // jitter's mean (half the ceiling), or the ceiling itself without jitter.
    policyPerMinute: {
      expectedAtOnceFailures: perMinute(expectedAttempts(backoff, FLAP_SECONDS * 1000)),
      noJitter: perMinute(expectedAttempts(backoff, FLAP_SECONDS * 1000, false))
    },
    drops: r.drops,
    sockets: r.sockets,
    meanDelayMs: r.meanDelayMs,
    calmToAllOpenMs: r.calmToAllOpenMs,
    violations: r.violations.length
  }
  console.log(name, JSON.stringify(results.flapping[name]))
}
console.log('\n' + JSON.stringify(results))
