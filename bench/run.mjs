// `npm run bench` (= node --expose-gc bench/run.mjs): the native registry against the
// JavaScript module it replaces (bench/socket-factory.baseline.js), in one process and one run.
//
//   npm run bench               the full run (about a minute on 2 cores; 100, 10,000, 100,000)
//   npm run bench -- --quick    a few seconds, small sizes and few samples: proves the benchmark
//                               still works (CI); its numbers are not judged
//   --sizes 100,10000           only these sizes for the per-call rows (while working on one)
//   --no-memory, --no-cross     skip the memory/GC children or the cross-thread part
//
// Prints a table of median ns/op for both sides and writes the same to bench/results.json.
//
// What is measured, and how:
// - Per-call operations with mitata's `measure` (median of its samples; a sample is a batch of
//   calls for fast operations). Every benchmark gets its own freshly compiled closure, so no
//   call site is shared (and made polymorphic) between the two sides or between operations.
// - Operations that change the registry (register, replace, unregister) time K calls per
//   sample with mitata's manual mode and undo them untimed, so the size stays where it is.
// - The N-API floor: raw no-op callbacks of the addon taking the same arguments (registered by
//   src/fast.rs, reached through the non-enumerable `__bench` property of the binding the
//   loader picked). `native ÷ floor` is what the registry itself adds to a call.
// - Memory and GC: each side in a fresh child process (`--child memory`), so the two never
//   share a heap.
// - Cross-thread: sessions spread over 4 worker threads; the main thread gets process-wide
//   stats with one native `getStats()` (the registry's table is process-wide) or, for the
//   baseline (one module instance per thread), by asking every worker with postMessage and
//   merging the replies.
// - Lower bounds: plain JavaScript building the very objects a result holds from data it
//   already has. Where a target is out of reach, this row shows by how much it must be.
// - Before measuring, every raw function of src/fast.rs is compared with the generated
//   #[napi] function it replaced (`checkRawParity`); a difference fails the run, --quick too.
//
// The sockets here are cheap plain objects with `ev: { on, off }` and `end()`: a benchmark of
// the registry, not of Baileys. The native side registers them with `{ track: false }`, since
// tracking adds three `ev.on` calls (and three `ev.off` when let go) that the baseline never
// makes; one row shows the cost of a tracked registration.

import { createRequire } from 'node:module'
import { spawnSync } from 'node:child_process'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import { deepStrictEqual } from 'node:assert/strict'
import { measure, do_not_optimize } from 'mitata'

const require = createRequire(import.meta.url)
const native = require('../index.js')
const baseline = require('./socket-factory.baseline.js')
const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
// --out FILE: where to write the JSON (default bench/results.json).
const OUT = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : new URL('./results.json', import.meta.url)
const SIZES = argv.includes('--sizes') ? argv[argv.indexOf('--sizes') + 1].split(',').map(Number) : null
const HERE = fileURLToPath(new URL('.', import.meta.url))

const noop = () => {}
const socketEv = { on: noop, off: noop }
/** A stand-in socket: what the registry touches of a Baileys socket, nothing more. */
const makeSocket = () => ({ ev: { on: socketEv.on, off: socketEv.off }, end: noop })
const UNTRACKED = Object.freeze({ track: false })

// ---------------------------------------------------------------------------------------------
// Main run

