// getSessionState's copies of custom data. A cached state's custom data is copied generically
// at first, then, once its structure has been read often enough, by a copier compiled for that
// structure (index.js, "Session state"). Whichever copies it, every answer must be the same:
// own enumerable data in the same key order, arrays as arrays, -0 kept, the prototypes of
// plain objects, and independent of every other answer and of the cache. Each check reads
// well past the point where a copier is compiled (a few hundred reads of the same structure,
// and more than COMPILE_AT = 64 reads of one version). Real Baileys sockets (untracked, never
// connected) under each id.

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

import { registry } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket } from './support/baileys.mjs'

const { registerSocket, updateSessionState, getSessionState, getAllSessions, clearAll } = registry

// Enough reads of one version for any of its copiers to be compiled and used.
const READS = 150

let baileys
let server
let sock

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
  sock = makeTestSocket({ baileys, url: server.url('silent', { id: 'state-copy' }), connectTimeoutMs: 1500 })
  fresh('fields')
  FIELDS = new Set(Object.keys(getSessionState('fields')))
  clearAll()
})

afterEach(() => clearAll())

after(async () => {
  clearAll()
  sock.end(undefined)
  await server.close()
})

const fresh = (id) => registerSocket(id, sock, { track: false })

// The registry's own fields (those of a state without custom data).
let FIELDS

