// Issue 11, the state path: updateSessionState's two routes (a flat object of primitives
// crosses as one string, anything else is read out of the object by the binding) give the
// same result or the same error for every input; getSessionState's per-thread cache of shaped
// states never hands out a stale, shared or foreign state; getAllSessions and getStats are
// shaped from the same layout. Real Baileys sockets (untracked, never connected: these tests
// are about state only) under each id.

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { registry } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket } from './support/baileys.mjs'

const { registerSocket, unregisterSocket, updateSessionState, getSessionState, getAllSessions, getStats, clearAll, saveSnapshot, loadSnapshot } = registry
// The binding itself: `__updateState` always reads the object (the general route),
// `__updateFlat` takes the flat form (the fast route). Internal; not exported by the entry.
const binding = createRequire(import.meta.url)('../binding.js')
// The package entry, as worker threads below require it.
const ENTRY = JSON.stringify(createRequire(import.meta.url).resolve('..'))

// Every createdAt the tests set is before this.
const STARTED = Date.now()

let baileys
let server
let sock
let other

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
  sock = makeTestSocket({ baileys, url: server.url('silent', { id: 'state' }), connectTimeoutMs: 1500 })
  other = makeTestSocket({ baileys, url: server.url('silent', { id: 'other' }), connectTimeoutMs: 1500 })
})

afterEach(() => clearAll())

after(async () => {
  clearAll()
  sock.end(undefined)
  other.end(undefined)
  await server.close()
})

const fresh = (id) => registerSocket(id, sock, { track: false })

/** What a call did: the error's code, name and message, or the resulting state. */
function outcome (id, call) {
  try {
    call()
  } catch (e) {
    return { code: e.code, name: e.name, message: e.message }
  }
  const s = getSessionState(id)
  // createdAt (unless set) and lastActivity are now; compare everything else.
  s.lastActivity = typeof s.lastActivity
  if (s.createdAt >= STARTED) s.createdAt = 'now'
  return s
}

/** The flat form the entry sends (registry_core::update::parse_flat), written independently of index.js. */
function flatOf (u) {
  const part = (v) => {
    if (v === undefined) return 'u'
    if (v === null) return 'n'
    if (typeof v === 'boolean') return v ? 't' : 'f'
    if (typeof v === 'number') return `d${v};`
    return `s${v.length}:${v}`
  }
  return Object.keys(u).map((k) => `${k.length}:${k}${part(u[k])}`).join('')
}

const FLAT = [
  { isConnected: true },
  { isConnected: false, error: 'boom', status: 'open' },
  { error: null, status: null },
  { error: undefined, status: undefined },
  { n: 2, s: 'text', b: false, z: null },
  { n: 0.1 + 0.2, big: 1e21, small: 5e-324, neg: -1.5, max: Number.MAX_VALUE },
  { nan: NaN, inf: Infinity, ninf: -Infinity },
  { createdAt: 1_700_000_000_123 },
  { createdAt: -62_167_219_200_000 },
  { lastActivity: 5, keep: 1 },
  { gone: undefined },
  { 2: 'two', 1: 'one', b: 'b', a: 'a' },
  { wide: 'é€😀', lone: 'x\ud800y', loneLow: '\udc00', escaped: '\\ud800', quote: '"\n\t' },
  { 'key with spaces': 1, 'ключ': 'значение', '': 'empty key' },
  { '1:2': 's3:x', d: 'd1;', u: 'u', 'n:': ':' },
  // Refused by the core's rules, from either route.
  { isConnected: 'yes' },
  { isConnected: 1 },
  { error: 1 },
  { error: true },
  { status: 'nope' },
  { status: 3 },
  { createdAt: null },
  { createdAt: NaN },
  { createdAt: 1e300 },
  { createdAt: '2024' },
  { a: 1, isConnected: 'no', b: 2 }
]