async function main () {
  if (typeof globalThis.gc !== 'function') {
    console.error('run with --expose-gc (npm run bench does)')
    process.exit(2)
  }
  const hooks = Object.getOwnPropertyDescriptor(native, '__bench')?.value
  if (!hooks) throw new Error('the addon has no __bench hooks: rebuild it (npx napi build --platform --release)')

  const sizes = SIZES ?? (QUICK ? [100] : [100, 10_000, 100_000])
  const timing = QUICK
    ? { min_cpu_time: 4e6, min_samples: 4, warmup_samples: 1, batch_samples: 256 }
    : { min_cpu_time: 300e6, min_samples: 12 }
  const slowTiming = QUICK ? timing : { min_cpu_time: 600e6, min_samples: 8 }
  const K = QUICK ? 16 : 256
  const started = Date.now()
  const rows = []
  const log = (s) => process.stdout.write(s)

  log(`baileys-socket-registry bench${QUICK ? ' (--quick: numbers not judged)' : ''}\n`)
  log(`${new Date().toISOString()}  node ${process.version}  ${os.cpus()[0]?.model ?? '?'}  nproc ${os.availableParallelism?.() ?? os.cpus().length}  load ${os.loadavg()[0].toFixed(2)}\n\n`)
  const loadAtStart = os.loadavg()[0]

  checkRawParity(hooks)
  await floors(hooks, { ...timing, min_cpu_time: 20e6 }) // warm-up (compiles the loops), not kept
  const floorAtStart = await floors(hooks, timing)
  for (const n of sizes) {
    log(`measuring at ${n.toLocaleString('en-US')} sessions ...\n`)
    rows.push(...await perCallRows(n, hooks, { timing, slowTiming, K }))
  }
  const floorAtEnd = await floors(hooks, timing)
  // Noise only ever adds time to a no-op: the lower of the two measurements is the floor.
  const floor = Object.fromEntries(Object.keys(floorAtStart).map((op) => [op, Math.min(floorAtStart[op], floorAtEnd[op])]))
  const floorRows = Object.entries(floor).map(([op, ns]) => ({
    op, sessions: null, native: ns, baseline: null, ratio: null, floor: null, note: `start ${fmt(floorAtStart[op])}, end ${fmt(floorAtEnd[op])}`
  }))

  log('memory and GC (fresh child process per side) ...\n')
  const memN = QUICK ? 2_000 : 100_000
  const memory = argv.includes('--no-memory')
    ? null
    : { sessions: memN, native: runChild('memory', 'native', memN), baseline: runChild('memory', 'baseline', memN) }

  log('cross-thread (4 worker threads) ...\n')
  const cross = argv.includes('--no-cross') ? [] : await crossThread(QUICK ? [100] : [100, 10_000, 100_000], timing, slowTiming)

  const noise = {
    floor1ArgStart: floorAtStart['N-API floor: raw no-op, 1 argument'],
    floor1ArgEnd: floorAtEnd['N-API floor: raw no-op, 1 argument'],
    loadAverageStart: loadAtStart,
    loadAverageEnd: os.loadavg()[0],
    note: 'the same no-op measured at the start and at the end of the run, and the 1-minute load average; iqr = interquartile range / median per row'
  }
  const targets = judgeTargets(rows, floor, memory, cross)
  const result = {
    date: new Date().toISOString(),
    command: ['node --expose-gc bench/run.mjs', ...argv].join(' '),
    quick: QUICK,
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform}-${process.arch}`,
    cpu: os.cpus()[0]?.model ?? null,
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    seconds: Math.round((Date.now() - started) / 1000),
    units: 'ns per operation (median); ratio = baseline / native (> 1: native faster)',
    rows: [...floorRows, ...rows],
    memory,
    crossThread: cross,
    noise,
    targets
  }
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n')

  log('\n' + renderTable(result.rows) + '\n')
  if (memory) log('\n' + renderMemory(memory) + '\n')
  if (cross.length) log('\n' + renderCross(cross) + '\n')
  log(`\nnoise: 1-argument floor ${fmt(noise.floor1ArgStart)} at start, ${fmt(noise.floor1ArgEnd)} at end; load average ${noise.loadAverageStart.toFixed(2)} at start, ${noise.loadAverageEnd.toFixed(2)} at end (${result.nproc} CPUs)\n`)
  log('\n' + renderTargets(targets) + '\n')
  log(`\nwrote ${typeof OUT === 'string' ? OUT : 'bench/results.json'} (${result.seconds} s)\n`)
  native.clearAll()
  baseline.clearAll()
}

/** The N-API floor: the addon's raw no-op callbacks, called like the functions they stand for. */
async function floors (hooks, timing) {
  const ids = Array.from({ length: 4096 }, (_, i) => `user_${i}`)
  const upd = { isConnected: true, error: null }
  const out = {}
  const m = async (body, vars) => (await median(compile(body, vars), timing)).median
  out['N-API floor: raw no-op, no arguments'] = await m('() => sink(f())', { f: hooks.noopNoArgs })
  out['N-API floor: raw no-op, 1 argument'] = await m('() => sink(f(ids[i++ & 4095]))', { f: hooks.noop, ids })
  out['N-API floor: raw no-op, 2 arguments'] = await m('() => sink(f(ids[i++ & 4095], upd))', { f: hooks.noop, ids, upd })
  // Not no-ops: the least a count (a number to return) and a lookup (an id to read) must do.
  out['N-API floor + returning a number'] = await m('() => sink(f())', { f: hooks.noopNumber })
  out['N-API floor + reading the id string'] = await m('() => sink(f(ids[i++ & 4095]))', { f: hooks.readId, ids })
  return out
}

/** The per-call rows at `n` registered sessions on each side. */
async function perCallRows (n, hooks, { timing, slowTiming, K }) {
  native.clearAll()
  baseline.clearAll()
  const ids = Array.from({ length: n }, (_, i) => `user_${i}`)
  for (const id of ids) {
    const sock = makeSocket()
    native.registerSocket(id, sock, UNTRACKED)
    baseline.registerSocket(id, sock, UNTRACKED)
  }
  if (native.getSocketCount() !== n || baseline.getSocketCount() !== n) throw new Error('registration failed')
  const hit = shuffledSample(ids, 4096)
  const miss = Array.from({ length: 4096 }, (_, i) => `missing_${i}`)
  const fresh = Array.from({ length: K }, (_, i) => `fresh_${i}`)
  const freshSockets = fresh.map(makeSocket)
  const replaceIds = shuffledSample(ids, K)
  const spare = [replaceIds.map(makeSocket), replaceIds.map(makeSocket)]
  const upd = [{ isConnected: true, error: null }, { isConnected: false, error: null }]
  checkParity(n, hit, miss)

  const rows = []
  const both = async (op, body, opts = {}) => {
    const t = opts.timing ?? timing
    const nat = await median(compile(body, { R: native, ids: hit, miss, upd }), t)
    const base = await median(compile(body, { R: baseline, ids: hit, miss, upd }), t)
    rows.push(row(op, n, nat, base, opts.floor))
  }
  await both('getSocket (hit)', '() => sink(R.getSocket(ids[i++ & 4095]))', { floor: 'N-API floor: raw no-op, 1 argument' })
  await both('getSocket (miss)', '() => sink(R.getSocket(miss[i++ & 4095]))', { floor: 'N-API floor: raw no-op, 1 argument' })
  await both('hasSocket', '() => sink(R.hasSocket(ids[i++ & 4095]))', { floor: 'N-API floor: raw no-op, 1 argument' })
  await both('getSocketCount', '() => sink(R.getSocketCount())', { floor: 'N-API floor: raw no-op, no arguments' })
  await both('updateSessionState (2 keys)', '() => sink(R.updateSessionState(ids[i++ & 4095], upd[i & 1]))', { floor: 'N-API floor: raw no-op, 2 arguments' })
  await both('getSessionState', '() => sink(R.getSessionState(ids[i++ & 4095]))', { floor: 'N-API floor: raw no-op, 1 argument' })

  // Changes, K per sample, undone untimed.
  const mutating = async (side, timed, undo) => median(function * () {
    yield { manual () { const t = timed(side); undo(side); return t / K } }
  }, { ...slowTiming, min_cpu_time: Math.min(slowTiming.min_cpu_time, 300e6) })
  const registerFresh = (opts) => (R) => {
    const t0 = performance.now()
    for (let k = 0; k < K; k++) R.registerSocket(fresh[k], freshSockets[k], opts)
    return (performance.now() - t0) * 1e6
  }
  const unregisterFresh = (R) => { for (let k = 0; k < K; k++) R.unregisterSocket(fresh[k]) }
  for (const [op, opts] of [['registerSocket (new id)', UNTRACKED], ['registerSocket (new id, tracked: native listens, baseline never does)', undefined]]) {
    rows.push(row(op, n,
      await mutating(native, registerFresh(opts), unregisterFresh),
      await mutating(baseline, registerFresh(opts), unregisterFresh)))
  }
  let flip = 0
  const replace = (R) => {
    const socks = spare[flip++ & 1]
    const t0 = performance.now()
    for (let k = 0; k < K; k++) R.registerSocket(replaceIds[k], socks[k], UNTRACKED)
    return (performance.now() - t0) * 1e6
  }
  rows.push(row('registerSocket (replace: old one is ended)', n,
    await mutating(native, replace, noop), await mutating(baseline, replace, noop)))
  const unregisterTimed = (R) => {
    for (let k = 0; k < K; k++) R.registerSocket(fresh[k], freshSockets[k], UNTRACKED)
    const t0 = performance.now()
    for (let k = 0; k < K; k++) R.unregisterSocket(fresh[k])
    return (performance.now() - t0) * 1e6
  }
  rows.push(row('unregisterSocket', n,
    await mutating(native, unregisterTimed, noop), await mutating(baseline, unregisterTimed, noop)))
  if (native.getSocketCount() !== n || baseline.getSocketCount() !== n) throw new Error('the size moved')

  // Whole-registry operations.
  const whole = n >= 10_000 ? slowTiming : timing
  await both('getStats', '() => sink(R.getStats())', { timing: whole })
  await both('getAllSessions', '() => sink(R.getAllSessions())', { timing: whole })
  await both('getAllSockets', '() => sink(R.getAllSockets())', { timing: whole })
  // Lower bounds: plain JavaScript building the same shapes from data it already holds (no
  // registry, no strings made). Nothing that returns fresh objects can beat these.
  const iso = new Date().toISOString()
  for (const [op, body] of [['getStats', STATS_FLOOR_JS], ['getAllSessions', SESSIONS_FLOOR_JS]]) {
    const f = await median(compile(body, { ids, n, iso }), whole)
    rows.push({ op: `pure-JS floor of ${op}: its objects from ready data`, sessions: n, native: null, baseline: null, ratio: null, jsFloor: f.median, floor: null })
  }

  // Before/after for the raw hot paths: the generated #[napi] functions fast.rs replaced.
  if (n === 10_000 || QUICK) {
    for (const [name, body, floor] of [
      ['getSocket', '() => sink(f(ids[i++ & 4095]))', 'N-API floor: raw no-op, 1 argument'],
      ['hasSocket', '() => sink(f(ids[i++ & 4095]))', 'N-API floor: raw no-op, 1 argument'],
      ['getSocketCount', '() => sink(f())', 'N-API floor: raw no-op, no arguments'],
      ['getSessionState', '() => sink(f(ids[i++ & 4095]))', 'N-API floor: raw no-op, 1 argument']
    ]) {
      const generated = hooks.napi[name]
      if (typeof generated !== 'function') continue
      const nat = await median(compile(body, { f: generated, ids: hit, upd }), timing)
      rows.push({ ...row(`${name} via the generated #[napi] wrapper (replaced by src/fast.rs)`, n, nat, null, floor), baseline: null, ratio: null })
    }
  }
  return rows
}