/** The custom part of a state: its keys that are not the registry's own fields, in order. */
function customOf (state) {
  const out = {}
  for (const key of Object.keys(state)) {
    if (FIELDS.has(key)) continue
    Object.defineProperty(out, key, { value: state[key], enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** Every key, in order, at every level of `v`, with the kind of each container. */
function layoutOf (v) {
  if (typeof v !== 'object' || v === null) return typeof v
  if (Array.isArray(v)) return ['array', ...v.map(layoutOf)]
  assert.equal(Object.getPrototypeOf(v), Object.prototype, 'a copied object is a plain object')
  return ['object', ...Object.keys(v).map((k) => [k, layoutOf(v[k])])]
}

/** Changes every container of `v` in place (a caller mutating its answer). */
function scribble (v) {
  if (typeof v !== 'object' || v === null) return
  if (Array.isArray(v)) {
    for (const item of v) scribble(item)
    v.push('scribbled')
    v[0] = 'scribbled'
    return
  }
  for (const key of Object.keys(v)) {
    scribble(v[key])
    if (typeof v[key] !== 'object' || v[key] === null) v[key] = 'scribbled'
  }
  v.scribbled = true
}

/**
 * Reads `id` READS times: every answer must hold `expected` as its custom data (key order,
 * -0 and kinds included), the same as getAllSessions (which never uses this cache) gives, and
 * share no object with the previous answer. Each answer is then scribbled over, which must
 * change nothing for the next.
 */
function readsBack (id, expected, label) {
  const table = getAllSessions()[id]
  assert.equal(JSON.stringify(getSessionState(id)), JSON.stringify(table), `${label}: same as getAllSessions`)
  let previous = null
  for (let r = 0; r < READS; r++) {
    const s = getSessionState(id)
    const custom = customOf(s)
    assert.deepStrictEqual(custom, expected, `${label}: read ${r}`)
    assert.deepStrictEqual(layoutOf(custom), layoutOf(expected), `${label}: key order, read ${r}`)
    if (previous !== null) {
      for (const key of Object.keys(custom)) {
        if (typeof custom[key] === 'object' && custom[key] !== null) {
          assert.notEqual(custom[key], previous[key], `${label}: ${key} shared between answers, read ${r}`)
        }
      }
    }
    previous = s
    scribble(s)
  }
}

const PROFILE = { profile: { name: 'Ana', tags: ['vip', 'beta'], address: { city: 'Lima', zip: null } }, visits: 3 }

test('copies are independent before and after compilation, for one session and many', () => {
  fresh('one')
  updateSessionState('one', PROFILE)
  readsBack('one', PROFILE, 'one session')

  // One structure over many sessions (one version each): compiled after a few of them.
  const ids = Array.from({ length: 24 }, (_, i) => `many${i}`)
  for (const id of ids) {
    fresh(id)
    updateSessionState(id, { ...PROFILE, visits: ids.indexOf(id) })
  }
  for (const id of ids) readsBack(id, { ...PROFILE, visits: ids.indexOf(id) }, id)
  // Interleaved reads of answers kept alive: none affects another.
  const kept = ids.map((id) => getSessionState(id))
  for (const s of kept) s.profile.tags.length = 0
  for (const id of ids) assert.deepStrictEqual(getSessionState(id).profile.tags, ['vip', 'beta'], id)
  assert.ok(kept.every((s, i) => i === 0 || s.profile !== kept[i - 1].profile))
})

test('key order: integer-like keys first, then insertion order, at every level', () => {
  const data = {
    zeta: 1,
    10: 'ten',
    alpha: { b: 1, 2: 'two', a: 2, 1: 'one', ' ': 'space', '': 'empty' },
    2: [{ y: 1, x: 2 }, { 0: 'zero', z: 3 }],
    '-1': 'minus one',
    4294967295: 'not an index',
    '01': 'not an integer'
  }
  // The order JSON gives (the registry keeps custom data as JSON).
  const expected = JSON.parse(JSON.stringify(data))
  for (let i = 0; i < 12; i++) {
    fresh(`order${i}`)
    updateSessionState(`order${i}`, data)
    readsBack(`order${i}`, expected, `order${i}`)
  }
  // The registry's own fields come first, the custom keys after them.
  const keys = Object.keys(getSessionState('order0'))
  assert.deepEqual(keys.slice(0, 2), ['2', '10'], 'integer-like keys lead any object')
  assert.ok(keys.indexOf('createdAt') < keys.indexOf('zeta'))
})

test('__proto__ and constructor are refused at any depth; look-alike keys are plain own data', () => {
  fresh('proto')
  updateSessionState('proto', { keep: { n: 1 } })
  for (const bad of [
    JSON.parse('{"__proto__": {"polluted": true}}'),
    JSON.parse('{"x": {"__proto__": {"polluted": true}}}'),
    JSON.parse('{"x": [{"__proto__": 1}]}'),
    { constructor: { prototype: { polluted: true } } },
    { x: { prototype: 1 } }
  ]) {
    assert.throws(() => updateSessionState('proto', bad), { code: 'ERR_FORBIDDEN_STATE_KEY' })
  }
  readsBack('proto', { keep: { n: 1 } }, 'after refused updates')

  const lookAlike = { __proto_: { __proto__x: 1, _proto__: [2] }, ' __proto__': { 'constructor ': 3 }, protoType: null }
  const expected = JSON.parse(JSON.stringify(lookAlike))
  for (let i = 0; i < 10; i++) {
    fresh(`alike${i}`)
    updateSessionState(`alike${i}`, lookAlike)
    readsBack(`alike${i}`, expected, `alike${i}`)
  }
  assert.equal(({}).polluted, undefined, 'Object.prototype untouched')
  assert.equal(Object.getPrototypeOf(getSessionState('alike0').__proto_), Object.prototype)
})

test('copies define their keys: setters and enumerable keys on Object.prototype play no part', () => {
  const ids = Array.from({ length: 10 }, (_, i) => `hostile${i}`)
  for (const id of ids) {
    fresh(id)
    updateSessionState(id, PROFILE)
    readsBack(id, PROFILE, `${id} before`)
  }
  // A string: pushing to an array would itself run the setter of '0'.
  let hit = ''
  for (const key of ['profile', 'name', 'tags', 'visits', 'city', '0']) {
    Object.defineProperty(Object.prototype, key, { set () { hit += key + ' ' }, configurable: true }) // eslint-disable-line no-extend-native
  }
  Object.prototype.extra = 'inherited' // eslint-disable-line no-extend-native
  try {
    for (const id of ids) {
      for (let r = 0; r < 80; r++) {
        const s = getSessionState(id)
        assert.ok(Object.hasOwn(s, 'profile') && Object.hasOwn(s.profile, 'name') && Object.hasOwn(s.profile.tags, '0'), id)
        assert.ok(!Object.hasOwn(s, 'extra') && !Object.hasOwn(s.profile, 'extra'), `${id}: inherited keys are not copied`)
      }
    }
    // A new version while they are there: the generic copy, then the compiled one again.
    // updateSessionState's own working array never reaches the setter of '0' (it once
    // swallowed the value and the update removed `visits`).
    updateSessionState(ids[0], { visits: 4 })
    assert.equal(hit, '', 'the update ran no setter on Object.prototype')
    updateSessionState(ids[1], Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`k${i}`, i])))
    assert.equal(getSessionState(ids[1]).k11, 11, 'an update of more than 8 keys keeps them all')
    for (let r = 0; r < 80; r++) assert.equal(getSessionState(ids[0]).visits, 4)
  } finally {
    for (const key of ['profile', 'name', 'tags', 'visits', 'city', '0', 'extra']) delete Object.prototype[key]
  }
  assert.equal(hit, '', 'no setter on Object.prototype ran')
})

test('nested arrays, empty containers, -0 and other primitives', () => {
  const data = {
    matrix: [[1, 2], [], [[-0, 0]], [{ a: [] }]],
    empty: {},
    none: [],
    negZero: -0,
    deep: { z: -0, list: [-0, 1.5, -1e-300] },
    text: 'é€😀 "quoted"\n',
    flags: [true, false, null],
    big: 1e21,
    small: 5e-324
  }
  for (let i = 0; i < 10; i++) {
    fresh(`nested${i}`)
    updateSessionState(`nested${i}`, data)
    readsBack(`nested${i}`, data, `nested${i}`)
  }
  const s = getSessionState('nested0')
  assert.ok(Array.isArray(s.matrix) && Array.isArray(s.matrix[2][0]) && Array.isArray(s.none))
  assert.ok(Object.is(s.negZero, -0) && Object.is(s.deep.z, -0) && Object.is(s.matrix[2][0][0], -0))
})

test('a structure that changes after its copier was compiled is copied as it now is', () => {
  const ids = Array.from({ length: 10 }, (_, i) => `change${i}`)
  for (const id of ids) {
    fresh(id)
    updateSessionState(id, PROFILE)
    readsBack(id, PROFILE, `${id} compiled`)
  }
  const id = ids[0]
  const steps = [
    // Through the object reader (nested data).
    [{ profile: { name: 'Ana', tags: ['vip', 'beta', 'gamma'], address: { city: 'Lima', zip: null } } }, null],
    [{ profile: { name: 'Ana', tags: 'none', address: [1, 2] } }, null],
    [{ profile: 'gone flat' }, null],
    [{ profile: { tags: [{ deep: { deeper: [1] } }] } }, null],
    // Through the flat route: this thread patches its cached copy in place.
    [{ visits: 'many' }, null],
    [{ added: 1 }, null],
    [{ added: -0.5, more: null }, null],
    [{ visits: undefined }, 'visits'],
    [{ profile: undefined }, 'profile']
  ]
  let expected = { ...PROFILE }
  for (const [update, removed] of steps) {
    updateSessionState(id, update)
    expected = { ...expected, ...update }
    if (removed !== null) {
      delete expected[removed]
      // The core may move a key into the place of a removed one: the order is the table's.
      const order = Object.keys(customOf(getAllSessions()[id]))
      assert.deepEqual([...order].sort(), Object.keys(expected).sort())
      expected = Object.fromEntries(order.map((key) => [key, expected[key]]))
    }
    readsBack(id, JSON.parse(JSON.stringify(expected)), `after ${JSON.stringify(update)}`)
  }
  // The others kept theirs.
  for (const other of ids.slice(1)) readsBack(other, PROFILE, `${other} unchanged`)
  // The first structure again, on a session whose copier was a different one.
  updateSessionState(id, { added: undefined, more: undefined })
  updateSessionState(id, PROFILE)
  readsBack(id, PROFILE, 'back to the first structure')
})

test('many structures (more than the structure cache keeps), large and deep data', () => {
  const dataOf = (i) => ({ [`k${i}`]: { i, list: Array.from({ length: i % 5 }, (_, j) => ({ j })) }, tag: `t${i}` })
  const ids = Array.from({ length: 300 }, (_, i) => `struct${i}`)
  for (const [i, id] of ids.entries()) {
    fresh(id)
    updateSessionState(id, dataOf(i))
  }
  for (let round = 0; round < 2; round++) {
    for (const [i, id] of ids.entries()) {
      const expected = dataOf(i)
      for (let r = 0; r < 70; r++) assert.deepStrictEqual(customOf(getSessionState(id)), expected, `${id}, round ${round}`)
    }
  }
  for (const id of ids.slice(0, 20)) readsBack(id, dataOf(ids.indexOf(id)), id)

  // Past the bounds of a compiled copier: many values, deep nesting.
  let deep = { leaf: [-0] }
  for (let d = 0; d < 12; d++) deep = { d, next: deep }
  const large = { values: Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? { i } : i)), deep }
  for (let i = 0; i < 10; i++) {
    fresh(`large${i}`)
    updateSessionState(`large${i}`, large)
    readsBack(`large${i}`, large, `large${i}`)
  }
})