test('a flat update gives the same state or the same error through both routes and the flat form', () => {
  for (const u of FLAT) {
    const label = JSON.stringify(u, (k, v) => (v === undefined ? '<undefined>' : Number.isNaN(v) ? '<NaN>' : v))
    for (const id of ['viaEntry', 'viaObject', 'viaFlat']) {
      fresh(id)
      registry.updateSessionState(id, { preset: 1, gone: 'was here' })
    }
    const a = outcome('viaEntry', () => updateSessionState('viaEntry', u))
    const b = outcome('viaObject', () => binding.__updateState('viaObject', u))
    const c = outcome('viaFlat', () => binding.__updateFlat('viaFlat', flatOf(u)))
    assert.deepEqual(a, b, `entry vs object reader: ${label}`)
    assert.deepEqual(c, b, `flat form vs object reader: ${label}`)
  }
})

const OTHER = [
  { nested: { a: [1, { b: null }] } },
  { list: [1, undefined, () => 1] },
  { d: new Date(1_700_000_000_000) },
  { error: new Error('as an Error') },
  { f () {} },
  { s: Symbol('x') },
  { big: 1n },
  { negZero: -0 },
  { connects: 1 },
  { tracked: true },
  { __proto__: null, ['__proto__']: 1 },
  { constructor: 1 },
  { deep: { prototype: 1 } },
  { long: 'x'.repeat(70_000) },
  { ['k'.repeat(1025)]: 1 },
  { ['k'.repeat(5000)]: 1 },
  Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])),
  [1, 2],
  'not an object',
  null,
  undefined,
  new Map([['a', 1]]),
  Object.assign(Object.create({ inherited: 1 }), { own: 2 })
]

test('anything else gives the same state or error as the object reader', () => {
  for (const u of OTHER) {
    for (const id of ['viaEntry', 'viaObject']) fresh(id)
    const a = outcome('viaEntry', () => updateSessionState('viaEntry', u))
    const b = outcome('viaObject', () => binding.__updateState('viaObject', u))
    assert.deepEqual(a, b, `entry vs object reader: ${typeof u === 'object' && u !== null ? Object.keys(u).join(',').slice(0, 60) : String(u)}`)
  }
  const circular = { a: 1 }
  circular.self = circular
  fresh('c')
  assert.throws(() => updateSessionState('c', circular), { code: 'ERR_INVALID_STATE_VALUE' })
  assert.equal(getSessionState('c').a, undefined, 'nothing applied')
})

test('getters run once each, in order, and a refused key stops before later getters', () => {
  fresh('g')
  const seen = []
  const u = {
    a: 1,
    get b () { seen.push('b'); return { nested: true } },
    get c () { seen.push('c'); return 'c' }
  }
  updateSessionState('g', u)
  assert.deepEqual(seen, ['b', 'c'])
  assert.deepEqual([getSessionState('g').b, getSessionState('g').c], [{ nested: true }, 'c'])
  seen.length = 0
  const refused = { a: 1, connects: 2, get later () { seen.push('later'); return 1 } }
  assert.throws(() => updateSessionState('g', refused), { code: 'ERR_READ_ONLY_STATE_KEY' })
  assert.deepEqual(seen, [], 'the getter after a read-only key never ran')
  const boom = new Error('mine')
  assert.throws(() => updateSessionState('g', { x: 1, get y () { throw boom } }), (e) => e === boom)
  assert.equal(getSessionState('g').x, undefined, 'nothing applied')
})

test('getSessionState hands out copies that follow every change', () => {
  fresh('s')
  updateSessionState('s', { n: 1, obj: { deep: [1] } })
  const a = getSessionState('s')
  a.n = 99
  a.obj.deep.push(2)
  a.extra = true
  const b = getSessionState('s')
  assert.equal(b.n, 1)
  assert.deepEqual(b.obj, { deep: [1] })
  assert.equal('extra' in b, false)
  assert.notEqual(a, b)
  updateSessionState('s', { n: 2 })
  assert.equal(getSessionState('s').n, 2, 'right after an update of the same session')
  updateSessionState('s', { n: undefined })
  assert.equal('n' in getSessionState('s'), false)
  const before = getSessionState('s').createdAt
  registerSocket('s', other, { track: false })
  const replaced = getSessionState('s')
  assert.equal('obj' in replaced, false, 'a replaced session starts over')
  assert.ok(replaced.createdAt >= before)
  unregisterSocket('s')
  assert.equal(getSessionState('s'), null, 'gone after unregisterSocket')
})

