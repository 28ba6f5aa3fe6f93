// The package's entry point ("main"). It loads binding.js, the binding loader that
// `napi build --platform` generates (and that must not be edited by hand), explains what
// happens when no native binary can be loaded (instead of the generated loader's bare "Cannot
// find native binding" and its stack of require() errors, the error says which binary was
// looked for and what to do), and implements in JavaScript what only lives in one thread:
// see the sections below.
//
// The exports are one object literal of plain names, `module.exports = { a, b, ... }`: Node
// finds the named exports of a CommonJS module for
// `import { registerSocket } from 'baileys-socket-registry'` with cjs-module-lexer, which
// reads exactly that form. The binding's internal functions (`__` names) are not exported.
'use strict'

// The addon asks `process.getBuiltinModule('worker_threads')` for the thread id it records in
// every session; that function exists from Node 20.16 only. On older versions this loader,
// which can require, hands the id over in a global that lives only while the addon loads.
const THREAD_ID_KEY = '__baileysSocketRegistryThreadId'
Object.defineProperty(globalThis, THREAD_ID_KEY, {
  value: require('node:worker_threads').threadId,
  configurable: true
})
let native
try {
  native = require('./binding.js')
} catch (error) {
  throw explainLoadError(error)
} finally {
  delete globalThis[THREAD_ID_KEY]
}

// Built-ins this module relies on, taken now: a caller may replace them later (see
// __test__/fuzz.spec.mjs).
const { create, getPrototypeOf, setPrototypeOf, defineProperty, keys: objectKeys } = Object
const { isArray } = Array
const ReflectApply = Reflect.apply
const ArraySlice = Array.prototype.slice
const { stringify, parse } = JSON
const ObjectPrototype = Object.prototype
const NewFunction = Function
const MapPrototype = Map.prototype
const MapMethods = {
  get: MapPrototype.get,
  set: MapPrototype.set,
  delete: MapPrototype.delete,
  clear: MapPrototype.clear
}
/** A Map whose own get/set/delete/clear are the originals, whatever Map.prototype holds later. */
function ownMap () {
  const m = new Map()
  for (const name of objectKeys(MapMethods)) defineProperty(m, name, { value: MapMethods[name] })
  return m
}

// ---------------------------------------------------------------------------------------------
// Session state: updateSessionState, getSessionState, getAllSessions, getStats.
//
// The state lives in the native, process-wide table; every rule is in Rust. Here:
// - updateSessionState picks the transport of its argument. A flat object of primitives (the
//   common case) crosses as one string built by concatenation (registry_core::update::parse_flat
//   describes it; JSON.stringify cost more than twice as much), which the core reads and
//   checks; anything else goes to the native reader of the object itself. Both apply the same
//   rules (registry_core::update), with the same errors.
// - Results are shaped here from the state layout the binding declares once
//   (registry_core::layout::FIELDS): at load, two small functions are generated from it that
//   build the objects with object literals.
// - getSessionState keeps, per thread, the last state shaped for each id with the version it
//   had; every change of a session bumps its version in memory shared with the native table,
//   so while the version holds, a copy of the cached state is the answer, without a native call.

const {
  __updateState: nativeUpdate,
  __updateFlat: nativeUpdateFlat,
  __state: nativeState,
  __allStates: nativeAllStates,
  __stats: nativeStats,
  __versionPage: nativeVersionPage
} = native
const LAYOUT = native.__stateLayout()
const STATUS_NAMES = LAYOUT.statusNames
const SCRATCH = new Float64Array(LAYOUT.scratch)
const PAGE_SHIFT = LAYOUT.pageShift
const PAGE_MASK = (1 << PAGE_SHIFT) - 1
const NO_SLOT = LAYOUT.noSlot
// Keys the fast route leaves to the native reader, which refuses them: forbidden and
// read-only keys, whose values it never reads.
const RESERVED = create(null)
for (const key of LAYOUT.reservedKeys) RESERVED[key] = true
// Bounds of the fast route, well inside the limits (64 keys of at most 1,024 UTF-16 units,
// strings of at most 65,536: under 13 MiB in all), so the core never refuses its size.
const FAST_KEYS = 64
const FAST_KEY_UNITS = 1024
const FAST_STRING_UNITS = 65536

const { shape, shapeCustom, copy, copyCustom } = compileShapers(LAYOUT.fields)