test('a copier compiled while Array.prototype.push and join are patched copies right once they are restored', () => {
  const data = { profile: { name: 'Ana', tags: ['vip', 'new'] }, visits: 3 }
  const { push, join } = Array.prototype
  // The caller's own patches: they must not shape what the registry keeps after they are gone.
  Array.prototype.push = function () { return 0 } // eslint-disable-line no-extend-native
  Array.prototype.join = function () { return 'x' } // eslint-disable-line no-extend-native
  try {
    fresh('patched')
    updateSessionState('patched', data)
    // Enough reads of one version to compile its copier, all while the patches are there.
    for (let r = 0; r < READS; r++) assert.deepEqual(customOf(getSessionState('patched')), data)
  } finally {
    Array.prototype.push = push // eslint-disable-line no-extend-native
    Array.prototype.join = join // eslint-disable-line no-extend-native
  }
  for (let r = 0; r < READS; r++) assert.deepEqual(customOf(getSessionState('patched')), data)
})

test('a species constructor a caller put on Array.prototype.constructor is never run by a copy', () => {
  const short = { list: [1, [2, 3], { deep: ['x'] }] }
  const long = { many: Array.from({ length: 3000 }, (_, i) => (i % 2 ? i : [i])) }
  const own = Object.getOwnPropertyDescriptor(Array.prototype, 'constructor')
  let made = 0
  class Species {
    constructor () {
      made++
      return Object.freeze({ length: 0 })
    }
  }
  fresh('species-short')
  fresh('species-long')
  updateSessionState('species-short', short)
  updateSessionState('species-long', long)
  // `slice` and friends ask the array's constructor for a species: this one answers with a
  // frozen non-array, made by the caller's own code.
  Object.defineProperty(Array.prototype, 'constructor', { value: { [Symbol.species]: Species }, writable: true, configurable: true }) // eslint-disable-line no-extend-native
  try {
    // The generic copy (the first reads of a version, and every getAllSessions row).
    for (let r = 0; r < 3; r++) {
      for (const [id, data] of [['species-short', short], ['species-long', long]]) {
        const read = customOf(getSessionState(id))
        assert.deepStrictEqual(read, data, `${id}: read ${r}`)
        assert.ok(Array.isArray(Object.values(read)[0]), `${id}: an array stays an array`)
        assert.deepStrictEqual(customOf(getAllSessions()[id]), data, `${id}: getAllSessions, call ${r}`)
      }
    }
  } finally {
    Object.defineProperty(Array.prototype, 'constructor', own) // eslint-disable-line no-extend-native
  }
  assert.equal(made, 0, 'no species constructor ran')
})