test('a slot taken by another session never shows the old one', () => {
  for (let i = 0; i < 50; i++) {
    fresh(`old${i}`)
    updateSessionState(`old${i}`, { who: `old${i}` })
    assert.equal(getSessionState(`old${i}`).who, `old${i}`)
  }
  for (let i = 0; i < 50; i++) unregisterSocket(`old${i}`)
  for (let i = 0; i < 50; i++) {
    fresh(`new${i}`)
    updateSessionState(`new${i}`, { who: `new${i}` })
  }
  for (let i = 0; i < 50; i++) {
    assert.equal(getSessionState(`old${i}`), null)
    assert.equal(getSessionState(`new${i}`).who, `new${i}`)
  }
})

test('a change made by another thread is seen at once', async () => {
  fresh('shared')
  updateSessionState('shared', { n: 1 })
  assert.equal(getSessionState('shared').n, 1)
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const r = require(${ENTRY})
    parentPort.on('message', (n) => {
      r.updateSessionState('shared', { n })
      parentPort.postMessage(r.getSessionState('shared').n)
    })
  `, { eval: true })
  try {
    for (const n of [2, 3, 4]) {
      worker.postMessage(n)
      const seenThere = await new Promise((resolve) => worker.once('message', resolve))
      assert.equal(seenThere, n)
      assert.equal(getSessionState('shared').n, n)
    }
  } finally {
    await worker.terminate()
  }
})

test("a read right after this thread's update answers what the table holds", () => {
  // The update brings this thread's cached state along instead of dropping it: every flat
  // update, applied to a state that was just read (so cached), must read back as a fresh
  // native read shapes it (getAllSessions never uses the cache), key order included.
  fresh('warm')
  const check = (label) => {
    const cached = getSessionState('warm')
    const table = getAllSessions().warm
    assert.deepEqual(cached, table, label)
    assert.equal(JSON.stringify(cached), JSON.stringify(table), `key order: ${label}`)
  }
  const updates = [...FLAT, { preset: 1, gone: 'was here', 7: 'seven' }, ...FLAT.slice().reverse(), { preset: undefined }, { again: 1 }]
  for (const u of updates) {
    const label = JSON.stringify(u, (k, v) => (v === undefined ? '<undefined>' : Number.isNaN(v) ? '<NaN>' : v))
    getSessionState('warm')
    try {
      updateSessionState('warm', u)
    } catch {}
    check(label)
    // Twice in a row: the entry brought along must be right for the next update too.
    try {
      updateSessionState('warm', u)
    } catch {}
    check(`${label}, again`)
  }
})

test('an update after another thread changed the session reads both changes', async () => {
  fresh('both')
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const r = require(${ENTRY})
    parentPort.on('message', (n) => {
      r.updateSessionState('both', { there: n, isConnected: n % 2 === 0 })
      parentPort.postMessage(n)
    })
  `, { eval: true })
  try {
    for (const n of [1, 2, 3]) {
      getSessionState('both')
      worker.postMessage(n)
      await new Promise((resolve) => worker.once('message', resolve))
      updateSessionState('both', { error: `here ${n}` })
      const s = getSessionState('both')
      assert.deepEqual([s.there, s.isConnected, s.error], [n, n % 2 === 0, `here ${n}`])
      assert.deepEqual(s, getAllSessions().both)
    }
  } finally {
    await worker.terminate()
  }
})

// An update that changes nothing but the time (values the session has already: what a bot
// repeats with every message) is applied by index.js without a native call, as a touch time
// beside the session's version (registry_core::versions). Every reader must still see it.
const SAME = { isConnected: true, error: null, status: 'open' }
const later = async (t) => { while (Date.now() <= t) await sleep(1) }

