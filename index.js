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
let binding
try {
  binding = require('./binding.js')
} catch (error) {
  throw explainLoadError(error)
} finally {
  delete globalThis[THREAD_ID_KEY]
}

// ---------------------------------------------------------------------------------------------
// Sockets
//
// This thread's sockets live here, in a `Map`: a socket object cannot leave its thread anyway,
// so getSocket, hasSocket, getSocketCount and getAllSockets cost what a `Map` costs. What must
// be shared stays native: ownership, generations and takeovers (the process-wide table),
// events, socket faults. Each operation makes one native call that decides (the `__*`
// functions of src/sockets.rs) and then carries out the JavaScript side here, top to bottom.
//
// A caller may patch builtins (Map.prototype.*, Function.prototype.call/apply/bind,
// Reflect.*, getters on Object.prototype) before or after loading the package: everything
// used here is captured at load, the registry's maps carry their own `get`/`set`/`has`/
// `delete`, and no caller code runs between a native change and the matching change of the
// maps.

const {
  __attachSockets: nativeAttach,
  __register: nativeRegister,
  __unregister: nativeUnregister,
  __takeRevoked: nativeTakeRevoked,
  __fault: nativeFault,
  __connectionUpdate: nativeConnectionUpdate,
  __messagesUpsert: nativeMessagesUpsert,
  __credsMe: nativeCredsMe,
  __untracked: nativeUntracked,
  __healthWatched: nativeHealthWatched,
  __healthClose: nativeHealthClose,
  __clusterGate: nativeClusterGate
} = binding

const apply = Reflect.apply
const reflectSet = Reflect.set
const defineProperty = Object.defineProperty
const isArray = Array.isArray
const MapConstructor = Map
const MapPrototype = Map.prototype
const mapSet = MapPrototype.set
const StringConstructor = String
const setIntervalOf = setInterval
const clearIntervalOf = clearInterval
const isWellFormed = String.prototype.isWellFormed
// Lone surrogates: a high one not followed by a low one, or a low one not after a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/
const regexpTest = RegExp.prototype.test
const hasLoneSurrogate = typeof isWellFormed === 'function'
  ? (s) => !apply(isWellFormed, s, [])
  : (s) => apply(regexpTest, LONE_SURROGATE, [s])

/** A `Map` whose methods are its own, taken from `Map.prototype` at load. */
function ownMap () {
  const m = new MapConstructor()
  for (const name of ['get', 'set', 'has', 'delete', 'clear']) {
    defineProperty(m, name, { __proto__: null, value: MapPrototype[name] })
  }
  return m
}

/** sessionId → socket, in registration order (a replaced id keeps its place, as in the table). */
const sockets = ownMap()
/**
 * sessionId → `Tracker`, for tracked sockets only: an untracked session costs one `Map` entry.
 * (The table knows which sessions this thread owns: no generation is needed here to remove
 * one or to tell a revoked socket from a newer one.)
 */
const trackers = ownMap()

// Takeovers by other threads: the native side queues them and bumps this counter, which every
// lookup compares with the last value it saw; the native wake calls `applyRevocations` too,
// so a taken-over socket is let go even in a thread that never looks anything up.
const revision = new Int32Array(nativeAttach(applyRevocationsSafely))
let seenRevision = revision[0]

function applyRevocationsSafely () {
  try {
    applyRevocations()
  } catch {}
}

function applyRevocations () {
  // Read before taking: a revocation queued after the take moves the counter again.
  seenRevision = revision[0]
  // Only ids this thread no longer owns: the socket registered under each is the revoked one.
  const taken = nativeTakeRevoked()
  for (let i = 0; i < taken.length; i++) {
    const id = taken[i]
    const socket = sockets.get(id)
    if (socket === undefined) continue
    const tracker = trackers.get(id)
    sockets.delete(id)
    if (tracker !== undefined) trackers.delete(id)
    // A session another thread took over is no longer this thread's to supervise.
    if (supervisors.size !== 0) endSupervisionOf(id, 'takeover')
    letGo(id, socket, tracker)
  }
  // Sessions whose cluster lease this node lost (see the Cluster section).
  applyLostLeases()
}

/** An error with its stable `code`: the one place the JavaScript side makes one. */
function registryError (Kind, code, message) {
  const error = new Kind(message)
  // Defined, not assigned: a setter for `code` on Object.prototype must not see it.
  defineProperty(error, 'code', { __proto__: null, value: code, writable: true, enumerable: true, configurable: true })
  return error
}

function typeName (v) {
  if (v === null) return 'null'
  switch (typeof v) {
    case 'undefined': return 'undefined'
    case 'boolean': return 'a boolean'
    case 'number': return 'a number'
    case 'string': return 'a string'
    case 'symbol': return 'a symbol'
    case 'function': return 'a function'
    case 'bigint': return 'a bigint'
    default: return 'an object'
  }
}

function isObject (v) {
  return typeof v === 'object' && v !== null
}

function loneSurrogateError (what) {
  return registryError(TypeError, 'ERR_INVALID_SESSION_ID',
    `${what}: sessionId contains a lone surrogate (half of a UTF-16 pair), which cannot be kept apart from other such ids`)
}

function checkSessionId (id, what) {
  if (typeof id !== 'string' || id === '') {
    throw registryError(TypeError, 'ERR_INVALID_SESSION_ID', id === ''
      ? `${what}: sessionId must not be empty`
      : `${what}: sessionId must be a non-empty string, got ${typeName(id)}`)
  }
  if (hasLoneSurrogate(id)) throw loneSurrogateError(what)
}

/** An optional boolean option's value `v` (read by the caller: a fixed key reads faster). */
function boolOption (v, key, fallback, what) {
  if (v === undefined) return fallback
  if (typeof v !== 'boolean') throw registryError(TypeError, 'ERR_INVALID_OPTIONS', `${what}: options.${key} must be a boolean`)
  return v
}

const REGISTER = 'registerSocket(sessionId, socket, options)'

function registerSocket (sessionId, socket, options) {
  checkSessionId(sessionId, REGISTER)
  if (!isObject(socket) && typeof socket !== 'function') {
    throw registryError(TypeError, 'ERR_INVALID_SOCKET', `${REGISTER}: socket must be an object, got ${typeName(socket)}`)
  }
  if (options !== undefined && options !== null && !isObject(options)) {
    throw registryError(TypeError, 'ERR_INVALID_OPTIONS', `${REGISTER}: options must be an object, got ${typeName(options)}`)
  }
  const given = options !== undefined && options !== null
  const track = boolOption(given ? options.track : undefined, 'track', true, REGISTER)
  const takeover = boolOption(given ? options.takeover : undefined, 'takeover', false, REGISTER)
  if (supervisors.size !== 0 && supervisors.has(sessionId)) throw supervisedError(sessionId, REGISTER)
  register(sessionId, socket, track, takeover)
  return socket
}

/**
 * Registers a checked socket (registerSocket and createSocketWrapper). The native call decides
 * (ownership, generation, who else must let go, the `registered` event); the new socket then
 * takes the id in the maps at once, and only then is the old one let go: letting go runs the
 * caller's JavaScript, which may register the id again (a bot that reconnects from inside
 * `end`), and that latest registration wins.
 */
function register (id, socket, track, takeover) {
  if (revision[0] !== seenRevision) applyRevocations()
  // The very socket already registered under this id (a bot whose createBaileysSocket and
  // wrapper both register): ending it as a replaced socket would kill a live session.
  const current = sockets.get(id)
  if (current === socket) return
  const generation = nativeRegister(id, track, takeover)
  const old = current === undefined || trackers.size === 0 ? undefined : trackers.get(id)
  sockets.set(id, socket)
  if (track) {
    const tracker = new Tracker(id, generation, socket)
    trackers.set(id, tracker)
    attach(id, tracker, socket)
  } else if (old !== undefined) {
    trackers.delete(id)
  }
  if (current !== undefined) letGo(id, current, old)
}

function getSocket (sessionId) {
  if (revision[0] !== seenRevision) applyRevocations()
  const socket = sockets.get(sessionId)
  return socket === undefined ? null : socket
}

function hasSocket (sessionId) {
  if (revision[0] !== seenRevision) applyRevocations()
  return sockets.has(sessionId)
}

function getSocketCount () {
  if (revision[0] !== seenRevision) applyRevocations()
  return sockets.size
}

function getAllSockets () {
  if (revision[0] !== seenRevision) applyRevocations()
  if (MapPrototype.set === mapSet) return new MapConstructor(sockets)
  // A patched Map.prototype.set is the caller's code and may unregister sockets: the copy is
  // taken first, then handed through it.
  const ids = []
  const values = []
  let n = 0
  for (const [id, socket] of sockets) {
    ids[n] = id
    values[n++] = socket
  }
  const copy = new MapConstructor()
  for (let i = 0; i < n; i++) copy.set(ids[i], values[i])
  return copy
}

function unregisterSocket (sessionId) {
  if (revision[0] !== seenRevision) applyRevocations()
  if (supervisors.size !== 0) endSupervisionOf(sessionId, 'unregistered')
  const socket = sockets.get(sessionId)
  if (socket === undefined) return false
  const tracker = trackers.size === 0 ? undefined : trackers.get(sessionId)
  sockets.delete(sessionId)
  if (tracker !== undefined) trackers.delete(sessionId)
  nativeUnregister(sessionId)
  letGo(sessionId, socket, tracker)
  return true
}