/**
 * Generates, from the layout, `shape(m, b, t, at)` (a state from the numbers of `m` from `b`
 * and the strings of `t` from `at`) and `copy(o)` (a copy of such a state with fresh nested
 * objects), and variants of both that add the custom keys of `custom`. Object literals define
 * their keys, so no setter on Object.prototype runs.
 */
function compileShapers (fields) {
  let slot = 0
  function shaped (list) {
    const parts = []
    for (const [name, kind, inner] of list) {
      const i = slot++
      const key = stringify(name)
      const n = `m[b + ${i}]`
      if (kind === 'num') parts.push(`${key}: ${n}`)
      else if (kind === 'optNum') parts.push(`${key}: (x = ${n}) !== x ? null : x`)
      else if (kind === 'bool') parts.push(`${key}: ${n} !== 0`)
      // Lengths and indexes as small integers (| 0): doubles passed to slice would be boxed.
      else if (kind === 'optStr') parts.push(`${key}: (n = ${n} | 0) < 0 ? null : t.slice(at, at += n)`)
      else if (kind === 'status') parts.push(`${key}: (n = ${n} | 0) < 0 ? null : S[n]`)
      else if (kind === 'group') parts.push(`${key}: ${n} === 0 ? null : {${shaped(inner)}}`)
      else throw new Error(`unknown state field kind ${kind}`)
    }
    return parts.join(', ')
  }
  function copied (list, from, depth) {
    const parts = []
    for (const [name, kind, inner] of list) {
      const key = stringify(name)
      if (kind === 'group') {
        const g = `g${depth}`
        parts.push(`${key}: (${g} = ${from}[${key}]) === null ? null : {${copied(inner, g, depth + 1)}}`)
      } else {
        parts.push(`${key}: ${from}[${key}]`)
      }
    }
    return parts.join(', ')
  }
  // Separate variants without the custom keys: a spread, even of undefined, makes V8 build the
  // literal on a slower path.
  const shapeBody = `let n, x; return {${shaped(fields)}}`
  slot = 0
  const shapeCustomBody = `let n, x; return {${shaped(fields)}, ...custom}`
  const copyBody = `let g1, g2, g3; return {${copied(fields, 'o', 1)}}`
  const copyCustomBody = `let g1, g2, g3; return {${copied(fields, 'o', 1)}, ...custom}`
  // eslint-disable-next-line no-new-func
  const make = new NewFunction('S', `'use strict'
    return {
      shape: function shape (m, b, t, at) { ${shapeBody} },
      shapeCustom: function shapeCustom (m, b, t, at, custom) { ${shapeCustomBody} },
      copy: function copy (o) { ${copyBody} },
      copyCustom: function copyCustom (o, custom) { ${copyCustomBody} }
    }`)
  return make(STATUS_NAMES)
}

// Version pages (Uint32Array views of the native counters), by page number.
const versionPages = []
function versionPage (slot) {
  const p = slot >>> PAGE_SHIFT
  let page = versionPages[p]
  if (page === undefined) {
    page = new Uint32Array(nativeVersionPage(p))
    versionPages[p] = page
  }
  return page
}

// Per thread: id -> { page, index, version, state, custom } of the last state shaped for it
// (`custom`: the parsed custom keys). An entry goes when its session is found gone; `state`
// and `custom` are never handed out, only copies.
const stateCache = ownMap()

/**
 * Merges every own key of `updates` into the session's state and sets `lastActivity` to now.
 * Keys the registry does not know are kept (as JSON data). An unknown id does nothing.
 *
 * Throws `ERR_INVALID_STATE_UPDATE` when `updates` is not an object,
 * `ERR_INVALID_STATE_VALUE` for a value of the wrong type (`isConnected` must be a boolean,
 * `error` a string/null/Error, `status` a known status or null; functions, symbols and bigints
 * are not data), `ERR_FORBIDDEN_STATE_KEY` for `__proto__`, `constructor` or `prototype` (at
 * any depth), `ERR_READ_ONLY_STATE_KEY` for keys only the registry sets, and
 * `ERR_STATE_TOO_LARGE` (RangeError) past a limit: objects nested 64 deep, 100,000 values, a
 * key of 4 KiB, a string of 16 MiB, 32 MiB of keys and strings in all. Nothing is changed when
 * it throws.
 */