test('an update that changes nothing but the time moves lastActivity for every reader', async () => {
  fresh('touched')
  updateSessionState('touched', SAME)
  const before = getSessionState('touched')
  await later(before.lastActivity)
  const from = Date.now()
  updateSessionState('touched', SAME)
  const to = Date.now()
  const mine = getSessionState('touched')
  assert.ok(mine.lastActivity >= from && mine.lastActivity <= to, 'this thread reads the new time')
  assert.deepEqual({ ...mine, lastActivity: 0 }, { ...before, lastActivity: 0 }, 'and nothing else changed')
  assert.deepEqual(getAllSessions().touched, mine, 'a native read of the table has it')
  const row = getStats().activeSessions.find((r) => r.sessionId === 'touched')
  assert.equal(row.lastActivity, new Date(mine.lastActivity).toISOString(), 'getStats has it')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'touch-'))
  try {
    await saveSnapshot(path.join(dir, 'snap.json'))
    const saved = (await loadSnapshot(path.join(dir, 'snap.json'))).find((r) => r.sessionId === 'touched')
    assert.equal(saved.lastActivity, mine.lastActivity, 'a snapshot has it')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const r = require(${ENTRY})
    parentPort.on('message', (u) => {
      if (u) r.updateSessionState('touched', u)
      parentPort.postMessage(r.getSessionState('touched'))
    })
  `, { eval: true })
  const ask = (u) => { worker.postMessage(u); return new Promise((resolve) => worker.once('message', resolve)) }
  try {
    assert.deepEqual(await ask(null), mine, 'another thread reads it')
    // That thread's own touch, once its read is cached there, reaches this thread's cache.
    await later(mine.lastActivity)
    const theirs = await ask(SAME)
    assert.ok(theirs.lastActivity > mine.lastActivity)
    assert.deepEqual(getSessionState('touched'), theirs, "this thread's cached copy follows it")
    // An empty update is a touch too; a change after touches still counts from the touched time.
    await later(theirs.lastActivity)
    updateSessionState('touched', {})
    const empty = getSessionState('touched')
    assert.ok(empty.lastActivity > theirs.lastActivity)
    updateSessionState('touched', { isConnected: false })
    const changed = getSessionState('touched')
    assert.ok(changed.lastActivity >= empty.lastActivity && changed.isConnected === false)
    assert.deepEqual(await ask(null), changed)
  } finally {
    await worker.terminate()
  }
})

test('a Date.now replaced before the package loads never writes a touch time', async () => {
  // Test doubles of Date replace Date.now; index.js, loaded under one, must not mix its times
  // with the native clock's: such updates cross, and lastActivity stays the real time.
  fresh('faked')
  updateSessionState('faked', SAME)
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const realNow = Date.now
    Date.now = () => realNow() + 3600000
    const r = require(${ENTRY})
    r.getSessionState('faked')
    r.updateSessionState('faked', ${JSON.stringify(SAME)})
    parentPort.postMessage(r.getSessionState('faked').lastActivity)
  `, { eval: true })
  try {
    const [lastActivity] = await once(worker, 'message')
    assert.ok(Math.abs(lastActivity - Date.now()) < 60000, `lastActivity ${lastActivity} is the real time, not the fake one`)
    assert.equal(getSessionState('faked').lastActivity, lastActivity)
  } finally {
    await worker.terminate()
  }
})