function clearAll () {
  if (revision[0] !== seenRevision) applyRevocations()
  if (supervisors.size !== 0) endAllSupervision('clearAll')
  // Everything leaves the registry first, then each socket is let go: a socket registered
  // meanwhile (by an end() that reconnects) stays registered, so clearAll always ends.
  const ids = []
  const taken = []
  let n = 0
  for (const [id, socket] of sockets) {
    ids[n] = id
    taken[n] = socket
    n++
  }
  const tracked = []
  for (let i = 0; i < n; i++) tracked[i] = trackers.get(ids[i])
  sockets.clear()
  trackers.clear()
  for (let i = 0; i < n; i++) nativeUnregister(ids[i])
  for (let i = 0; i < n; i++) letGo(ids[i], taken[i], tracked[i])
}

const WRAPPER = 'createSocketWrapper(makeWASocket)'

function createSocketWrapper (makeWASocket) {
  if (typeof makeWASocket !== 'function') {
    throw registryError(TypeError, 'ERR_INVALID_FACTORY', `${WRAPPER}: makeWASocket must be a function, got ${typeName(makeWASocket)}`)
  }
  return function createBaileysSocket (config) {
    const id = configSessionId(config)
    if (id === undefined) {
      throw registryError(TypeError, 'ERR_MISSING_SESSION_ID',
        'the socket wrapper needs config.sessionId (or config.auth.sessionId): a non-empty string naming the session')
    }
    if (supervisors.size !== 0 && supervisors.has(id)) throw supervisedError(id, WRAPPER)
    // A session this node may not register (cluster lease) gets no socket at all.
    nativeClusterGate(id)
    const socket = apply(makeWASocket, undefined, [config])
    if (!isObject(socket)) {
      throw registryError(TypeError, 'ERR_INVALID_SOCKET', `makeWASocket returned ${typeName(socket)}, not a socket object`)
    }
    // Before registering: a socket whose `_sessionId` cannot be set (a setter or Proxy that
    // throws) is then not left registered behind the error.
    reflectSet(socket, '_sessionId', id)
    register(id, socket, true, false)
    return socket
  }
}

function configId (v) {
  if (typeof v !== 'string' || v === '') return undefined
  if (hasLoneSurrogate(v)) throw loneSurrogateError('createSocketWrapper')
  return v
}

function configSessionId (config) {
  if (!isObject(config)) return undefined
  const direct = configId(config.sessionId)
  if (direct !== undefined) return direct
  const auth = config.auth
  return isObject(auth) ? configId(auth.sessionId) : undefined
}

// ---- tracking

/** The text of something thrown: its `message` if it has one, else its string form. */
function describe (thrown) {
  try {
    if (isObject(thrown)) {
      const m = thrown.message
      if (typeof m === 'string') return m
    }
    return StringConstructor(thrown)
  } catch {
    return 'unknown error'
  }
}

function fault (id, what, thrown) {
  nativeFault(id, what, typeof thrown === 'string' ? thrown : describe(thrown))
}

/** `obj[key]`, or undefined when reading it throws (an event's payload is not ours to fail on). */
function read (obj, key) {
  try {
    return obj[key]
  } catch {
    return undefined
  }
}

const CONNECTIONS = { __proto__: null, connecting: 1, open: 2, close: 3 }

/**
 * A tracked socket's listeners: plain closures that read the few primitives of an event and
 * hand them to the native side in one call, with the generation they were attached for (an
 * event of a replaced socket changes nothing). They never throw into Baileys.
 */
function Tracker (id, generation, socket) {
  this.generation = generation
  const tracker = this
  // Named `registry...`: a bot (or a test) can tell the registry's listeners from its own.
  const registryConnectionUpdate = (update) => {
    if (!isObject(update)) return
    try {
      const c = read(update, 'connection')
      const connection = typeof c === 'string' ? (CONNECTIONS[c] ?? 0) : 0
      const qr = read(update, 'qr')
      // Only whether a QR code waits: the text is a login secret and is never kept.
      const hasQr = typeof qr === 'string' && qr !== ''
      const ld = read(update, 'lastDisconnect')
      let code = null
      let message = null
      if (isObject(ld)) {
        // A Boom error (output.statusCode), a plain Error, or undefined.
        const error = read(ld, 'error')
        if (isObject(error)) {
          const output = read(error, 'output')
          const sc = isObject(output) ? read(output, 'statusCode') : undefined
          if (typeof sc === 'number') code = sc
          const m = read(error, 'message')
          if (typeof m === 'string') message = m
        }
      }
      let meId = null
      let meLid = null
      if (connection === 2) {
        // The live identity, socket.authState.creds.me (socket.user is a stale copy).
        const auth = read(socket, 'authState')
        const creds = isObject(auth) ? read(auth, 'creds') : undefined
        const me = isObject(creds) ? read(creds, 'me') : undefined
        if (isObject(me)) {
          const i = read(me, 'id')
          const l = read(me, 'lid')
          if (typeof i === 'string') meId = i
          if (typeof l === 'string') meLid = l
        }
      }
      nativeConnectionUpdate(id, generation, connection, hasQr, isObject(ld), code, message, meId, meLid)
      // The supervisor of this socket (superviseSession) hears its opens and closes from here.
      if (connection >= 2 && tracker.supervisor !== null) supervisedConnection(tracker, connection, code, message, ld)
    } catch {}
  }
  const registryMessagesUpsert = (upsert) => {
    if (!isObject(upsert)) return
    try {
      const notify = read(upsert, 'type') === 'notify'
      const messages = read(upsert, 'messages')
      if (!isArray(messages)) return
      let inbound = 0
      let outbound = 0
      for (let i = 0, n = messages.length; i < n; i++) {
        const m = read(messages, i)
        const key = isObject(m) ? read(m, 'key') : undefined
        if (isObject(key) && read(key, 'fromMe') === true) outbound++
        else if (notify) inbound++
      }
      nativeMessagesUpsert(id, generation, inbound, outbound)
    } catch {}
  }
  const registryCredsUpdate = (update) => {
    if (!isObject(update)) return
    try {
      const me = read(update, 'me')
      if (!isObject(me)) return
      const i = read(me, 'id')
      const l = read(me, 'lid')
      if (typeof i === 'string' || typeof l === 'string') {
        nativeCredsMe(id, generation, typeof i === 'string' ? i : null, typeof l === 'string' ? l : null)
      }
    } catch {}
  }
  this.connection = registryConnectionUpdate
  this.messages = registryMessagesUpsert
  this.creds = registryCredsUpdate
  // What the health pass noted: the ws read closed once; reading it threw (left alone).
  this.closedOnce = false
  this.leftAlone = false
  this.socket = socket
  this.attached = 0
  // The Supervisor that registered this socket, while it watches it.
  this.supervisor = null
}

const EVENTS = ['connection.update', 'messages.upsert', 'creds.update']

function listenerOf (t, i) {
  return i === 0 ? t.connection : i === 1 ? t.messages : t.creds
}

/** `socket.ev` and its method `name`, or the reason there are none. */
function emitterWith (socket, name) {
  let ev, f
  try {
    ev = socket.ev
    if (!isObject(ev)) return 'the socket has no `ev` event emitter'
    f = ev[name]
  } catch (e) {
    return { thrown: describe(e) }
  }
  if (typeof f !== 'function') return `socket.ev.${name} is not a function`
  return { ev, f }
}

function attach (id, t, socket) {
  const found = emitterWith(socket, 'on')
  let reason
  if (typeof found === 'string') reason = found
  else if (found.thrown !== undefined) reason = found.thrown
  else {
    for (let i = 0; i < EVENTS.length; i++) {
      try {
        apply(found.f, found.ev, [EVENTS[i], listenerOf(t, i)])
      } catch (e) {
        reason = `ev.on threw: ${describe(e)}`
        break
      }
      t.attached = i + 1
    }
  }
  if (reason !== undefined) {
    detach(id, socket, t)
    nativeUntracked(id, t.generation, reason)
    return
  }
  // Attaching ran the caller's JavaScript: keep the listeners only if this registration is
  // still the current one.
  if (trackers.get(id) !== t) {
    detach(id, socket, t)
    return
  }
  // A tracked socket is what the health pass watches over.
  startHealthPass()
}

/** Removes the listeners `t` added to `socket.ev` (with `ev.off`). */
function detach (id, socket, t) {
  const n = t.attached
  t.attached = 0
  if (n === 0) return
  const found = emitterWith(socket, 'off')
  if (typeof found === 'string' || found.thrown !== undefined) {
    fault(id, 'removing listeners', typeof found === 'string' ? found : found.thrown)
    return
  }
  for (let i = 0; i < n; i++) {
    try {
      apply(found.f, found.ev, [EVENTS[i], listenerOf(t, i)])
    } catch (e) {
      fault(id, 'ev.off threw', e)
    }
  }
}

// ---- letting go

/**
 * Lets go of a socket that left the registry: removes the registry's listeners, silences its
 * `connection.update`, ends it, and guards its ws against the aborted handshake. Runs the
 * caller's JavaScript, which may re-enter the registry; whatever the socket throws is
 * recorded as a socket fault, never thrown.
 */