test('every answer has the layout\'s fields in order, then the custom keys, and nothing of the cache', () => {
  // A cached state is one object with its cache bookkeeping (index.js): a copy must carry only
  // the layout's fields, whichever path made it.
  const layoutKeys = createRequire(import.meta.url)('../binding.js').__stateLayout().fields.map((f) => f[0])
  const check = (state, custom, label) => assert.deepEqual(Object.keys(state), [...layoutKeys, ...custom], label)
  fresh('keys')
  check(getSessionState('keys'), [], 'first read')
  check(getSessionState('keys'), [], 'cached read')
  updateSessionState('keys', { isConnected: true })
  check(getSessionState('keys'), [], "read after this thread's update (the cached entry patched)")
  check(getAllSessions().keys, [], 'getAllSessions, first call')
  check(getAllSessions().keys, [], 'getAllSessions, from its rows')
  updateSessionState('keys', { profile: { a: 1 }, n: 2 })
  // Past the point where a copier is compiled for the structure.
  for (let r = 0; r < READS; r++) check(getSessionState('keys'), ['profile', 'n'], `custom read ${r}`)
  updateSessionState('keys', { visits: 1 })
  check(getSessionState('keys'), ['profile', 'n', 'visits'], 'after a custom key added by this thread')
  check(getAllSessions().keys, ['profile', 'n', 'visits'], 'getAllSessions with custom keys')
})