test('touches and changes from two threads at once leave every cache equal to the table', async () => {
  // A thread that reads a session while another touches it must never keep an older time
  // under the newer version (the touch writes its time before it moves the version; readers
  // read the version first). Both threads run at once on two cores: touches, changes and
  // reads of the same sessions, then every thread's cached copy must equal the table's.
  const ids = ['race0', 'race1', 'race2']
  for (const id of ids) fresh(id)
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const r = require(${ENTRY})
    const ids = ${JSON.stringify(ids)}
    parentPort.on('message', (ms) => {
      if (ms === 0) return parentPort.postMessage(ids.map((id) => r.getSessionState(id)))
      const end = Date.now() + ms
      let n = 0
      while (Date.now() < end) {
        const id = ids[n++ % 3]
        r.updateSessionState(id, n % 7 === 0 ? { isConnected: (n & 8) === 0 } : { isConnected: true })
        r.getSessionState(id)
      }
      parentPort.postMessage(n)
    })
  `, { eval: true })
  const ask = (m) => { worker.postMessage(m); return new Promise((resolve) => worker.once('message', resolve)) }
  try {
    for (let round = 0; round < 5; round++) {
      const theirs = ask(300)
      const end = Date.now() + 300
      let n = 0
      while (Date.now() < end) {
        const id = ids[n++ % 3]
        if (n % 5 === 0) updateSessionState(id, { isConnected: (n & 4) === 0, error: n % 10 === 0 ? 'e' : null })
        else updateSessionState(id, { error: null })
        getSessionState(id)
      }
      assert.ok(await theirs > 0)
      const table = getAllSessions()
      for (const id of ids) assert.deepEqual(getSessionState(id), table[id], `${id}, round ${round}: this thread`)
      assert.deepEqual(await ask(0), ids.map((id) => table[id]), `round ${round}: the other thread`)
    }
  } finally {
    await worker.terminate()
  }
})

test('getAllSessions reshapes only what changed, and still hands out fresh copies that follow every change', async () => {
  // getAllSessions keeps, per thread, the rows it shaped by version slot and is sent only the
  // rows that changed: every answer must still equal a state read for each session.
  const check = (label) => {
    const all = getAllSessions()
    const expected = {}
    for (const id of Object.keys(all)) expected[id] = getSessionState(id)
    assert.deepEqual(all, expected, label)
    assert.equal(JSON.stringify(all), JSON.stringify(expected), `key order: ${label}`)
    return all
  }
  for (let i = 0; i < 5; i++) fresh(`a${i}`)
  updateSessionState('a1', { obj: { deep: [1] }, n: 1 })
  const first = check('first call')
  first.a1.obj.deep.push(2)
  first.a1.n = 99
  first.a2.isConnected = 'mutated'
  delete first.a3
  const second = check('unchanged sessions, rows kept from the first call')
  assert.deepEqual(second.a1.obj, { deep: [1] }, 'a returned copy changed nothing')
  assert.equal(second.a2.isConnected, false)
  assert.notEqual(second.a1, first.a1)
  assert.notEqual(second.a1.obj, first.a1.obj, 'nested objects are fresh too')
  updateSessionState('a2', { isConnected: true, error: 'e' })
  updateSessionState('a4', { added: 'x' })
  assert.deepEqual([check('after updates').a2.error, check('again').a4.added], ['e', 'x'])
  unregisterSocket('a0')
  fresh('b0') // may take a0's version slot
  assert.deepEqual(Object.keys(check('a removed session and a new one')), ['a1', 'a2', 'a3', 'a4', 'b0'])
  registerSocket('a3', other, { track: false })
  assert.equal('added' in check('a replaced session starts over').a3, false)
  // A change made by another thread.
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const r = require(${ENTRY})
    parentPort.on('message', () => {
      r.updateSessionState('a4', { there: true })
      parentPort.postMessage(r.getAllSessions().a4.there)
    })
  `, { eval: true })
  try {
    worker.postMessage(0)
    assert.equal(await new Promise((resolve) => worker.once('message', resolve)), true)
  } finally {
    await worker.terminate()
  }
  assert.equal(check('changed by another thread').a4.there, true)
  // Many sessions, then few: the rows kept for the gone ones are let go, and answers stay right.
  for (let i = 0; i < 1500; i++) fresh(`many${i}`)
  assert.equal(Object.keys(check('1,505 sessions')).length, 1505)
  for (let i = 0; i < 1500; i++) unregisterSocket(`many${i}`)
  check('5 sessions again')
  assert.deepEqual(Object.keys(check('and again')), ['a1', 'a2', 'a3', 'a4', 'b0'])
})

test('getStats follows every change', () => {
  const iso = (ms) => new Date(ms).toISOString()
  const check = (label) => {
    const stats = getStats()
    const all = getAllSessions()
    const expected = Object.entries(all).map(([sessionId, s]) => ({
      sessionId, createdAt: iso(s.createdAt), lastActivity: iso(s.lastActivity), isConnected: s.isConnected, error: s.error, status: s.status
    }))
    assert.deepEqual(stats.activeSessions, expected, label)
    assert.deepEqual(stats.errorSessions, expected.filter((e) => e.error).map(({ sessionId, error }) => ({ sessionId, error })), label)
    assert.deepEqual(stats.connectedSessions, expected.filter((e) => e.isConnected).map((e) => e.sessionId), label)
    return stats
  }
  for (let i = 0; i < 5; i++) fresh(`st${i}`)
  const first = check('first call')
  first.activeSessions[1].sessionId = 'mutated'
  first.activeSessions[2].error = 'mutated'
  check('a caller changing a result changes nothing')
  updateSessionState('st2', { error: 'broken', isConnected: true })
  updateSessionState('st3', { createdAt: 0 })
  check('after updates')
  updateSessionState('st2', { error: null })
  check('error cleared')
  unregisterSocket('st0')
  fresh('other0')
  check('a removed session and a new one')
  registerSocket('st4', other, { track: false })
  assert.equal(check('a replaced session').totalSessions, 5)
})