function letGo (id, socket, tracker) {
  if (tracker !== undefined) {
    detach(id, socket, tracker)
    tracker.socket = null
  }
  silence(id, socket)
  let ws
  try {
    ws = socket.ws
  } catch (e) {
    fault(id, 'reading socket.ws', e)
  }
  endSocket(id, socket)
  if (isObject(ws)) guardWsError(id, ws)
}

/**
 * Makes a socket that is being let go silent: neither `ev.on('connection.update')` listeners
 * nor `ev.process` handlers hear another `connection.update` from it.
 *
 * Why: Baileys' README teaches a handler that reconnects on every close but a logout, so the
 * close that `end()` emits would make the bot build a new socket for the session it just
 * replaced or removed, which the registry then lets go of too: a reconnect storm. `ev.process`
 * handlers listen on the emitter's internal `'event'` event, where
 * `ev.removeAllListeners(name)` cannot reach them without also removing Baileys' dispatcher.
 * So `ev.emit` of this socket is replaced by one that drops `connection.update` and passes
 * every other event through, and `ev.removeAllListeners('connection.update')` (a named event:
 * Baileys' `end()` makes the same call after its close) covers forks that emit by another
 * path. Only `connection.update` is silenced: the bot's `creds.update` and message handlers
 * keep whatever a closing socket still delivers.
 */
function silence (id, socket) {
  let ev
  try {
    ev = socket.ev
  } catch (e) {
    fault(id, 'reading socket.ev', e)
    return
  }
  if (!isObject(ev)) return
  let emit
  try {
    emit = ev.emit
  } catch (e) {
    fault(id, 'reading ev.emit', e)
  }
  if (typeof emit === 'function') {
    const silenced = silencedEmit(emit)
    try {
      ev.emit = silenced
      // A frozen `ev` ignores the assignment (in sloppy code) or throws (here).
      if (ev.emit !== silenced) fault(id, 'silencing ev.emit', 'ev.emit cannot be replaced')
    } catch (e) {
      fault(id, 'silencing ev.emit', e)
    }
  }
  let removeAll
  try {
    removeAll = ev.removeAllListeners
  } catch (e) {
    fault(id, 'reading ev.removeAllListeners', e)
    return
  }
  if (typeof removeAll === 'function') {
    try {
      apply(removeAll, ev, ['connection.update'])
    } catch (e) {
      fault(id, "ev.removeAllListeners('connection.update') threw", e)
    }
  }
}

/** An `emit` that drops `connection.update` and passes every other event to `original`. */
function silencedEmit (original) {
  return function registrySilencedEmit (event) {
    if (event === 'connection.update') return false
    // A listener that throws throws through emit, as it would without the wrapper.
    return apply(original, this, arguments)
  }
}

function ignoreEndRejection () {}

const NOT_CALLED = Symbol('not called')

/**
 * Calls `target[name](...args)` on behalf of a socket being let go: a read or a call that
 * throws is recorded as the socket's fault (`readFault` / `callFault`), never thrown.
 * Returns the call's result, or `NOT_CALLED` when there was nothing to call or it threw.
 */
function callForSocket (id, target, name, args, readFault, callFault) {
  let method
  try {
    method = target[name]
  } catch (e) {
    fault(id, readFault, e)
    return NOT_CALLED
  }
  if (typeof method !== 'function') return NOT_CALLED
  try {
    return apply(method, target, args)
  } catch (e) {
    fault(id, callFault, e)
    return NOT_CALLED
  }
}

/**
 * Calls `socket.end(undefined)`. Baileys 7 returns a promise: its rejection is caught here so
 * it never surfaces as an unhandled rejection.
 */
function endSocket (id, socket) {
  const result = callForSocket(id, socket, 'end', [undefined], 'reading socket.end', 'end() threw')
  if (result === NOT_CALLED || !isObject(result)) return
  let then
  try {
    then = result.then
  } catch {
    return
  }
  if (typeof then !== 'function') return
  try {
    apply(then, result, [undefined, ignoreEndRejection])
  } catch (e) {
    fault(id, 'end() promise', e)
  }
}

/**
 * Adds a listener that swallows `error` on `ws`, right after `end()` returned.
 *
 * 6.17.16's `end()` (and forks of it) removes the ws `error` listeners before closing; a
 * socket that is still connecting then reports the aborted handshake ("WebSocket was closed
 * before the connection was established") as an `error` with no listener, a process-ending
 * uncaught exception, on a later tick. So the listener goes on after `end()` (one added
 * before would be removed) and at once, not when 7.x's asynchronous `end()` settles. It is
 * added whatever `ws.isConnecting` says (forks that connect lazily report it differently).
 */
function ignoreAbortedHandshake () {}

function guardWsError (id, ws) {
  callForSocket(id, ws, 'on', ['error', ignoreAbortedHandshake], 'reading ws.on', "ws.on('error') threw")
}

// ---- health pass

// A truthful status for sockets whose close never reached the registry. Bots often clean up
// with `sock.ev.removeAllListeners(); sock.end()` and no unregisterSocket: that removes the
// registry's listener before the close is emitted (and end() removes the listeners on
// sock.ws), so no event tells the registry. Once a second (an unref'd timer, started with the
// thread's first tracked socket), for every tracked session whose status is `open` or `qr`
// (asked natively), the pass reads `socket.ws.isOpen`, and when that is not true `isClosed`
// and `isClosing` (getters of Baileys' websocket client). A ws that reads closed on two
// passes in a row (so that a close Baileys is still reporting arrives first, with its reason)
// closes the session. A socket whose ws or getters throw is recorded once and left alone.
const HEALTH_PASS_MS = 1000
let healthTimer = null

function startHealthPass () {
  if (healthTimer !== null) return
  try {
    const timer = setIntervalOf(healthPassSafely, HEALTH_PASS_MS)
    try {
      // A timer that kept the process alive would be worse than no pass at all.
      timer.unref()
      healthTimer = timer
    } catch {
      clearIntervalOf(timer)
    }
  } catch {}
}

function healthPassSafely () {
  try {
    healthPass()
  } catch {}
}

const OPEN = 1
const CLOSED = 2
const THREW = 3
let healthThrown

function look (socket) {
  try {
    const ws = socket.ws
    if (!isObject(ws)) return 0
    // isOpen first: one getter answers for a live socket, the common case.
    if (ws.isOpen === true) return OPEN
    if (ws.isClosed === true || ws.isClosing === true) return CLOSED
    return OPEN
  } catch (e) {
    healthThrown = e
    return THREW
  }
}