function updateSessionState (sessionId, updates) {
  if (typeof updates !== 'object' || updates === null || isArray(updates)) {
    return nativeUpdate(sessionId, updates)
  }
  const names = objectKeys(updates)
  const n = names.length
  if (n > FAST_KEYS) return nativeUpdate(sessionId, updates)
  let flat = ''
  // What was read, for the object reader if it has to take over.
  const values = new Array(n)
  for (let i = 0; i < n; i++) {
    const key = names[i]
    if (key.length > FAST_KEY_UNITS || RESERVED[key] === true) {
      return nativeUpdate(sessionId, rest(updates, names, i, values))
    }
    const value = updates[key]
    values[i] = value
    const type = typeof value
    flat += key.length + ':' + key
    if (type === 'boolean') flat += value ? 't' : 'f'
    else if (value === null) flat += 'n'
    else if (type === 'undefined') flat += 'u'
    else if (type === 'string' && value.length <= FAST_STRING_UNITS) flat += 's' + value.length + ':' + value
    // -0 would read back as 0: left to the object reader.
    else if (type === 'number' && (value !== 0 || 1 / value > 0)) flat += 'd' + value + ';'
    else return nativeUpdate(sessionId, rest(updates, names, i + 1, values))
  }
  return nativeUpdateFlat(sessionId, flat)
}

/**
 * For the native reader, an object with the keys of `updates` in order: the first `done`
 * values as read already, the others as getters that read `updates` when the reader gets
 * there, so each of the caller's getters or traps runs once, in the same order as with
 * `updates` itself (and not at all after a key the reader refuses).
 */
function rest (updates, names, done, values) {
  const o = create(null)
  for (let i = 0; i < names.length; i++) {
    const key = names[i]
    if (i < done) {
      defineProperty(o, key, { value: values[i], enumerable: true, configurable: true, writable: true })
    } else {
      defineProperty(o, key, { get: () => updates[key], enumerable: true, configurable: true })
    }
  }
  return o
}

/** The session's state as a new plain object, or `null`. Answers for every thread. */
function getSessionState (sessionId) {
  const c = stateCache.get(sessionId)
  if (c !== undefined && c.page[c.index] === c.version) {
    return c.custom === undefined ? copy(c.state) : copyCustom(c.state, cloneData(c.custom))
  }
  const t = nativeState(sessionId)
  if (t === null) {
    if (c !== undefined) stateCache.delete(sessionId)
    return null
  }
  const m = SCRATCH
  const slot = m[0]
  const version = m[1]
  const customLen = m[2] | 0
  // Parsed once per change; each answer gets its own copy (cloneData).
  const custom = customLen < 0 ? undefined : parse(t.slice(0, customLen))
  const state = shape(m, 3, t, customLen < 0 ? 0 : customLen)
  if (slot === NO_SLOT) {
    if (c !== undefined) stateCache.delete(sessionId)
  } else if (c !== undefined) {
    // The entry is this thread's own object: updated in place, one allocation less per change.
    c.page = versionPage(slot)
    c.index = slot & PAGE_MASK
    c.version = version
    c.state = state
    c.custom = custom
  } else {
    stateCache.set(sessionId, { page: versionPage(slot), index: slot & PAGE_MASK, version, state, custom })
  }
  return custom === undefined ? copy(state) : copyCustom(state, cloneData(custom))
}

/**
 * A deep copy of JSON data (what JSON.parse made: plain objects, dense arrays, primitives),
 * cheaper than parsing the text again. Only own data properties that already exist are
 * assigned, so no setter on a prototype runs.
 */
function cloneData (v) {
  if (typeof v !== 'object' || v === null) return v
  if (isArray(v)) {
    const a = ReflectApply(ArraySlice, v, [])
    for (let i = 0; i < a.length; i++) {
      const item = a[i]
      if (typeof item === 'object' && item !== null) a[i] = cloneData(item)
    }
    return a
  }
  const o = { ...v }
  const names = objectKeys(o)
  for (let i = 0; i < names.length; i++) {
    const item = o[names[i]]
    if (typeof item === 'object' && item !== null) o[names[i]] = cloneData(item)
  }
  return o
}