/** The two sides must answer alike, or the numbers mean nothing. */
function checkParity (n, hit, miss) {
  const fail = (what) => { throw new Error(`native and baseline disagree: ${what}`) }
  for (const id of hit.slice(0, 64)) {
    if (native.getSocket(id) !== baseline.getSocket(id)) fail(`getSocket(${id})`)
    if (native.hasSocket(id) !== true || baseline.hasSocket(id) !== true) fail(`hasSocket(${id})`)
  }
  if (native.getSocket(miss[0]) !== null || baseline.getSocket(miss[0]) !== null) fail('getSocket(miss)')
  if (native.getSocket(42) !== null || native.hasSocket(undefined) !== false) fail('non-string ids')
  const ns = native.getStats()
  const bs = baseline.getStats()
  if (ns.totalSessions !== n || bs.totalSessions !== n) fail('getStats().totalSessions')
  if (ns.activeSessions.length !== bs.activeSessions.length) fail('getStats().activeSessions')
  if (ns.activeSessions[0].sessionId !== bs.activeSessions[0].sessionId) fail('getStats() order')
  if (ns.activeSessions[0].createdAt.length !== bs.activeSessions[0].createdAt.length) fail('ISO times')
  if (Object.keys(native.getAllSessions()).length !== n) fail('getAllSessions()')
  if (native.getAllSockets().size !== n) fail('getAllSockets()')
  native.updateSessionState(hit[0], { isConnected: true, error: null })
  baseline.updateSessionState(hit[0], { isConnected: true, error: null })
  const a = native.getSessionState(hit[0])
  const b = baseline.getSessionState(hit[0])
  if (a.isConnected !== true || b.isConnected !== true || a.error !== null) fail('updateSessionState')
}