function healthPass () {
  for (const [id, t] of trackers) {
    if (t.leftAlone || t.socket === null) continue
    // A getter of one socket may run JavaScript that unregisters another: look again.
    if (trackers.get(id) !== t) continue
    if (!nativeHealthWatched(id, t.generation)) {
      t.closedOnce = false
      continue
    }
    const seen = look(t.socket)
    if (trackers.get(id) !== t) continue
    if (seen === OPEN) {
      t.closedOnce = false
    } else if (seen === CLOSED) {
      if (t.closedOnce) {
        t.closedOnce = false
        nativeHealthClose(id, t.generation)
        if (t.supervisor !== null) supervisedConnection(t, 3, null, UNHEARD_CLOSE, undefined)
      } else {
        t.closedOnce = true
      }
    } else if (seen === THREW) {
      fault(id, 'health pass: reading socket.ws', healthThrown)
      healthThrown = undefined
      t.leftAlone = true
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Supervision: superviseSession
//
// A supervisor makes a session's sockets by calling the bot's `makeSocket`, registers each one
// (tracked), and makes the next when the policy says so. Every decision is native
// (registry_core::supervise: the policy per DisconnectReason, backoff with full jitter,
// maxAttempts, the reset after a stable open; src/supervise.rs writes the supervision into the
// session's state and emits `reconnecting`, `gaveUp`, `stopped`). Here it is carried out:
// calling makeSocket, registering, the timer before the next attempt.
//
// It hears its socket through the registry's own tracking: the Tracker of a socket it
// registered points back to it, and the tracker's `connection.update` listener (and the health
// pass, for a close nobody heard) hand it the socket's opens and closes. No second listener.
//
// At most one live socket per supervised id: a socket is made only after the previous one
// closed, or (restart()) was let go, and once its websocket is closed; every attempt, stop
// and restart moves a token, and a makeSocket that settles with an older token has its socket
// ended silently, never registered. registerSocket and socket wrappers refuse a supervised id
// (ERR_SESSION_SUPERVISED); unregisterSocket, clearAll and a takeover by another thread stop
// the supervisor first.
//
// The timer before an attempt keeps the process alive, like the socket it replaces would: a
// session waiting 2 s to reconnect is work in progress, and an unref'd timer would let a bot
// whose only activity is its sessions exit in the middle of a reconnect. stop(),
// unregisterSocket and clearAll clear it; a supervisor that stopped or gave up has none.

const {
  __superviseNew: nativeSuperviseNew,
  __superviseDrop: nativeSuperviseDrop,
  __superviseBegin: nativeSuperviseBegin,
  __superviseRegistered: nativeSuperviseRegistered,
  __superviseOpened: nativeSuperviseOpened,
  __superviseFailed: nativeSuperviseFailed,
  __superviseStop: nativeSuperviseStop,
  __superviseRestart: nativeSuperviseRestart,
  __supervision: nativeSupervision
} = binding
const setTimeoutOf = setTimeout
const clearTimeoutOf = clearTimeout
const PromiseConstructor = Promise
const promiseResolve = Promise.resolve
const promiseThen = Promise.prototype.then
const JSONObject = JSON
const jsonStringify = JSON.stringify
const numberIsFinite = Number.isFinite
const freeze = Object.freeze
const dateNow = Date.now

/** sessionId → Supervisor, for this thread's supervised sessions (until stopped for good). */
const supervisors = ownMap()

const SUPERVISE = 'superviseSession(sessionId, makeSocket, policy)'
const UNHEARD_CLOSE = "the socket's websocket closed without a connection.update reaching the registry"

function supervisedError (id, what) {
  return registryError(Error, 'ERR_SESSION_SUPERVISED',
    `${what}: session '${id}' is supervised in this thread (superviseSession); stop its supervision first (handle.stop() or unregisterSocket)`)
}

// A policy is a few keys three levels deep: anything far larger is refused while it is read,
// before JSON.stringify walks (or fails on) all of it.
const POLICY_MAX_DEPTH = 16
const POLICY_MAX_VALUES = 10000

function policyError (message) {
  return registryError(TypeError, 'ERR_INVALID_OPTIONS', `${SUPERVISE}: policy ${message}`)
}

/**
 * The policy as JSON text (its getters and toJSON run here, once; the caller's own exception
 * passes through). JSON.stringify's own failures (a bigint, a cycle, a nesting that overflows
 * the stack, an array too long for a string) carry no code, and a sparse array of millions of
 * holes takes seconds: those are ERR_INVALID_OPTIONS, decided here value by value. JSON's
 * `Infinity` is null: non-finite numbers cross as their names (the core reads "Infinity").
 */
function policyJson (policy) {
  // The objects from the policy down to the value being written (the replacer's `this` is
  // the object holding the value: everything deeper has been written).
  const path = []
  let values = 0
  const replacer = function (key, value) {
    let n = path.length
    while (n > 0 && path[n - 1] !== this) n--
    path.length = n
    if (++values > POLICY_MAX_VALUES) throw policyError(`has more than ${POLICY_MAX_VALUES} values`)
    if (typeof value === 'bigint') throw policyError('holds a bigint, not JSON data')
    if (typeof value === 'number') return numberIsFinite(value) ? value : StringConstructor(value)
    if (isObject(value)) {
      for (let i = 0; i < n; i++) if (path[i] === value) throw policyError('is circular')
      if (n >= POLICY_MAX_DEPTH) throw policyError(`is nested deeper than ${POLICY_MAX_DEPTH} levels`)
      // An array's length is checked before its elements are read (JSON.stringify refuses one
      // too long for a string before any element, with an error of its own).
      if (isArray(value) && !(value.length <= POLICY_MAX_VALUES)) throw policyError(`has an array of more than ${POLICY_MAX_VALUES} elements`)
      path[n] = value
    }
    return value
  }
  return apply(jsonStringify, JSONObject, [policy, replacer])
}

/**
 * Supervises `sessionId`: calls `makeSocket({ attempt, lastDisconnect })` now (it returns a
 * socket or a promise of one), registers the socket (tracked), and makes the next one when
 * the policy says so. Returns the handle `{ sessionId, stop(), restart(), supervision }`.
 */
function superviseSession (sessionId, makeSocket, policy) {
  checkSessionId(sessionId, SUPERVISE)
  if (typeof makeSocket !== 'function') {
    throw registryError(TypeError, 'ERR_INVALID_FACTORY', `${SUPERVISE}: makeSocket must be a function, got ${typeName(makeSocket)}`)
  }
  if (policy !== undefined && policy !== null && !isObject(policy)) {
    throw registryError(TypeError, 'ERR_INVALID_OPTIONS', `${SUPERVISE}: policy must be an object, got ${typeName(policy)}`)
  }
  if (revision[0] !== seenRevision) applyRevocations()
  if (supervisors.has(sessionId)) throw supervisedError(sessionId, SUPERVISE)
  // The policy crosses as JSON; the core validates it.
  const json = policy === undefined || policy === null ? undefined : policyJson(policy)
  const key = nativeSuperviseNew(sessionId, typeof json === 'string' ? json : undefined)
  // makeSocket of an earlier check may have supervised the id meanwhile: never two supervisors.
  if (supervisors.has(sessionId)) {
    nativeSuperviseDrop(key)
    throw supervisedError(sessionId, SUPERVISE)
  }
  const sup = new Supervisor(sessionId, makeSocket, key)
  supervisors.set(sessionId, sup)
  attemptNow(sup)
  return sup.handle
}

function Supervisor (id, makeSocket, key) {
  this.id = id
  this.makeSocket = makeSocket
  this.key = key
  // Moves on every attempt, stop and restart: a makeSocket that settles with an older token
  // is too late.
  this.token = 0
  // The socket it registered last, and its Tracker while it watches it (until it closes).
  this.socket = null
  this.tracker = null
  this.timer = null
  this.live = true
  // What the last close said, for the next makeSocket call.
  this.lastDisconnect = undefined
  // The `ws` WebSocket of the socket it registered last, while it may still be closing, and
  // until when the next socket waits for it.
  this.raw = null
  this.closeWaitUntil = 0
  // The supervision when it was dropped (handle.supervision after stop()).
  this.final = null
  this.handle = supervisorHandle(this)
}

function supervisorHandle (sup) {
  const handle = {
    sessionId: sup.id,
    stop: () => stopSupervisor(sup),
    restart: () => restartSupervisor(sup)
  }
  defineProperty(handle, 'supervision', {
    __proto__: null,
    enumerable: true,
    get: () => sup.live ? nativeSupervision(sup.key) : sup.final
  })
  return freeze(handle)
}

/** A timer's callback: the next attempt, unless the supervisor stopped or restarted since. */
function attemptLater (sup, timer) {
  try {
    if (sup.live && sup.timer === timer) attemptWhenClosed(sup)
  } catch {}
}

// The previous socket's websocket may still be in its close handshake (a socket the client
// ends, after a 515 or restart(), stays connected until the server answers): the server
// would then see the new connection before the old one is gone. The next socket waits for
// it, a few milliseconds in practice, at most CLOSE_WAIT_MS.
const CLOSE_WAIT_MS = 2000
const CLOSE_POLL_MS = 5
const WS_CLOSED = 3

/** The `ws` WebSocket under a Baileys socket (read when registered: 6.x drops it in end()). */
function rawWebSocket (socket) {
  try {
    const ws = socket.ws
    const raw = isObject(ws) ? ws.socket : undefined
    return isObject(raw) && typeof raw.readyState === 'number' ? raw : null
  } catch {
    return null
  }
}

function stillClosing (sup) {
  const raw = sup.raw
  if (raw === null) return false
  try {
    if (raw.readyState !== WS_CLOSED) return true
  } catch {}
  sup.raw = null
  return false
}

function attemptWhenClosed (sup) {
  sup.timer = null
  if (stillClosing(sup)) {
    const now = dateNow()
    if (sup.closeWaitUntil === 0) sup.closeWaitUntil = now + CLOSE_WAIT_MS
    if (now < sup.closeWaitUntil) {
      const timer = setTimeoutOf(() => attemptLater(sup, timer), CLOSE_POLL_MS)
      sup.timer = timer
      return
    }
  }
  sup.closeWaitUntil = 0
  sup.raw = null
  attemptNow(sup)
}

function attemptNow (sup) {
  // A stopped supervisor never calls makeSocket again, whatever caller code ran since the
  // attempt was decided (a readyState getter while waiting for the old websocket).
  if (!sup.live) return
  sup.timer = null
  const token = ++sup.token
  const attempt = nativeSuperviseBegin(sup.key)
  let result
  try {
    result = apply(sup.makeSocket, undefined, [{ attempt, lastDisconnect: sup.lastDisconnect }])
  } catch (e) {
    made(sup, token, undefined, true, e, false)
    return
  }
  let then
  try {
    then = isObject(result) ? result.then : undefined
  } catch (e) {
    made(sup, token, undefined, true, e, false)
    return
  }
  if (typeof then !== 'function') {
    made(sup, token, result, false, undefined, false)
    return
  }
  // A promise (or any thenable), settled through a promise of ours: a `then` that throws or
  // calls back twice is then harmless, and a rejection is always handled.
  try {
    const p = apply(promiseResolve, PromiseConstructor, [result])
    apply(promiseThen, p, [(socket) => made(sup, token, socket, false, undefined, true), (e) => made(sup, token, undefined, true, e, true)])
  } catch (e) {
    made(sup, token, undefined, true, e, false)
  }
}

/**
 * makeSocket gave `socket`, or threw (or rejected with) `error`; `later`: through a promise.
 * Never throws: it may run in a promise reaction.
 */
function made (sup, token, socket, threw, error, later) {
  try {
    settle(sup, token, socket, threw, error, later)
  } catch {}
}

function settle (sup, token, socket, threw, error, later) {
  const id = sup.id
  if (token !== sup.token || !sup.live) {
    // stop() or a newer restart() came first: this socket must never be registered.
    if (isObject(socket) && socket !== sup.socket) letGo(id, socket, undefined)
    return
  }
  if (threw) {
    failed(sup, null, describe(error), true)
    return
  }
  if (!isObject(socket) || socket === sup.socket) {
    failed(sup, null, socket === sup.socket && socket !== null
      ? 'makeSocket returned the socket it made before, not a new one'
      : `makeSocket returned ${typeName(socket)}, not a socket`, true)
    return
  }
  // Its socket before registering: letting go of the previous one runs the caller's
  // JavaScript, and a stop() from there must find (and remove) this one.
  const previous = sup.socket
  sup.socket = socket
  try {
    register(id, socket, true, false)
  } catch (e) {
    sup.socket = previous
    letGo(id, socket, undefined)
    const code = isObject(e) ? e.code : undefined
    // Another thread owns the id, or (with the cluster) this node does not hold its lease: no
    // later attempt can do better, so supervision stops.
    if (code === 'ERR_SESSION_OWNED_BY_OTHER_THREAD') {
      endSupervision(sup, 'ownedByOtherThread')
    } else if (code === 'ERR_CLUSTER_NOT_HELD') {
      endSupervision(sup, 'notHeld')
    } else {
      failed(sup, null, describe(e), true)
    }
    return
  }
  sup.raw = rawWebSocket(socket)
  const tracker = trackers.get(id)
  // Registering ran the caller's JavaScript (letting go of the previous socket): only a
  // registration that is still current is watched.
  if (!sup.live || token !== sup.token || tracker === undefined || tracker.socket !== socket) return
  nativeSuperviseRegistered(sup.key, tracker.generation)
  if (tracker.attached === 0) {
    // Its listeners could not be attached (no usable `ev`): the supervisor would never hear
    // it close. A failed attempt, with the reason the registry recorded.
    failed(sup, null, "the registry cannot follow this socket's events (no usable socket.ev)", true)
    return
  }
  tracker.supervisor = sup
  sup.tracker = tracker
  // A makeSocket that awaited after making its socket may hand over one that already closed,
  // unheard: the websocket says so (every tested build connects within makeWASocket).
  if (later && closedAlready(socket)) supervisedConnection(tracker, 3, null, 'the socket closed before makeSocket settled', undefined)
}

function closedAlready (socket) {
  try {
    const ws = socket.ws
    return isObject(ws) && ws.isClosed === true
  } catch {
    return false
  }
}

/** An open or a close of a supervised socket, from its tracker (or the health pass). */
function supervisedConnection (tracker, connection, code, message, lastDisconnect) {
  try {
    const sup = tracker.supervisor
    if (sup.tracker !== tracker || !sup.live) return
    if (connection === 2) {
      nativeSuperviseOpened(sup.key)
      return
    }
    // Closed: nothing more of this socket concerns the supervisor.
    tracker.supervisor = null
    sup.tracker = null
    sup.lastDisconnect = lastDisconnect
    failed(sup, code, message, false)
  } catch {}
}

/** The current attempt failed: the core decides; a retry gets its timer. */
function failed (sup, code, message, madeNothing) {
  const delay = nativeSuperviseFailed(sup.key, code, message, madeNothing)
  // -1 (stop) and -2 (give up): no timer. The supervisor stays, for restart().
  if (delay < 0) return
  const timer = setTimeoutOf(() => attemptLater(sup, timer), delay)
  sup.timer = timer
}

/** Ends a supervisor for good: no timer, no further socket, its native half dropped. */
function endSupervision (sup, reason) {
  if (!sup.live) return
  sup.live = false
  sup.token++
  if (sup.timer !== null) {
    clearTimeoutOf(sup.timer)
    sup.timer = null
  }
  if (sup.tracker !== null) {
    sup.tracker.supervisor = null
    sup.tracker = null
  }
  if (supervisors.get(sup.id) === sup) supervisors.delete(sup.id)
  nativeSuperviseStop(sup.key, reason)
  sup.final = nativeSupervision(sup.key)
  nativeSuperviseDrop(sup.key)
}

function endSupervisionOf (id, reason) {
  const sup = supervisors.get(id)
  if (sup !== undefined) endSupervision(sup, reason)
}

function endAllSupervision (reason) {
  const all = []
  for (const [, sup] of supervisors) all.push(sup)
  for (let i = 0; i < all.length; i++) endSupervision(all[i], reason)
}

/** handle.stop(): stops reconnecting and removes the session, its socket let go silently. */
function stopSupervisor (sup) {
  if (!sup.live) return false
  endSupervision(sup, 'stop')
  const socket = sup.socket
  sup.socket = null
  if (socket !== null && sockets.get(sup.id) === socket) unregisterSocket(sup.id)
  return true
}

/** handle.restart(): one fresh socket now (the current one let go silently first). */
function restartSupervisor (sup) {
  if (!sup.live) return false
  if (sup.timer !== null) {
    clearTimeoutOf(sup.timer)
    sup.timer = null
  }
  // A makeSocket still pending settles too late: its socket is ended, not registered.
  const token = ++sup.token
  const tracker = sup.tracker
  let letGoNow = false
  if (tracker !== null) {
    // Still live: let go of it before the next one exists. It stays in the maps until the
    // new socket takes its place (letting go again then finds it ended and changes nothing).
    tracker.supervisor = null
    sup.tracker = null
    if (sockets.get(sup.id) === sup.socket && trackers.get(sup.id) === tracker) {
      letGo(sup.id, sup.socket, tracker)
      letGoNow = true
      // Letting go ran the caller's JavaScript (the socket's end()): a stop() from there ended
      // the supervision, a restart() from there made the fresh socket already (a second one
      // now would be live beside it).
      if (!sup.live || sup.token !== token) return sup.live
    }
  }
  nativeSuperviseRestart(sup.key, letGoNow)
  sup.lastDisconnect = undefined
  sup.closeWaitUntil = 0
  attemptWhenClosed(sup)
  return true
}

// More built-ins the state section relies on, taken now like those above.
const { create, setPrototypeOf, keys: objectKeys, hasOwn } = Object
const ArrayConstructor = Array
const arrayOf = Array.of
const { stringify, parse } = JSON
const ObjectPrototype = Object.prototype
const NewFunction = Function

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
//   (registry_core::layout::FIELDS): at load, small functions are generated from it that
//   build the objects with object literals; copies of custom data read often enough get their
//   own generated copier too (see customCopy).
// - getSessionState keeps, per thread, the last state shaped for each id with the version it
//   had; every change of a session bumps its version in memory shared with the native table,
//   so while the version holds, a copy of the cached state is the answer, without a native call.

const {
  __updateState: nativeUpdate,
  __updateFlat: nativeUpdateFlat,
  __updateKnown: nativeUpdateKnown,
  __state: nativeState,
  __allStates: nativeAllStates,
  __stats: nativeStats,
  __versionPage: nativeVersionPage,
  __touchPage: nativeTouchPage
} = binding
const LAYOUT = binding.__stateLayout()
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
// The mask of `__updateKnown` (src/session_state.rs): an update of the registry's own fields.
const KNOWN = LAYOUT.known
const KNOWN_IS_CONNECTED = KNOWN.isConnected
const KNOWN_CONNECTED = KNOWN.connected
const KNOWN_ERROR = KNOWN.error
const KNOWN_STATUS = KNOWN.status
const KNOWN_STATUS_SHIFT = KNOWN.statusShift
const STATUS_INDEX = create(null)
for (let i = 0; i < STATUS_NAMES.length; i++) STATUS_INDEX[STATUS_NAMES[i]] = i
// The status a known update's index stands for (past the last name: null).
const STATUS_OF_INDEX = [...STATUS_NAMES, null]
// Touches (see `touch`) take their time from this thread's Date.now, and only while it is the
// clock the native side reads: a fake clock installed before this module loaded (test
// doubles of Date) would mix its times with the native ones.
const CLOCK_SKEW = dateNow() - LAYOUT.now
const TOUCH_CLOCK = CLOCK_SKEW > -1000 && CLOCK_SKEW < 1000
const compareExchange = Atomics.compareExchange

// What a cached state carries besides the layout's fields (see `stateCache` and `rowCache`).
// The state and its bookkeeping are one object: an update or read of a cached session touches
// one object where two cost a second cache miss (perf).
const ENTRY_KEYS = ['id', 'slot', 'page', 'index', 'version', 'custom', 'reads', 'copier', 'structure']

const { shape, copy, copyCustom, copyFieldsSource } = compileShapers(LAYOUT.fields)

/**
 * Generates, from the layout, `shape(m, b, t, at, id, slot, page, index, version, custom)` (a
 * cached entry: ENTRY_KEYS, then the state from the numbers of `m` from `b` and the strings of
 * `t` from `at`), `copy(o)` (a copy of such a state's fields with fresh nested objects) and
 * `copyCustom(o, custom)` (the same with the keys of `custom` spread after), and gives the
 * source of copy's literal (`copyFieldsSource`, reading `o` with the locals g1-g3) for the
 * copiers of custom structures. Object literals define their keys, so no setter on
 * Object.prototype runs.
 */
function compileShapers (fields) {
  for (const [name] of fields) {
    if (ENTRY_KEYS.indexOf(name) !== -1) throw new Error(`state field ${name} is also a cache entry key`)
  }
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
  const shapeBody = `let n, x; return {id, slot, page, index, version, custom, reads: 0, copier: undefined, structure: undefined, ${shaped(fields)}}`
  const copyFieldsSource = copied(fields, 'o', 1)
  const copyBody = `let g1, g2, g3; return {${copyFieldsSource}}`
  const copyCustomBody = `let g1, g2, g3; return {${copyFieldsSource}, ...custom}`
  // eslint-disable-next-line no-new-func
  const make = new NewFunction('S', `'use strict'
    return {
      shape: function shape (m, b, t, at, id, slot, page, index, version, custom) { ${shapeBody} },
      copy: function copy (o) { ${copyBody} },
      copyCustom: function copyCustom (o, custom) { ${copyCustomBody} }
    }`)
  return { ...make(STATUS_NAMES), copyFieldsSource }
}

// Version pages (Uint32Array views of the native counters) and touch pages (Float64Array
// views of the touch times beside them: registry_core::versions), by page number. A cached
// entry's touch page exists: both are made together, when the entry's version page is.
// Without a prototype: a getter or setter a caller put on Array.prototype for an index must
// not stand in for a page not made yet, nor swallow a new one.
const versionPages = setPrototypeOf([], null)
const touchPages = setPrototypeOf([], null)
function versionPage (slot) {
  const p = slot >>> PAGE_SHIFT
  let page = versionPages[p]
  if (page === undefined) {
    page = new Uint32Array(nativeVersionPage(p))
    touchPages[p] = new Float64Array(nativeTouchPage(p))
    versionPages[p] = page
  }
  return page
}

// Per thread: id -> the last state shaped for it, an entry of `shape`: its fields, where its
// version is (`slot`, `page`, `index`), the `version` it has, `custom` (the parsed custom keys)
// and how that is copied (`reads`, `copier`, `structure`: see customCopy). An entry goes when
// its session is found gone; it and its `custom` are never handed out, only copies. An update
// made by this thread brings the entry along (`refreshCached`) instead of making the next read
// ask again.
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
  // What was read: for the flat form, for the cached state, and for the object reader if it
  // has to take over. Its elements exist from the start (a literal, or the keys of `names`),
  // so storing a value never reaches a setter a caller put on Object.prototype for an index,
  // which would swallow it and turn the key into a removal. The literal costs about a
  // nanosecond; the keys about fifty, for the rare update of more than 8 keys.
  const values = n <= 8
    ? [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined]
    : objectKeys(names)
  // While every key is one of the registry's own fields with a value of its type, the update
  // crosses as a mask (`__updateKnown`): no string to build or parse.
  let known = true
  let mask = 0
  let error = null
  for (let i = 0; i < n; i++) {
    const key = names[i]
    // The registry's own keys are compared first: no lookup in RESERVED for them (perf).
    if (key !== 'isConnected' && key !== 'error' && key !== 'status' &&
      (key.length > FAST_KEY_UNITS || RESERVED[key] === true)) {
      return nativeUpdate(sessionId, rest(updates, names, i, values))
    }
    const value = updates[key]
    values[i] = value
    const type = typeof value
    // -0 would read back as 0: left to the object reader, like objects and long strings.
    if (!(type === 'boolean' || value === null || type === 'undefined' ||
      (type === 'string' && value.length <= FAST_STRING_UNITS) ||
      (type === 'number' && (value !== 0 || 1 / value > 0)))) {
      return nativeUpdate(sessionId, rest(updates, names, i + 1, values))
    }
    if (!known) continue
    if (key === 'isConnected' && type === 'boolean') {
      mask |= value ? KNOWN_IS_CONNECTED | KNOWN_CONNECTED : KNOWN_IS_CONNECTED
    } else if (key === 'error' && (type === 'string' || value === null || type === 'undefined')) {
      mask |= KNOWN_ERROR
      error = type === 'string' ? value : null
    } else if (key === 'status' && (value === null || type === 'undefined' || (type === 'string' && STATUS_INDEX[value] !== undefined))) {
      const index = type === 'string' ? STATUS_INDEX[value] : STATUS_NAMES.length
      mask |= KNOWN_STATUS | (index << KNOWN_STATUS_SHIFT)
    } else {
      known = false
    }
  }
  // No JavaScript runs from here to the end (no getter, no event): the entry stays the cached one.
  const c = stateCache.size === 0 ? undefined : stateCache.get(sessionId)
  if (known) {
    if (c !== undefined && touch(c, mask, error)) return
    nativeUpdateKnown(sessionId, mask, error)
  } else {
    nativeUpdateFlat(sessionId, flatForm(names, values, n))
  }
  if (c !== undefined) refreshCached(c, names, values, n)
}

/**
 * An update of the registry's own fields (`mask` and `error` as for `__updateKnown`) that
 * changes nothing the current cached entry `c` holds, so only lastActivity moves: applied here
 * without a native call (the usual update of a bot, repeated with every message). The time
 * goes to the slot's touch cell, then the version moves by a compare-and-swap from the one `c`
 * was checked against; the table folds the time into the state whenever it reads the record
 * (registry_core::versions), and the new version tells every thread's cache. Returns false,
 * having changed nothing that matters, when the update has to cross instead: a field differs
 * (its change may be an event), the entry is stale, the clock is behind the state's time or
 * not the native one, or another change came in between (the swap failed; the time written is
 * older than that change's and the table keeps the later one).
 */
function touch (c, mask, error) {
  // The entry's own fields first: a change fails here without loading the shared page.
  if ((mask & KNOWN_IS_CONNECTED) !== 0 && c.isConnected !== ((mask & KNOWN_CONNECTED) !== 0)) return false
  if ((mask & KNOWN_ERROR) !== 0 && c.error !== error) return false
  if ((mask & KNOWN_STATUS) !== 0 && c.status !== STATUS_OF_INDEX[mask >>> KNOWN_STATUS_SHIFT]) return false
  const page = c.page
  const index = c.index
  const version = c.version
  if (!TOUCH_CLOCK || page[index] !== version) return false
  const now = dateNow()
  if (!(now >= c.lastActivity)) return false
  // Written before the version moves: a thread that sees the new version sees this time.
  touchPages[c.slot >>> PAGE_SHIFT][index] = now
  const next = (version + 1) >>> 0
  if (compareExchange(page, index, version, next) !== version) return false
  c.lastActivity = now
  c.version = next
  return true
}

/**
 * The flat form of an update of primitives (registry_core::update::parse_flat describes it):
 * pairs of `<length>:<key>` and a typed value.
 */
function flatForm (names, values, n) {
  let flat = ''
  for (let i = 0; i < n; i++) {
    const key = names[i]
    const value = values[i]
    const type = typeof value
    flat += key.length + ':' + key
    if (type === 'boolean') flat += value ? 't' : 'f'
    else if (value === null) flat += 'n'
    else if (type === 'undefined') flat += 'u'
    else if (type === 'string') flat += 's' + value.length + ':' + value
    else flat += 'd' + value + ';'
  }
  return flat
}

/**
 * After this thread updated a session with the primitives `values`, for its cached entry `c`
 * (taken before the update; the native update runs no JavaScript): when `c` was the
 * state right before that update (same slot, the version just before the one the update gave,
 * as the native side left them in SCRATCH), applies the same change to it, so the next read
 * needs no native call. The rules are the core's (registry_core::state::apply_patch) for
 * primitives. Where the result could differ from what the core keeps (a removed custom key,
 * whose place the core may move; a string with a lone surrogate, which it keeps as U+FFFD),
 * the entry stays behind and the next read asks again: an entry changed halfway is never used,
 * since its version no longer matches.
 */
function refreshCached (c, names, values, n) {
  const m = SCRATCH
  if (c.slot !== m[0] || ((c.version + 1) >>> 0) !== m[1]) return
  for (let i = 0; i < n; i++) {
    const key = names[i]
    const value = values[i]
    if (key === 'isConnected') c.isConnected = value
    else if (key === 'error') {
      if (typeof value !== 'string') c.error = null
      else if (hasLoneSurrogate(value)) return
      else c.error = value
    } else if (key === 'status') c.status = typeof value === 'string' ? value : null
    else if (key === 'createdAt') c.createdAt = value
    else if (key !== 'lastActivity') {
      if (value === undefined) return
      let v = value
      if (typeof v === 'number') {
        // JSON has no Infinity or NaN: the core keeps them as null.
        if (v - v !== 0) v = null
      } else if (typeof v === 'string' && hasLoneSurrogate(v)) {
        return
      }
      let custom = c.custom
      // Its structure may change: copied the generic way until it is looked at again.
      startOver(c)
      if (custom === undefined) {
        custom = {}
        c.custom = custom
      }
      // Defined, not assigned: a setter on Object.prototype must not see a new key.
      if (hasOwn(custom, key)) custom[key] = v
      else defineProperty(custom, key, { __proto__: null, value: v, writable: true, enumerable: true, configurable: true })
    }
  }
  c.lastActivity = m[2]
  c.version = m[1] >>> 0
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
    if (c.custom === undefined) return copy(c)
    const copier = c.copier
    return copier !== undefined ? copier(c, c.custom) : customCopy(c)
  }
  const t = nativeState(sessionId)
  if (t === null) {
    if (c !== undefined) stateCache.delete(sessionId)
    return null
  }
  const m = SCRATCH
  const slot = entrySlot(m[0])
  const version = m[1] >>> 0
  const customLen = m[2] | 0
  // Parsed once per change; each answer gets its own copy (withCustom, or a compiled copier).
  const custom = customLen < 0 ? undefined : parse(t.slice(0, customLen))
  // A record without a slot has no version to check: its state is copied, never cached.
  const cached = slot >= 0
  const e = shape(m, 3, t, customLen < 0 ? 0 : customLen, sessionId, slot, cached ? versionPage(slot) : undefined, slot & PAGE_MASK, version, custom)
  if (cached) stateCache.set(sessionId, e)
  else if (c !== undefined) stateCache.delete(sessionId)
  return custom === undefined ? copy(e) : withCustom(e, custom)
}

/**
 * An entry's slot from the native one: below 2^23 as a small integer, -1 for NO_SLOT. Kept a
 * small integer (with the version, `>>> 0`) so the entry holds no boxed double: reading a box
 * was a second cache miss per update of a cached session (perf).
 */
function entrySlot (raw) {
  return raw === NO_SLOT ? -1 : raw | 0
}

// Compiled copiers for the custom data of cached entries. The generic copy (withCustom) walks
// the data on every read; a copier generated for one structure (the keys, in order, and the
// kinds of every value, leaves being primitives) builds the whole answer in one literal. An
// entry's structure is computed at its LOOK_AT-th read of a version (most versions are read
// once or twice: nothing spent on them), and a copier is compiled once the structure has been
// seen in COMPILE_AFTER versions, or when one entry reaches its COMPILE_AT-th read of a version.
const LOOK_AT = 4
const COMPILE_AFTER = 8
const COMPILE_AT = 64
// Larger or deeper data stays generic: the source, and V8's work on it, grow with the data.
const STRUCTURE_VALUES = 64
const STRUCTURE_DEPTH = 8
// Structures by signature, { seen, copier }: at most 2 x STRUCTURES_KEPT, the older half
// dropped when the newer one is full (a structure in use is found again in the older half and
// moved back).
const STRUCTURES_KEPT = 128
let structures = ownMap()
let olderStructures = ownMap()

/**
 * The copy of a cached entry `c` with custom data, read while `c.copier` is not set: counts the
 * read, looks at the structure or compiles its copier when the time comes, and copies the
 * generic way.
 */
function customCopy (c) {
  const reads = ++c.reads
  if (reads === LOOK_AT) {
    const signature = structureOf(c.custom)
    if (signature === undefined) {
      c.copier = withCustom
    } else {
      const s = structureFor(signature)
      if (s.copier === undefined && ++s.seen >= COMPILE_AFTER) s.copier = compileCopier(c.custom)
      if (s.copier !== undefined) c.copier = s.copier
      else c.structure = s
    }
  } else if (reads > LOOK_AT && c.structure !== undefined) {
    const s = c.structure
    if (s.copier === undefined && reads >= COMPILE_AT) s.copier = compileCopier(c.custom)
    if (s.copier !== undefined) {
      c.copier = s.copier
      c.structure = undefined
    }
  }
  return withCustom(c, c.custom)
}

/** Forgets how the custom data of cached entry `c` was copied: it is new or changed. */
function startOver (c) {
  c.reads = 0
  c.copier = undefined
  c.structure = undefined
}

/** The record of the structure `signature`, found or added. */
function structureFor (signature) {
  let s = structures.get(signature)
  if (s !== undefined) return s
  s = olderStructures.get(signature)
  if (s === undefined) s = { seen: 0, copier: undefined }
  if (structures.size >= STRUCTURES_KEPT) {
    olderStructures = structures
    structures = ownMap()
  }
  structures.set(signature, s)
  return s
}

/**
 * The signature of the structure of `custom` (parsed JSON: plain objects, dense arrays,
 * primitives): own keys in order, written as JSON strings, and the kind of every value; or
 * `undefined` past STRUCTURE_VALUES values or STRUCTURE_DEPTH levels.
 */
function structureOf (custom) {
  let values = 0
  // A nested value's part of the signature: its own structure, or `p` for a primitive.
  const part = (item, depth) => typeof item === 'object' && item !== null ? walk(item, depth + 1) : 'p'
  function walk (v, depth) {
    if (depth > STRUCTURE_DEPTH) return undefined
    let sig
    if (isArray(v)) {
      values += v.length
      if (values > STRUCTURE_VALUES) return undefined
      sig = '['
      for (let i = 0; i < v.length; i++) {
        const inner = part(v[i], depth)
        if (inner === undefined) return undefined
        sig += inner + ','
      }
      return sig + ']'
    }
    const names = objectKeys(v)
    values += names.length
    if (values > STRUCTURE_VALUES) return undefined
    sig = '{'
    for (let i = 0; i < names.length; i++) {
      const inner = part(v[names[i]], depth)
      if (inner === undefined) return undefined
      sig += stringify(names[i]) + ':' + inner + ','
    }
    return sig + '}'
  }
  return walk(custom, 1)
}

/**
 * A copier `(state, custom)` for data of the structure of `custom` (within the bounds of
 * structureOf): one object literal with the state's fields (as `copy`) then the custom keys,
 * every nested object and array a literal of its own, read through the locals v1-v8 (one per
 * level). Keys are written as JSON strings; `__proto__` as a computed key, which defines an
 * own data property (a plain `__proto__:` would set the prototype).
 */
function compileCopier (custom) {
  function value (v, from, depth) {
    if (typeof v !== 'object' || v === null) return from
    const local = `v${depth}`
    return `(${local} = ${from}, ${literal(v, local, depth)})`
  }
  // The source is concatenated, never pushed and joined: a patched Array.prototype.push or
  // join would otherwise shape a copier that stays cached after the patch is gone.
  function literal (v, from, depth) {
    let parts = ''
    if (isArray(v)) {
      for (let i = 0; i < v.length; i++) parts += (i === 0 ? '' : ', ') + value(v[i], `${from}[${i}]`, depth + 1)
      return `[${parts}]`
    }
    const names = objectKeys(v)
    for (let i = 0; i < names.length; i++) parts += (i === 0 ? '' : ', ') + property(names[i], v[names[i]], from, depth)
    return `{${parts}}`
  }
  function property (name, v, from, depth) {
    const key = stringify(name)
    return `${name === '__proto__' ? `[${key}]` : key}: ${value(v, `${from}[${key}]`, depth + 1)}`
  }
  const names = objectKeys(custom)
  let source = copyFieldsSource
  for (let i = 0; i < names.length; i++) source += ', ' + property(names[i], custom[names[i]], 'c', 0)
  let locals = 'g1, g2, g3'
  for (let d = 1; d <= STRUCTURE_DEPTH; d++) locals += `, v${d}`
  // eslint-disable-next-line no-new-func
  return new NewFunction(`'use strict'
    return function copyStructure (o, c) { let ${locals}; return {${source}} }`)()
}

/**
 * A copy of `state` with the custom keys of `custom` (this thread's own parsed data, never
 * handed out) after its fields: their values are spread in, then the objects among them are
 * replaced by copies (own data properties that exist: no setter runs). One object less than
 * copying `custom` first and spreading the copy.
 */
function withCustom (state, custom) {
  const o = copyCustom(state, custom)
  for (const key in custom) {
    // for-in also walks enumerable keys a caller put on Object.prototype: own keys only.
    if (!hasOwn(custom, key)) continue
    const v = custom[key]
    if (typeof v === 'object' && v !== null) o[key] = cloneData(v)
  }
  return o
}

// Arrays up to this length are copied by one call of `Array.of` (spread as arguments); longer
// ones element by element, well below the engine's limit on arguments.
const ARRAY_OF_MAX = 1024

/**
 * A deep copy of JSON data (what JSON.parse made: plain objects, dense arrays, primitives),
 * cheaper than parsing the text again. Only own data properties that already exist are
 * assigned, so no setter on a prototype runs. Arrays are made by `Array.of` of the Array taken
 * at load, which defines each element: `slice` would ask `Array.prototype.constructor` for a
 * species, running whatever constructor a caller put there.
 */
function cloneData (v) {
  if (typeof v !== 'object' || v === null) return v
  if (isArray(v)) {
    const n = v.length
    let a
    if (n <= ARRAY_OF_MAX) {
      a = apply(arrayOf, ArrayConstructor, v)
    } else {
      a = []
      for (let i = 0; i < n; i++) defineProperty(a, i, { __proto__: null, value: v[i], writable: true, enumerable: true, configurable: true })
    }
    for (let i = 0; i < n; i++) {
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

// Per thread, for getAllSessions: by version slot, the last row shaped for it (an entry of
// `shape` with its `id`, `version` and `custom`, never handed out), and its version in
// `seenVersions`, which the native side reads to send only the rows that changed since. A
// removed session's row stays until its slot is taken again, or until the rows outnumber the
// sessions (then they all go).
let rowCache = []
let rowCount = 0
let seenVersions = new Uint32Array(1024)
const ALL_ROW = LAYOUT.allRow

/** Every session of the process as `{ [sessionId]: state }`, in registration order. */
function getAllSessions () {
  return allSessions(seenVersions) ?? allSessions(undefined)
}

/**
 * getAllSessions with the rows this thread has (`seen`), or with none (`undefined`). `undefined`
 * when a row the native side skipped is not here after all (never expected): the caller then
 * asks for every row.
 */
function allSessions (seen) {
  const data = nativeAllStates(seen)
  const t = data[0]
  const order = new Float64Array(data[1])
  const m = new Float64Array(data[2])
  const n = data[3]
  // No prototype while filling: an id such as '__proto__' is then an ordinary own key.
  const out = create(null)
  for (let j = 0, o = 0; j < n; j++, o += 3) {
    const slot = order[o]
    const version = order[o + 1]
    const r = order[o + 2]
    let e
    if (r < 0) {
      e = rowCache[slot]
      if (e === undefined || e.version !== version) return undefined
    } else {
      const b = r * ALL_ROW
      let at = m[b] | 0
      const id = t.slice(at, at += m[b + 1] | 0)
      const customLen = m[b + 2] | 0
      // Parsed once per change; each answer gets its own copy (cloneData).
      const custom = customLen < 0 ? undefined : parse(t.slice(at, at + customLen))
      // Slot and version as small integers, like a cached state's (one shape for both).
      e = shape(m, b + 3, t, customLen < 0 ? at : at + customLen, id, entrySlot(slot), undefined, 0, version >>> 0, custom)
      if (slot !== NO_SLOT) rememberRow(slot, e)
    }
    out[e.id] = e.custom === undefined ? copy(e) : withCustom(e, e.custom)
  }
  if (rowCount > 2 * n + 1024) {
    rowCache = []
    rowCount = 0
    seenVersions = new Uint32Array(1024)
  }
  return setPrototypeOf(out, ObjectPrototype)
}

function rememberRow (slot, e) {
  if (slot >= seenVersions.length) {
    let size = seenVersions.length * 2
    while (size <= slot) size *= 2
    const bigger = new Uint32Array(size)
    bigger.set(seenVersions)
    seenVersions = bigger
  }
  if (rowCache[slot] === undefined) rowCount++
  rowCache[slot] = e
  seenVersions[slot] = e.version
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
// Cluster: connectCluster and the Cluster object.
//
// One cluster connection per process (src/cluster.rs), shared by every thread: while it is
// connected, registerSocket in any thread refuses an id this node does not hold (checked
// natively, in the register decision), and unregisterSocket / clearAll release the leases of
// the ids they remove. Here: option checks, the Cluster object, and the JavaScript side of a
// lost lease (the socket is ended silently, as after a takeover by another thread, but the
// session stays registered with status `leaseLost` until the bot unregisters or replaces it).

const {
  __clusterConnect: nativeClusterConnect,
  __clusterClaim: nativeClusterClaim,
  __clusterHolds: nativeClusterHolds,
  __clusterLetGo: nativeClusterLetGo,
  __clusterReleaseLease: nativeClusterReleaseLease,
  __clusterWhereIs: nativeClusterWhereIs,
  __clusterStats: nativeClusterStats,
  __clusterSubscribe: nativeClusterSubscribe,
  __clusterUnsubscribe: nativeClusterUnsubscribe,
  __clusterClosing: nativeClusterClosing,
  __clusterClose: nativeClusterClose,
  __takeLost: nativeTakeLost,
  __clusterLostDone: nativeClusterLostDone
} = binding
const hostname = require('node:os').hostname
const isInteger = Number.isInteger

function applyLostLeases () {
  const lost = nativeTakeLost()
  for (let i = 0; i < lost.length; i++) {
    const id = lost[i]
    // Its supervisor (superviseSession) stops: a new socket would need a new claim.
    if (supervisors.size !== 0) endSupervisionOf(id, 'leaseLost')
    const socket = sockets.get(id)
    if (socket !== undefined) {
      const tracker = trackers.get(id)
      // The tracker goes (its listeners are removed): the status stays `leaseLost`.
      if (tracker !== undefined) trackers.delete(id)
      letGo(id, socket, tracker)
    }
    // A takeover's lease is released once the socket has ended.
    nativeClusterLostDone(id)
  }
}

const CONNECT = 'connectCluster(options)'
const MS_OPTIONS = ['leaseMs', 'marginMs', 'opTimeoutMs', 'renewEveryMs', 'dataLossGraceMs', 'mirrorFlushMs']

function clusterOptionsError (message) {
  return registryError(TypeError, 'ERR_CLUSTER_OPTIONS', `${CONNECT}: ${message}`)
}

/** The checked options as a fresh object of plain values (each getter read once). */
function clusterOptions (options) {
  if (!isObject(options)) throw clusterOptionsError(`options must be an object with a url, got ${typeName(options)}`)
  const url = options.url
  if (typeof url !== 'string' || url === '') throw clusterOptionsError('options.url must be a redis:// URL')
  const out = { __proto__: null, url }
  const nodeId = options.nodeId
  if (nodeId === undefined) out.nodeId = `${hostname()}-${process.pid}`
  else if (typeof nodeId === 'string') out.nodeId = nodeId
  else throw clusterOptionsError(`options.nodeId must be a string, got ${typeName(nodeId)}`)
  const prefix = options.prefix
  if (prefix !== undefined) {
    if (typeof prefix !== 'string') throw clusterOptionsError(`options.prefix must be a string, got ${typeName(prefix)}`)
    out.prefix = prefix
  }
  for (let i = 0; i < MS_OPTIONS.length; i++) {
    const key = MS_OPTIONS[i]
    const v = options[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !isInteger(v) || v < 0 || v > 3600000) {
      throw clusterOptionsError(`options.${key} must be a whole number of milliseconds from 0 to 3600000`)
    }
    out[key] = v
  }
  return out
}

/**
 * Connects this process to the cluster on Redis and resolves with its `Cluster` once Redis
 * answered as Redis (see index.d.ts).
 */
async function connectCluster (options) {
  const checked = clusterOptions(options)
  const { epoch, nodeId } = await nativeClusterConnect(checked)
  return new Cluster(epoch, nodeId)
}

const CLAIM = 'cluster.claim(sessionId, options)'

/** The process's cluster connection, as connectCluster resolves it. */
class Cluster {
  #epoch
  #closed = null

  constructor (epoch, nodeId) {
    this.#epoch = epoch
    defineProperty(this, 'nodeId', { __proto__: null, value: nodeId, enumerable: true })
  }

  async claim (sessionId, options) {
    checkSessionId(sessionId, CLAIM)
    let waitMs = null
    let takeover = false
    if (options !== undefined && options !== null) {
      if (!isObject(options)) throw registryError(TypeError, 'ERR_INVALID_OPTIONS', `${CLAIM}: options must be an object, got ${typeName(options)}`)
      const w = options.waitMs
      if (w !== undefined) {
        if (typeof w !== 'number' || !isInteger(w) || w < 0 || w > 86400000) {
          throw registryError(TypeError, 'ERR_INVALID_OPTIONS', `${CLAIM}: options.waitMs must be a whole number of milliseconds from 0 to 86400000`)
        }
        waitMs = w
      }
      takeover = boolOption(options.takeover, 'takeover', false, CLAIM)
    }
    // Awaited, not returned: returning a promise from an async function looks up its `then`
    // (a patched Promise.prototype.then that throws would leave the native promise without a
    // handler, and its rejection unhandled); await attaches the handler itself.
    return await nativeClusterClaim(this.#epoch, sessionId, waitMs, takeover)
  }

  async release (sessionId) {
    checkSessionId(sessionId, 'cluster.release(sessionId)')
    // Given up here first (Redis keeps the lease meanwhile) and the socket ended, in this
    // thread at once; only then released in Redis.
    const token = nativeClusterLetGo(this.#epoch, sessionId)
    if (revision[0] !== seenRevision) applyRevocations()
    return await nativeClusterReleaseLease(this.#epoch, sessionId, token)
  }

  holds (sessionId) {
    if (typeof sessionId !== 'string' || sessionId === '') return false
    return nativeClusterHolds(this.#epoch, sessionId)
  }

  async whereIs (sessionId) {
    checkSessionId(sessionId, 'cluster.whereIs(sessionId)')
    return await nativeClusterWhereIs(this.#epoch, sessionId)
  }

  async getStats () {
    return await nativeClusterStats(this.#epoch)
  }

  onStateChange (listener) {
    if (typeof listener !== 'function') {
      throw registryError(TypeError, 'ERR_INVALID_LISTENER', `cluster.onStateChange(listener): listener must be a function, got ${typeName(listener)}`)
    }
    const id = nativeClusterSubscribe(this.#epoch, listener)
    let subscribed = true
    return function unsubscribe () {
      if (!subscribed) return
      subscribed = false
      nativeClusterUnsubscribe(id)
    }
  }

  close () {
    if (this.#closed === null) this.#closed = closeCluster(this.#epoch)
    return this.#closed
  }
}

async function closeCluster (epoch) {
  if (!nativeClusterClosing(epoch)) return
  // The sockets of the held sessions are let go (this thread's now), then the leases released.
  if (revision[0] !== seenRevision) applyRevocations()
  await nativeClusterClose(epoch)
}

// ---------------------------------------------------------------------------------------------
// Exports

const {
  __napiBindingTarget,
  configure,
  loadSnapshot,
  onStateChange,
  RegistryErrorCode,
  saveSnapshot,
  SessionStatus,
  StateChangeType,
  waitForState
} = binding

module.exports = {
  __napiBindingTarget,
  registerSocket,
  getSocket,
  hasSocket,
  getSocketCount,
  getAllSockets,
  unregisterSocket,
  clearAll,
  createSocketWrapper,
  updateSessionState,
  getSessionState,
  getAllSessions,
  getStats,
  superviseSession,
  configure,
  loadSnapshot,
  onStateChange,
  RegistryErrorCode,
  saveSnapshot,
  SessionStatus,
  StateChangeType,
  waitForState,
  connectCluster
}
// The benchmark's no-op floor hooks (src/fast.rs), not enumerable: not part of the API.
if (binding.__bench !== undefined) defineProperty(module.exports, '__bench', { __proto__: null, value: binding.__bench })

// ---------------------------------------------------------------------------------------------
// Explaining a missing binary


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