/** Every session of the process as `{ [sessionId]: state }`, in registration order. */
function getAllSessions () {
  const data = nativeAllStates()
  const t = data[0]
  const m = new Float64Array(data[1])
  const n = data[2]
  const row = m.length / (n || 1)
  // No prototype while filling: an id such as '__proto__' is then an ordinary own key.
  const out = create(null)
  for (let j = 0, b = 0; j < n; j++, b += row) {
    let at = m[b] | 0
    const id = t.slice(at, at += m[b + 1] | 0)
    const customLen = m[b + 2] | 0
    out[id] = customLen < 0 ? shape(m, b + 3, t, at) : shapeCustom(m, b + 3, t, at + customLen, parse(t.slice(at, at + customLen)))
  }
  return setPrototypeOf(out, ObjectPrototype)
}

const STAT = LAYOUT.stats

/**
 * Statistics for the whole process, shaped as socket-factory.js's `getStats()` plus
 * `byStatus`, `idleAfterMs` and `socketFaults`.
 */
function getStats () {
  const [t, buf, n, idleAfterMs, faultCount, faultLast] = nativeStats()
  const R = STAT.ints
  const S = STATUS_NAMES.length + 1
  const m = new Int32Array(buf)
  const c = n * R
  const active = new Array(n)
  const inactive = new Array(m[c + S])
  const errors = new Array(m[c + S + 1])
  const connected = new Array(m[c + S + 2])
  const disconnected = new Array(m[c + S + 3])
  let ni = 0
  let ne = 0
  let nc = 0
  let nd = 0
  for (let i = 0, k = 0; i < n; i++, k += R) {
    let at = m[k]
    const sessionId = t.slice(at, at += m[k + 1])
    const createdAt = t.slice(at, at += m[k + 2])
    const lastLen = m[k + 3]
    const lastActivity = lastLen === STAT.sameAsCreated ? createdAt : t.slice(at, at += lastLen)
    const errLen = m[k + 4]
    const error = errLen < 0 ? null : t.slice(at, at + errLen)
    const f = m[k + 5]
    const st = m[k + 6]
    const isConnected = (f & STAT.connected) !== 0
    active[i] = { sessionId, createdAt, lastActivity, isConnected, error, status: st < 0 ? null : STATUS_NAMES[st] }
    if ((f & STAT.idle) !== 0) inactive[ni++] = sessionId
    if ((f & STAT.error) !== 0) errors[ne++] = { sessionId, error }
    if (isConnected) connected[nc++] = sessionId
    else disconnected[nd++] = sessionId
  }
  // The sizes came with the data; these only guard against a hole if they ever disagreed.
  inactive.length = ni
  errors.length = ne
  connected.length = nc
  disconnected.length = nd
  const byStatus = create(null)
  for (let i = 0; i < STATUS_NAMES.length; i++) byStatus[STATUS_NAMES[i]] = m[c + i]
  byStatus.untracked = m[c + STATUS_NAMES.length]
  return {
    totalSessions: n,
    activeSessions: active,
    inactiveSessions: inactive,
    errorSessions: errors,
    connectedSessions: connected,
    disconnectedSessions: disconnected,
    byStatus: setPrototypeOf(byStatus, ObjectPrototype),
    idleAfterMs,
    socketFaults: { count: faultCount, last: faultLast }
  }
}

// ---------------------------------------------------------------------------------------------
// Exports

const {
  clearAll,
  configure,
  createSocketWrapper,
  getAllSockets,
  getSocket,
  getSocketCount,
  hasSocket,
  loadSnapshot,
  onStateChange,
  registerSocket,
  RegistryErrorCode,
  saveSnapshot,
  SessionStatus,
  StateChangeType,
  unregisterSocket,
  waitForState,
  __napiBindingTarget
} = native

module.exports = {
  clearAll,
  configure,
  createSocketWrapper,
  getAllSessions,
  getAllSockets,
  getSessionState,
  getSocket,
  getSocketCount,
  getStats,
  hasSocket,
  loadSnapshot,
  onStateChange,
  registerSocket,
  RegistryErrorCode,
  saveSnapshot,
  SessionStatus,
  StateChangeType,
  unregisterSocket,
  updateSessionState,
  waitForState,
  __napiBindingTarget
}
// The benchmark's hooks (src/fast.rs), kept out of the API: not enumerable, no typings.
const benchHooks = Object.getOwnPropertyDescriptor(native, '__bench')
if (benchHooks) defineProperty(module.exports, '__bench', { value: benchHooks.value })