/**
 * src/fast.rs replaces generated #[napi] functions with raw ones that must answer exactly
 * alike: compare each pair (kept on `__bench.napi`) on awkward sessions, key order and
 * prototypes included. Runs in every run, --quick (CI) too, so a change to api.rs that
 * fast.rs does not follow fails here.
 */
function checkRawParity (hooks) {
  native.clearAll()
  const listeners = {}
  const tracked = {
    ev: { on (event, f) { listeners[event] = f }, off: noop },
    end: noop,
    authState: { creds: { me: { id: '1@s.whatsapp.net', lid: '2@lid' } } }
  }
  native.registerSocket('tracked', tracked)
  listeners['connection.update']({ connection: 'open' })
  listeners['messages.upsert']({ type: 'notify', messages: [{ key: { fromMe: false } }, { key: { fromMe: true } }] })
  listeners['connection.update']({ connection: 'close', lastDisconnect: { error: { message: 'Connection Lost, ü 😀', output: { statusCode: 408 } } } })
  const long = 'x'.repeat(300)
  // '\ufffdx' is registered and '\ud800x' (a lone surrogate, never an id) is only looked up.
  for (const id of ['__proto__', 'constructor', '123', 'é😀', '\ufffdx', long, 'user_1', 'toString']) {
    native.registerSocket(id, makeSocket(), UNTRACKED)
  }
  native.updateSessionState('user_1', { isConnected: true, error: 'bad ☃', custom: { nested: [1, 'two', null, { deep: true }] }, n: 1.5, s: 'str', b: false, nul: null })
  native.updateSessionState('123', { error: '', status: 'qr' })
  native.updateSessionState('é😀', { error: new Error('E!') })
  // Times on other days, before 1970, fractional, and past year 9999 (no ISO form).
  native.updateSessionState('constructor', { createdAt: -1.5 })
  native.updateSessionState('toString', { createdAt: 253402300799999 })
  native.updateSessionState('__proto__', { createdAt: 1e12 + 0.7 })
  native.updateSessionState(long, { createdAt: Date.now() - 86_400_000 * 3 })
  const same = (a, b, what) => {
    deepStrictEqual(a, b, what)
    if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: key order differs`)
  }
  const probes = ['tracked', '__proto__', '123', 'é😀', '\ud800x', '\ufffdx', long, 'user_1', 'nope', '', 42, undefined, null, {}, ['user_1']]
  for (const name of ['getSocket', 'hasSocket', 'getSessionState']) {
    if (typeof hooks.napi[name] !== 'function') continue
    for (const id of probes) same(native[name](id), hooks.napi[name](id), `${name}(${String(id).slice(0, 16)})`)
  }
  for (const name of ['getSocketCount', 'getAllSessions', 'getStats']) {
    if (typeof hooks.napi[name] === 'function') same(native[name](), hooks.napi[name](), `${name}()`)
  }
  // Idle sessions too (inactiveSessions), then the setting as it was.
  const { idleAfterMs } = native.configure()
  native.configure({ idleAfterMs: 1 })
  for (const until = Date.now() + 3; Date.now() < until;);
  try {
    if (native.getStats().inactiveSessions.length === 0) throw new Error('no idle session to compare')
    if (typeof hooks.napi.getStats === 'function') same(native.getStats(), hooks.napi.getStats(), 'getStats() with idle sessions')
  } finally {
    native.configure({ idleAfterMs })
  }
  if (!Object.hasOwn(native.getAllSessions(), '__proto__')) throw new Error('getAllSessions lost the __proto__ id')
  // Latin-1 only (one byte per character all the way), then a late wider character.
  native.clearAll()
  for (const id of ['café', 'plain', 'naïve']) native.registerSocket(id, makeSocket(), UNTRACKED)
  native.updateSessionState('plain', { error: 'über' })
  for (const name of ['getAllSessions', 'getStats']) {
    if (typeof hooks.napi[name] === 'function') same(native[name](), hooks.napi[name](), `${name}() latin-1`)
  }
  native.registerSocket('wide ☃', makeSocket(), UNTRACKED)
  for (const name of ['getAllSessions', 'getStats']) {
    if (typeof hooks.napi[name] === 'function') same(native[name](), hooks.napi[name](), `${name}() latin-1 then wide`)
  }
  native.clearAll()
  for (const name of ['getAllSessions', 'getStats']) {
    if (typeof hooks.napi[name] === 'function') same(native[name](), hooks.napi[name](), `${name}() when empty`)
  }
}

// ---------------------------------------------------------------------------------------------
// Memory and GC, one side per child process

function runChild (what, side, n) {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', what, side, String(n)], {
    encoding: 'utf8',
    cwd: HERE,
    maxBuffer: 1 << 24
  })
  if (r.status !== 0) throw new Error(`child ${what} ${side} failed (${r.status}):\n${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}

async function child (what, side, n) {
  if (what !== 'memory') throw new Error(`unknown child ${what}`)
  const R = side === 'native' ? native : side === 'baseline' ? baseline : null
  if (!R) throw new Error(`unknown side ${side}`)
  const settle = () => { for (let i = 0; i < 4; i++) globalThis.gc() }
  const gcMs = (times) => {
    const t = []
    for (let i = 0; i < times; i++) {
      const t0 = performance.now()
      globalThis.gc()
      t.push(performance.now() - t0)
    }
    return t.sort((a, b) => a - b)[t.length >> 1]
  }
  settle()
  const empty = process.memoryUsage()
  // What the bench itself holds in both children: the ids and the socket objects.
  const ids = Array.from({ length: n }, (_, i) => `user_${i}`)
  const sockets = ids.map(makeSocket)
  settle()
  const before = process.memoryUsage()
  const gcBefore = gcMs(7)
  for (let i = 0; i < n; i++) R.registerSocket(ids[i], sockets[i], UNTRACKED)
  if (R.getSocketCount() !== n) throw new Error('registration failed')
  settle()
  const after = process.memoryUsage()
  const gcAfter = gcMs(7)
  // The registry's own heap: filled minus emptied again, with the same ids and sockets held
  // and the same allocation history (a "before" snapshot still holds a few MB that the next
  // full GCs free on either side, which made the difference to it noisy).
  R.clearAll()
  settle()
  const cleared = process.memoryUsage()
  console.log(JSON.stringify({
    side,
    sessions: n,
    heapUsedPerSession: (after.heapUsed - cleared.heapUsed) / n,
    heapGrowthPerSession: (after.heapUsed - before.heapUsed) / n,
    rssPerSession: (after.rss - before.rss) / n,
    benchObjectsHeapPerSession: (before.heapUsed - empty.heapUsed) / n,
    gcMsWithoutRegistry: gcBefore,
    gcMs: gcAfter
  }))
  // Keep the bench's objects alive until after the measurements.
  do_not_optimize(sockets)
}

// ---------------------------------------------------------------------------------------------
// Cross-thread stats

function crossThreadWorker () {
  const sockets = []
  parentPort.on('message', (m) => {
    if (m.type === 'fill') {
      native.clearAll()
      baseline.clearAll()
      sockets.length = 0
      for (let i = 0; i < m.count; i++) {
        const id = `w${m.worker}_${i}`
        const sock = makeSocket()
        sockets.push(sock)
        native.registerSocket(id, sock, UNTRACKED)
        baseline.registerSocket(id, sock, UNTRACKED)
      }
      parentPort.postMessage({ type: 'filled' })
    } else if (m.type === 'stats') {
      parentPort.postMessage(baseline.getStats())
    }
  })
}

async function crossThread (sizes, timing, slowTiming) {
  native.clearAll()
  baseline.clearAll()
  const workers = Array.from({ length: 4 }, () => {
    const w = new Worker(new URL(import.meta.url), { workerData: { role: 'cross-thread' } })
    w.pending = []
    w.on('message', (m) => w.pending.shift()?.resolve(m))
    w.on('error', (e) => { for (const p of w.pending.splice(0)) p.reject(e) })
    return w
  })
  const ask = (w, msg) => new Promise((resolve, reject) => {
    w.pending.push({ resolve, reject })
    w.postMessage(msg)
  })
  // The baseline's best alternative: ask every worker at once, merge the replies.
  const gatherStats = async () => {
    const parts = await Promise.all(workers.map((w) => ask(w, { type: 'stats' })))
    const out = { totalSessions: 0, activeSessions: [], inactiveSessions: [], errorSessions: [], connectedSessions: [], disconnectedSessions: [] }
    for (const p of parts) {
      out.totalSessions += p.totalSessions
      for (const k of ['activeSessions', 'inactiveSessions', 'errorSessions', 'connectedSessions', 'disconnectedSessions']) {
        out[k] = out[k].concat(p[k])
      }
    }
    return out
  }
  const results = []
  try {
    for (const n of sizes) {
      await Promise.all(workers.map((w, worker) => ask(w, { type: 'fill', worker, count: n / 4 })))
      const a = native.getStats()
      const b = await gatherStats()
      if (a.totalSessions !== n || b.totalSessions !== n || a.activeSessions.length !== n || b.activeSessions.length !== n) {
        throw new Error(`cross-thread stats disagree: native ${a.totalSessions}, baseline ${b.totalSessions}, expected ${n}`)
      }
      const t = n >= 10_000 ? slowTiming : timing
      const nat = await median(compile('() => sink(R.getStats())', { R: native }), t)
      // No batching: one gather per sample.
      const base = await median(gatherStats, { ...t, batch_threshold: -1 })
      const floor = await median(compile(STATS_FLOOR_JS, { ids: Array.from({ length: n }, (_, k) => `w${k & 3}_${k >> 2}`), n, iso: new Date().toISOString() }), t)
      results.push({
        sessions: n,
        native: nat.median,
        baseline: base.median,
        ratio: base.median / nat.median,
        nativeIqr: nat.iqr,
        baselineIqr: base.iqr,
        jsFloor: floor.median,
        bestPossibleRatio: base.median / floor.median
      })
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
  return results
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** getStats' objects for `n` sessions, built by JS from ready strings (the least any copy costs). */
const STATS_FLOOR_JS = `() => {
  const active = []
  const disconnected = []
  for (let k = 0; k < n; k++) {
    const sessionId = ids[k]
    active.push({ sessionId, createdAt: iso, lastActivity: iso, isConnected: false, error: null, status: null })
    disconnected.push(sessionId)
  }
  return sink({ totalSessions: n, activeSessions: active, inactiveSessions: [], errorSessions: [], connectedSessions: [], disconnectedSessions: disconnected })
}`

/** getAllSessions' shape for `n` sessions: one fresh state object per id, keyed by ready ids. */
const SESSIONS_FLOOR_JS = `() => {
  const out = {}
  for (let k = 0; k < n; k++) {
    out[ids[k]] = { createdAt: 1, lastActivity: 1, isConnected: false, error: null, status: null, tracked: false, lastDisconnect: null, me: null, hasQr: false, connects: 0, disconnects: 0, connectedAt: null, disconnectedAt: null, lastInboundAt: null, lastOutboundAt: null, messagesIn: 0, messagesOut: 0, threadId: 0 }
  }
  return sink(out)
}`

/**
 * A fresh closure from `body` (an arrow function's source) with `vars` in scope, plus `i` (a
 * counter) and `sink` (keeps results alive so no call is optimised away). New source each
 * time: V8 shares type feedback between closures of one function literal, and a call site
 * that has seen both registries would be measured polymorphic.
 */
function compile (body, vars) {
  const names = Object.keys(vars)
  // eslint-disable-next-line no-new-func
  return new Function(...names, 'sink', `'use strict'; let i = 0; return ${body}`)(...names.map((k) => vars[k]), do_not_optimize)
}

async function median (fn, opts) {
  const s = await measure(fn, { ...opts })
  return { median: s.p50, iqr: (s.p75 - s.p25) / s.p50, samples: s.samples.length }
}

function row (op, sessions, nat, base, floorName) {
  return {
    op,
    sessions,
    native: nat.median,
    baseline: base ? base.median : null,
    ratio: base ? base.median / nat.median : null,
    nativeIqr: nat.iqr,
    baselineIqr: base ? base.iqr : null,
    floor: floorName ?? null
  }
}

/** A deterministic shuffled sample of `len` items (repeating when there are fewer). */
function shuffledSample (items, len) {
  let seed = 0x2545f491
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  const out = Array.from({ length: len }, (_, i) => items[i % items.length])
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

function fmt (ns) {
  if (ns == null) return '-'
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`
  return `${ns.toFixed(1)} ns`
}

function judgeTargets (rows, floor, memory, cross) {
  const out = []
  const at = (op, n) => rows.find((r) => r.op === op && r.sessions === n)
  // A lookup must at least read its id: what that costs over the floor bounds the best ratio.
  const readBound = floor['N-API floor + reading the id string'] / floor['N-API floor: raw no-op, 1 argument']
  const numberBound = floor['N-API floor + returning a number'] / floor['N-API floor: raw no-op, no arguments']
  for (const r of rows) {
    if (!r.floor || !/^(getSocket \(|hasSocket$|getSocketCount$)/.test(r.op)) continue
    const f = floor[r.floor]
    out.push({
      target: `${r.op} at ${r.sessions}: within 1.3x of the N-API floor`,
      value: r.native / f,
      unit: 'x floor',
      met: r.native / f <= 1.3,
      bound: r.op === 'getSocketCount'
        ? `returning a number alone costs ${numberBound.toFixed(2)}x the floor`
        : `reading the id alone costs ${readBound.toFixed(2)}x the floor`
    })
  }
  const big = QUICK ? 100 : 10_000
  for (const op of ['getStats', 'getAllSessions']) {
    const r = at(op, big)
    const f = at(`pure-JS floor of ${op}: its objects from ready data`, big)
    if (r) {
      out.push({
        target: `${op} at ${big}: at least 2x faster than the baseline`,
        value: r.ratio,
        unit: 'x faster',
        met: r.ratio >= 2,
        bound: f ? `even the pure-JS floor is only ${(r.baseline / f.jsFloor).toFixed(2)}x faster than the baseline` : null
      })
    }
  }
  if (memory) {
    const heap = memory.native.heapUsedPerSession / memory.baseline.heapUsedPerSession
    out.push({ target: `V8 heap per session at ${memory.sessions}: at most half the baseline's`, value: heap, unit: 'x baseline', met: heap <= 0.5, bound: null })
  }
  for (const c of cross) {
    out.push({
      target: `cross-thread stats at ${c.sessions}: at least 100x faster than postMessage`,
      value: c.ratio,
      unit: 'x faster',
      met: c.ratio >= 100,
      bound: `building the result in plain JS from ready data is ${c.bestPossibleRatio.toFixed(1)}x faster than postMessage`
    })
  }
  return out
}

function pad (s, n, right = false) {
  s = String(s)
  return right ? s.padStart(n) : s.padEnd(n)
}

/** A text table: first column left-aligned, the others right-aligned. */
function grid (title, head, lines) {
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)))
  const line = (l) => l.map((c, i) => pad(c, w[i], i > 0)).join('  ').trimEnd()
  return [title, line(head), w.map((x) => '-'.repeat(x)).join('  '), ...lines.map(line)].join('\n')
}

function renderTable (rows) {
  const floorOf = Object.fromEntries(rows.filter((r) => r.sessions === null).map((r) => [r.op, r.native]))
  const x = (v) => `${v.toFixed(2)}x`
  const main = rows.filter((r) => r.jsFloor == null)
  const bounds = rows.filter((r) => r.jsFloor != null)
  return grid('median time per operation (baseline÷native > 1: native faster; floor: a raw Node-API no-op with the same arguments, the lower of its two measurements)',
    ['operation', 'sessions', 'native', 'baseline', 'baseline÷native', 'native÷floor'],
    main.map((r) => [
      r.op,
      r.sessions === null ? '' : r.sessions.toLocaleString('en-US'),
      fmt(r.native),
      r.baseline == null ? (r.note ?? '') : fmt(r.baseline),
      r.ratio == null ? '' : x(r.ratio),
      r.floor ? x(r.native / floorOf[r.floor]) : ''
    ])) + (bounds.length === 0
    ? ''
    : '\n\n' + grid('lower bounds: plain JavaScript building the same objects from data it already holds',
      ['shape', 'sessions', 'pure JS', 'baseline÷pure JS'],
      bounds.map((r) => {
        const op = r.op.match(/floor of (\w+)/)[1]
        const base = rows.find((b) => b.op === op && b.sessions === r.sessions)
        return [op, r.sessions.toLocaleString('en-US'), fmt(r.jsFloor), base ? x(base.baseline / r.jsFloor) : '']
      })))
}

function renderMemory (m) {
  const b = (v) => `${v.toFixed(0)} B`
  const ms = (v) => `${v.toFixed(2)} ms`
  return grid(`memory and GC at ${m.sessions.toLocaleString('en-US')} sessions, after gc(); each side in a fresh process`,
    ['per registered session', 'native', 'baseline'],
    [
      ['V8 heap used by the registry (filled - cleared)', b(m.native.heapUsedPerSession), b(m.baseline.heapUsedPerSession)],
      ['V8 heap growth while registering', b(m.native.heapGrowthPerSession), b(m.baseline.heapGrowthPerSession)],
      ['RSS growth while registering', b(m.native.rssPerSession), b(m.baseline.rssPerSession)],
      ["V8 heap of the bench's own socket + id", b(m.native.benchObjectsHeapPerSession), b(m.baseline.benchObjectsHeapPerSession)],
      ['full gc(), sockets only (no registry)', ms(m.native.gcMsWithoutRegistry), ms(m.baseline.gcMsWithoutRegistry)],
      ['full gc(), registry filled', ms(m.native.gcMs), ms(m.baseline.gcMs)]
    ])
}

function renderCross (cross) {
  return grid('cross-thread: process-wide stats on the main thread, sessions spread over 4 worker threads',
    ['sessions', 'native getStats()', 'baseline: postMessage x4 + merge', 'baseline÷native', 'pure-JS floor', 'postMessage÷floor'],
    cross.map((c) => [c.sessions.toLocaleString('en-US'), fmt(c.native), fmt(c.baseline), `${c.ratio.toFixed(1)}x`, fmt(c.jsFloor), `${c.bestPossibleRatio.toFixed(1)}x`]))
}

function renderTargets (targets) {
  return ['targets (issue 5)' + (QUICK ? ' — not judged in --quick' : ''),
    ...targets.map((t) => `${QUICK ? '  ' : t.met ? 'met   ' : 'MISSED'}  ${t.target}: ${t.value.toFixed(2)} ${t.unit}${t.bound ? ` (${t.bound})` : ''}`)].join('\n')
}

// ---------------------------------------------------------------------------------------------
// Entry (last, so that every constant above is initialised)

if (!isMainThread && workerData?.role === 'cross-thread') {
  crossThreadWorker()
} else if (argv[0] === '--child') {
  await child(argv[1], argv[2], Number(argv[3]))
} else {
  await main()
}