test('getAllSessions and getStats list sessions in registration order, a replaced id keeping its place', () => {
  const expected = []
  for (let i = 0; i < 40; i++) {
    fresh(`o${i}`)
    expected.push(`o${i}`)
  }
  registerSocket('o3', other, { track: false })
  const listed = () => [Object.keys(getAllSessions()), getStats().activeSessions.map((s) => s.sessionId)]
  assert.deepEqual(listed(), [expected, expected], 'dense registration numbers')
  // Many registrations gone since: the numbers of the live sessions are far apart.
  for (let i = 0; i < 600; i++) {
    fresh(`churn${i}`)
    unregisterSocket(`churn${i}`)
  }
  for (let i = 0; i < 36; i++) unregisterSocket(`o${i}`)
  fresh('late')
  registerSocket('o37', other, { track: false })
  const after = ['o36', 'o37', 'o38', 'o39', 'late']
  assert.deepEqual(listed(), [after, after], 'sparse registration numbers')
})

test('getAllSessions and getStats are shaped from the same state', () => {
  fresh('__proto__')
  fresh('b')
  updateSessionState('b', { isConnected: true, error: 'é€', custom: [1] })
  const all = getAllSessions()
  assert.deepEqual(Object.keys(all), ['__proto__', 'b'])
  assert.equal(Object.getPrototypeOf(all), Object.prototype)
  const b = getSessionState('b')
  assert.deepEqual(all.b, b)
  const stats = getStats()
  assert.equal(stats.totalSessions, 2)
  assert.deepEqual(stats.connectedSessions, ['b'])
  assert.deepEqual(stats.errorSessions, [{ sessionId: 'b', error: 'é€' }])
  assert.equal(stats.activeSessions[1].lastActivity, new Date(b.lastActivity).toISOString())
})

test('the shaped state is the very object the native conversion builds (waitForState), key order included', async () => {
  const { waitForState } = registry
  fresh('plain')
  updateSessionState('plain', { status: 'qr' })
  fresh('full')
  updateSessionState('full', { status: 'closed', isConnected: true, error: 'é ☃ 😀', custom: { nested: [1, 'two', null, { deep: true }] }, n: 1.5, createdAt: -1.5 })
  for (const id of ['plain', 'full']) {
    const status = getSessionState(id).status
    const fromNative = await waitForState(id, status)
    const shaped = getSessionState(id)
    assert.deepEqual(shaped, fromNative, id)
    assert.equal(JSON.stringify(shaped), JSON.stringify(fromNative), `${id}: key order`)
    assert.deepEqual(getAllSessions()[id], fromNative, `${id} in getAllSessions`)
  }
})

test('getStats and getAllSessions keep their working memory for the next call, except what a very large registry needed', () => {
  // `__workMemory()`: the bytes this thread keeps between calls, [getAllSessions', getStats'].
  for (let i = 0; i < 1000; i++) fresh(`w${i}`)
  updateSessionState('w1', { error: 'e' })
  assert.equal(getStats().totalSessions, 1000)
  assert.equal(Object.keys(getAllSessions()).length, 1000)
  const [all, stats] = binding.__workMemory()
  assert.ok(all > 0 && stats > 0, `kept at 1,000 sessions: ${all}, ${stats}`)
  // At 100,000 sessions both calls need more than the budget (8 MiB): a thread that asked
  // once does not carry it on.
  for (let i = 1000; i < 100_000; i++) fresh(`w${i}`)
  assert.equal(getStats().totalSessions, 100_000)
  assert.equal(Object.keys(getAllSessions()).length, 100_000)
  assert.deepEqual(binding.__workMemory(), [0, 0])
  // And the next call over fewer sessions works from nothing.
  clearAll()
  fresh('after')
  assert.equal(getStats().totalSessions, 1)
  assert.ok(binding.__workMemory()[1] > 0)
})