function explainLoadError (error) {
  const message = error && typeof error.message === 'string' ? error.message : ''
  if (!/^(Cannot find native binding|Failed to load native binding)/.test(message)) return error

  const { existsSync, readFileSync } = require('node:fs')
  const { join } = require('node:path')
  let pkg = {}
  try {
    pkg = JSON.parse(readFileSync(join(__dirname, 'package.json'), 'utf8'))
  } catch {}
  const name = pkg.name || 'baileys-socket-registry'
  const version = pkg.version || 'latest'
  const platform = currentPlatform()
  const supported = ((pkg.napi && pkg.napi.targets) || []).map(platformOfTriple).filter(Boolean)
  const isSupported = supported.includes(platform)
  const fromSource = existsSync(join(__dirname, 'Cargo.toml'))
  const where = __dirname

  const lines = [
    `${name}: no native binary for this platform (${platform}, Node ${process.version}) could be loaded.`,
    `Package directory: ${where}`
  ]
  const tried = loaderMessages(error)
  if (tried.length) lines.push('Tried:', ...tried.map((m) => `  - ${m}`))
  if (fromSource) {
    lines.push(
      'This is a source checkout (a clone, or a dependency linked to one) whose addon has not been built. To build it:',
      '  1. install the Rust toolchain (stable) with rustup: https://rustup.rs',
      "     (Linux/macOS: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh);",
      `  2. in ${where} run \`npm install\` (its "prepare" script builds the addon),`,
      '     or `npm run build` if its dependencies are already installed.'
    )
    if (isSupported) {
      lines.push(`Or use the prebuilt binary instead: npm install ${name}-${platform}@${version}`)
    }
  } else if (isSupported) {
    lines.push(
      `A prebuilt binary exists for ${platform}: it comes as the optional dependency ${name}-${platform},`,
      'which was not installed (installed with --omit=optional or --no-optional, or a lockfile made on',
      'another platform: https://github.com/npm/cli/issues/4828). Fix it with one of:',
      `  npm install ${name}-${platform}@${version}`,
      '  or remove node_modules and package-lock.json, then run npm install again.'
    )
  } else {
    lines.push(
      `No prebuilt binary is published for ${platform} (prebuilt: ${supported.join(', ') || 'none'}).`,
      'Build it from source: install the Rust toolchain (stable) with rustup (https://rustup.rs),',
      `then install ${name} from its git repository, whose "prepare" script builds the addon`,
      '(in a clone: `npm install`, which runs `npm run build`).'
    )
  }
  const wrapped = new Error(lines.join('\n'))
  wrapped.code = 'ERR_NATIVE_BINDING_NOT_FOUND'
  // The generated loader's own error (with every require() error in its `cause`
  // chain), kept for debugging but not as `cause`: Node would print that whole
  // chain under the message above.
  Object.defineProperty(wrapped, 'loaderError', { value: error, configurable: true, writable: true })
  return wrapped
}

// One line per load attempt, from the generated loader's chain of causes: the
// paths and packages it tried, and why a binary that exists failed to load.
function loaderMessages (error) {
  const out = []
  for (let e = error.cause, n = 0; e && n < 20; e = e.cause, n++) {
    const first = String(e.message || e).split('\n')[0]
    const missing = /^Cannot find module '([^']+)'/.exec(first)
    out.push(missing ? `${missing[1]}: not found` : first)
  }
  return out.reverse()
}

// The platformArchABI napi-rs uses in binary and package names, e.g. linux-x64-gnu.
function currentPlatform () {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function isMusl () {
  try {
    const report = process.report && process.report.getReport()
    if (report && report.header) return !report.header.glibcVersionRuntime
  } catch {}
  return false
}

// x86_64-unknown-linux-gnu -> linux-x64-gnu, aarch64-apple-darwin -> darwin-arm64, ...
function platformOfTriple (triple) {
  const arches = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }
  const [cpu, , os, abi] = triple.split('-')
  const arch = arches[cpu]
  if (!arch) return null
  if (triple.includes('-linux-')) return `linux-${arch}-${(abi || '').startsWith('musl') ? 'musl' : 'gnu'}`
  if (triple.includes('-apple-darwin')) return `darwin-${arch}`
  if (triple.includes('-windows-')) return `win32-${arch}-msvc`
  if (os === 'freebsd') return `freebsd-${arch}`
  return null
}
